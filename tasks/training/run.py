"""A training run: plan it (resolved engine config in its run folder), open its MLflow run, train it under torchrun
on one node or several, and set the MLflow run's status from how it ended.

The two UIs point at each other: the MLflow run is tagged with the Prefect flow run's address (and names the flow
run as its source), and the flow run gets a link artifact to the MLflow run. Training is the flow's `train` task,
with a progress artifact (step, loss, tokens per second, time left) updated while torchrun runs.

    plan = plan_run(config, "chinese-gpt2", ["--max_iters=100"], dataset_dir, new_run_name("chinese-gpt2"))
    run_id = open_run(tracker, plan, "pretrain-gpt2", flow_run_tags())   # and a link to it in the Prefect UI
    with tracked_run(tracker, run_id, plan):                    # FINISHED, FAILED, or KILLED on an interrupt
        summary = train_task(plan, tracker, run_id, nproc=8)    # torchrun -m gpt.train, metrics shipped to MLflow

A continued run starts from a registered version (parent_version, parent_weights); a run on several nodes starts
one flow run per node through the flow's deployment (run_nodes). Publishing the result is training/publish.py's.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mlflow.entities import LoggedModelInput
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import deployment as this_deployment
from prefect.runtime import flow_run as this_flow_run
from prefect.utilities.urls import url_for

from gpt.atomic import write_text_atomic
from gpt.checkpoint import list_checkpoints
from gpt.config import ConfigError, TrainConfig, from_dict, to_dict
from gpt.errors import FixableError
from gpt.model_config import padded_vocab_size
from gpt.shards import MANIFEST
from tasks.registry import find_version
from tasks.stage import read_info
from tasks.training.launch import run_process, torchrun_command
from tasks.training.lineage import training_input
from tasks.training.presets import registered_model_name, run_folder, train_config, training_preset
from tasks.training.progress import TrainingProgress, artifact_key
from tasks.training.system_metrics import SystemMetrics
from tasks.training.tracking import MetricsShipper, Tracker, flatten, server_answers

REPO = Path(__file__).resolve().parents[2]


class TrainingFailed(FixableError, RuntimeError):
    """torchrun ended without finishing the run; the message says how and where its checkpoints are."""


class TrackingUnavailable(FixableError, RuntimeError):
    """The training finished but its tracking server does not answer; the message gives the command that publishes
    the run once the server is back."""


@dataclass(frozen=True)
class RunPlan:
    preset: str
    run_name: str
    dataset: Path
    """The token dataset folder (local)."""
    out_dir: Path
    config_file: Path
    """The resolved engine config as JSON, which torchrun's workers read."""
    cfg: TrainConfig
    pipelines: Path = Path("pipelines.yaml")
    """The pipelines.yaml the run was planned from."""


RUN_RECORD = "run.json"
"""In a run folder: its MLflow run id, preset, pipelines.yaml and the tags of the version it registers (written when
the MLflow run opens), and, once registered, the version (published)."""


@dataclass(frozen=True)
class TrainOutcome:
    returncode: int
    timed_out: bool
    seconds: float
    points_sent: int
    points_unsent: int
    send_seconds: float


def new_run_name(preset: str) -> str:
    return f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def plan_run(config, preset: str, overrides: list[str], dataset: Path, run_name: str, node: int | None = None,
             **settings) -> RunPlan:  # fmt: skip
    """Resolve the engine config and write it into the run folder (runs_dir/<preset>/<run>[/node-N])."""
    out_dir = run_folder(config, preset, run_name)
    if node is not None:
        out_dir = out_dir / f"node-{node}"
    sample = training_preset(config, preset).sample  # a sample at each evaluation, as the registered one is made
    mixture = asdict(config.datasets[training_preset(config, preset).dataset].mixture)
    settings = {"sample_prompt": sample.prompt, "sample_tokens": sample.max_new_tokens, "mixture": mixture} | settings
    cfg = train_config(config, preset, overrides, data=str(dataset), out_dir=str(out_dir), **settings)
    if cfg.init_from == "scratch" and not cfg.model.vocab_size:  # logged as the model gets it, never as 0
        vocab = json.loads((dataset / MANIFEST).read_text(encoding="utf-8"))["vocab_size"]
        cfg = replace(cfg, model=replace(cfg.model, vocab_size=padded_vocab_size(vocab)))
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.json"
    config_file.write_text(json.dumps(to_dict(cfg), indent=2), encoding="utf-8")
    return RunPlan(preset, run_name, dataset, out_dir, config_file, cfg, config.file)


def read_run(out_dir: Path) -> tuple[RunPlan, dict]:
    """The plan of a run folder and its record (RUN_RECORD), as open_run left them."""
    out_dir = Path(out_dir).resolve()
    try:
        record = json.loads((out_dir / RUN_RECORD).read_text(encoding="utf-8"))
        cfg = from_dict(TrainConfig, json.loads((out_dir / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{out_dir} is not the folder of a training run opened in MLflow (it needs {RUN_RECORD} and "
            f"config.json): {e}"
        ) from e
    plan = RunPlan(record["preset"], out_dir.name, Path(cfg.data), out_dir, out_dir / "config.json", cfg,
                   Path(record["pipelines"]))  # fmt: skip
    return plan, record


def code_version() -> dict[str, str]:
    """The git commit of this checkout (with a dirty flag), or the installed package version."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    if commit is None or commit.returncode != 0:
        from importlib.metadata import version

        return {"gptflow.code_version": version("gptflow")}
    sha = commit.stdout.strip()
    return {
        "mlflow.source.git.commit": sha,
        "gptflow.code_version": sha[:12] + ("-dirty" if dirty.stdout.strip() else ""),
    }


def user_tag() -> dict[str, str]:
    """MLflow's "Created by": the account the flow runs as."""
    try:
        return {"mlflow.user": getpass.getuser()}
    except (KeyError, OSError):  # a container's uid without a name
        return {}


def run_tags(plan: RunPlan, flow: str) -> dict[str, str]:
    """Tags of a run: preset, flow (as MLflow's source), user, the dataset's fingerprint and manifest checksum, the
    code version."""
    manifest_bytes = (plan.dataset / MANIFEST).read_bytes()
    manifest = json.loads(manifest_bytes)
    info = read_info(plan.dataset) if (plan.dataset / "info.json").is_file() else {}
    return {
        "mlflow.source.type": "JOB",
        "mlflow.source.name": f"{flow} flow",
        **user_tag(),
        "gptflow.preset": plan.preset,
        "gptflow.flow": flow,
        "gptflow.out_dir": str(plan.out_dir),
        "dataset.path": str(plan.dataset),
        "dataset.fingerprint": info.get("fingerprint", ""),
        "dataset.manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "dataset.tokenizer": manifest["tokenizer"],
        "dataset.train_tokens": str(sum(s["tokens"] for s in manifest["splits"]["train"])),
        **code_version(),
    }


def open_run(
    tracker: Tracker, plan: RunPlan, flow: str, extra_tags: dict[str, str] | None = None,
    lineage: dict[str, str] | None = None, parent_model_id: str = "",
) -> str:  # fmt: skip
    """Create the MLflow run: the resolved config as params, provenance (and `lineage`, as gptflow.* tags) as tags,
    the token dataset (and the model it continues, `parent_model_id`) as its inputs (training/lineage.py), the
    manifest as an artifact; the run folder's record (RUN_RECORD), with `lineage` as the tags of the version it will
    register; and, in a flow run, an artifact linking to the MLflow run."""
    tags = run_tags(plan, flow) | (extra_tags or {}) | {f"gptflow.{k}": v for k, v in (lineage or {}).items()}
    run_id = tracker.create_run(plan.run_name, flatten(to_dict(plan.cfg)), tags)
    record = {"run_id": run_id, "preset": plan.preset, "pipelines": str(plan.pipelines), "lineage": lineage or {}}
    write_text_atomic(plan.out_dir / RUN_RECORD, json.dumps(record, indent=1))
    models = [LoggedModelInput(parent_model_id)] if parent_model_id else None
    tracker.client.log_inputs(run_id, datasets=[training_input(plan.dataset)], models=models)
    tracker.client.log_artifact(run_id, str(plan.dataset / MANIFEST), "dataset")
    tracker.client.log_artifact(run_id, str(plan.config_file))
    if this_flow_run.id:
        link_run_in_prefect(tracker, run_id, plan.run_name)
    return run_id


def link_run_in_prefect(tracker: Tracker, run_id: str, run_name: str) -> None:
    """The flow run's artifact pointing at the MLflow run (a link to its page, or where a store without a server
    keeps it), and a log line with the same."""
    key = artifact_key(run_name, "mlflow-run")
    url = tracker.run_url(run_id)
    get_run_logger().info(f"MLflow run {run_name}: {url or run_id}")
    if url is not None:
        create_link_artifact(url, link_text=f"MLflow run {run_name}", key=key, description=f"MLflow run {run_id}")
        return
    where = f"MLflow run `{run_id}` ({run_name}) in `{tracker.client.tracking_uri}`; browse it with `mlflow ui`."
    create_markdown_artifact(where, key=key, description=f"MLflow run {run_id}")


def train_under_torchrun(
    plan: RunPlan, tracker: Tracker, run_id: str, nproc_per_node: int, on_line, nnodes: int = 1,
    rdzv_endpoint: str = "", timeout_minutes: float = 0, progress: TrainingProgress | None = None,
) -> TrainOutcome:  # fmt: skip
    """Run `torchrun -m gpt.train` to its end while a thread ships metrics.jsonl and the system metrics to the
    MLflow run; `progress` takes the newest metrics at each output line."""
    cmd = torchrun_command(str(plan.config_file), nproc_per_node, nnodes, rdzv_endpoint, rdzv_id=run_id)
    shipper = MetricsShipper(
        tracker.client, run_id, plan.out_dir / "metrics.jsonl", samples=plan.out_dir / "samples",
        close_timeout=tracker.outage_seconds,
    )  # fmt: skip

    def each_line(line: str) -> None:
        on_line(line)
        if progress is not None:
            progress.update(shipper.latest)

    node = plan.out_dir.name if nnodes > 1 else ""
    with shipper, SystemMetrics(shipper, tracker.system_metrics_seconds, node):
        launch = run_process(cmd, each_line, timeout=timeout_minutes * 60, cwd=str(REPO))
    unsent = shipper.close()
    if progress is not None:
        progress.update(shipper.latest, force=True)
    if unsent:
        on_line(f"warning: {unsent} metric points could not reach MLflow yet; they are in {shipper.path}")
    else:
        cost = {"gptflow.metric_points": shipper.sent, "gptflow.metric_send_seconds": f"{shipper.send_seconds:.3f}"}
        tracker.set_tags(run_id, cost)
    return TrainOutcome(launch.returncode, launch.timed_out, launch.seconds, shipper.sent, unsent, shipper.send_seconds)


def check_outcome(plan: RunPlan, outcome: TrainOutcome) -> None:
    if outcome.returncode == 0:
        return
    ckpts = list_checkpoints(plan.out_dir)
    kept = f"the last checkpoint is {ckpts[-1]}" if ckpts else f"no checkpoint was written in {plan.out_dir}"
    how = "reached its deadline" if outcome.timed_out else f"exited with code {outcome.returncode}"
    raise TrainingFailed(f"training {how} after {outcome.seconds:.0f} s; {kept}")


def log_last_checkpoint(tracker: Tracker, run_id: str, plan: RunPlan) -> None:
    """After a failure: the newest checkpoint as artifact `last-checkpoint`, so the run can be inspected or resumed."""
    ckpts = list_checkpoints(plan.out_dir)
    if ckpts:
        tracker.log_checkpoint(run_id, ckpts[-1], "last-checkpoint")


def flow_run_tags() -> dict[str, str]:
    """Links the MLflow run to the Prefect flow run that made it: its id, name and page (where a Prefect UI serves
    it), and the flow run as the run's source."""
    name, flow = str(this_flow_run.name), str(this_flow_run.flow_name)
    tags = {"prefect.flow_run_id": str(this_flow_run.id), "prefect.flow_run_name": name}
    tags["mlflow.source.name"] = f"{flow} flow run {name}"
    if (url := url_for("flow-run", obj_id=this_flow_run.id)) and url.startswith(("http://", "https://")):
        tags["prefect.flow_run_url"] = url
    return tags


def train(plan: RunPlan, tracker: Tracker, run_id: str, nproc: int, nnodes: int = 1, rdzv_endpoint: str = "",
          timeout_minutes: float = 0) -> dict:  # fmt: skip
    """Train one node's share, torchrun's output in the run's log and its progress in an artifact; raises
    TrainingFailed unless it finished."""
    logger = get_run_logger()
    progress = TrainingProgress.start(plan.run_name, plan.cfg.max_iters)
    outcome = train_under_torchrun(
        plan, tracker, run_id, nproc, logger.info, nnodes, rdzv_endpoint, timeout_minutes, progress
    )
    logger.info(
        f"training took {outcome.seconds:.1f} s; {outcome.points_sent} metric points sent to MLflow "
        f"in {outcome.send_seconds:.2f} s of requests"
    )
    check_outcome(plan, outcome)
    if outcome.points_unsent and not server_answers(tracker.client.tracking_uri):
        raise TrackingUnavailable(
            f"training finished, but MLflow at {tracker.client.tracking_uri} did not answer for "
            f"{tracker.outage_seconds:.0f} s; nothing is lost (checkpoints and metrics.jsonl are in {plan.out_dir}). "
            f"Once it is back, publish the run with: {publish_command(plan)}"
        )
    return {"run_id": run_id, "out_dir": str(plan.out_dir), "seconds": outcome.seconds}


train_task = task(train, name="train", task_run_name="train-{plan.run_name}", cache_policy=NO_CACHE)
"""The training as a task of its flow (a Tracker cannot be hashed for a cache key; a training is never reused)."""


def publish_command(plan: RunPlan) -> str:
    return shlex.join(["gptflow", "publish", str(plan.out_dir)])


def trained_rank_zero(plan: RunPlan) -> bool:
    """Whether rank 0 trained in this run folder (it alone writes metrics.jsonl): the node that publishes."""
    return (plan.out_dir / "metrics.jsonl").exists()


@contextmanager
def tracked_run(tracker: Tracker, run_id: str, plan: RunPlan, owns_run: bool = True) -> Iterator[None]:
    """Set the MLflow run's status from how the block ends: FINISHED (only when `owns_run`), FAILED on an error,
    KILLED on an interrupt (a cancelled flow run); after a failure the newest checkpoint is logged too."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except TrackingUnavailable:
        status = ""  # nothing to tell a server that does not answer: `gptflow publish` tells it later
        raise
    except BaseException as e:
        status = "FAILED" if isinstance(e, Exception) else "KILLED"  # KeyboardInterrupt, cancellation signals
        raise
    finally:
        if status and status != "FINISHED":
            _quietly(log_last_checkpoint, tracker, run_id, plan)
        if status and (owns_run or status != "FINISHED"):
            _quietly(tracker.finish, run_id, status)


def _quietly(fn, *args) -> None:
    """Best effort on the way out of a failure: MLflow may be the reason for it."""
    try:
        fn(*args)
    except Exception as e:
        print(f"warning: {getattr(fn, '__name__', fn)} failed: {e}", file=sys.stderr)


def run_nodes(tracker: Tracker, run_id: str, parameters: dict, nnodes: int) -> dict:
    """Start one pretrain-gpt2 flow run per node through this flow run's deployment, with `parameters` and its
    node_rank, and wait for all of them; returns what the node that held rank 0 published (the MLflow run's tags)."""
    deployment = this_deployment.name
    if not deployment or not parameters.get("rdzv_endpoint"):
        tracker.finish(run_id, "FAILED")
        raise ConfigError(
            "nnodes > 1 runs one flow run per node through a deployment: start it with `prefect deployment run "
            "pretrain-gpt2/<name> -p nnodes=N -p rdzv_endpoint=HOST:PORT` (HOST: the first node, reachable from all)"
        )

    def node(rank: int):
        return run_deployment(f"pretrain-gpt2/{deployment}", parameters={**parameters, "node_rank": rank}, timeout=None)

    with ThreadPoolExecutor(nnodes) as pool:
        finished = list(pool.map(node, range(nnodes)))
    failed = [f"node {i}: {r.state.name}" for i, r in enumerate(finished) if not r.state.is_completed()]
    if failed:
        tracker.finish(run_id, "FAILED")
        raise TrainingFailed(f"{len(failed)} of {nnodes} nodes did not complete ({'; '.join(failed)})")
    tracker.finish(run_id, "FINISHED")
    tags = tracker.client.get_run(run_id).data.tags  # set by the node that held rank 0
    return {"run_id": run_id} | {k.removeprefix("gptflow."): v for k, v in tags.items() if k.startswith("gptflow.")}


def parent_version(config, tracker: Tracker, preset: str, alias: str):
    """The registered version at `alias` of the preset's model, where a continued run starts."""
    name = registered_model_name(config, preset)
    parent = find_version(tracker.client, name, alias)
    if parent is None:
        deployments = [d.name for d in config.deployments if d.flow == "pretrain-gpt2" and d.parameters == {
            "preset": preset}]  # fmt: skip
        how = f"gptflow run pretrain-gpt2/{deployments[0]}" if deployments else f"gptflow pretrain --preset {preset}"
        raise ConfigError(f"registered model {name!r} has no version at alias {alias!r}; train one first: {how}")
    return parent
