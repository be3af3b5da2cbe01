"""The work of the training flows as plain functions: plan a run, train it under torchrun, publish its results.

    plan = plan_run(config, "chinese-gpt2", ["--max_iters=100"], dataset_dir, "chinese-gpt2-20261126-0200-ab12")
    outcome = train_under_torchrun(plan, tracker, run_id, nproc_per_node=8, on_line=print)
    published = publish_results(config, plan, tracker, run_id)   # checkpoint, samples, version, aliases

The flows in flows/ wrap these in Prefect tasks; these functions know nothing of Prefect.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gpt.checkpoint import best_checkpoint, list_checkpoints, read_meta
from gpt.config import TrainConfig, to_dict
from gpt.evaluate import evaluate_checkpoint, evaluate_model, validation_set_id
from gpt.model import GPT
from gpt.sample import SampleOptions, generate_texts, load_for_sampling
from gpt.shards import MANIFEST
from gpt.tokenizer import Tokenizer
from tasks.dataroot import is_url
from tasks.launch import run_process, torchrun_command
from tasks.stage import read_info
from tasks.tracking import MetricsShipper, Tracker, flatten
from tasks.training import registered_model_name, train_config

REPO = Path(__file__).resolve().parents[1]


class TrainingFailed(RuntimeError):
    """torchrun ended without finishing the run; the message says how and where its checkpoints are."""


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


def local_dataset(config, manifest_location: str) -> Path:
    """The local folder of the token dataset whose manifest.json is at `manifest_location` (downloaded if a URL)."""
    folder = manifest_location.removesuffix(f"/{MANIFEST}")
    if not is_url(folder):
        return Path(folder)
    root = config.root
    return root.local(folder.removeprefix(f"{root.url}/"))


def plan_run(config, preset: str, overrides: list[str], dataset: Path, run_name: str, node: int | None = None,
             **settings) -> RunPlan:  # fmt: skip
    """Resolve the engine config and write it into the run folder (runs_dir/<preset>/<run>[/node-N])."""
    out_dir = config.path(config.runs_dir) / preset / run_name
    if node is not None:
        out_dir = out_dir / f"node-{node}"
    cfg = train_config(config, preset, overrides, data=str(dataset), out_dir=str(out_dir), **settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.json"
    config_file.write_text(json.dumps(to_dict(cfg), indent=2), encoding="utf-8")
    return RunPlan(preset, run_name, dataset, out_dir, config_file, cfg)


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


def run_tags(plan: RunPlan, flow: str) -> dict[str, str]:
    """Tags of a run: preset, flow, the dataset's fingerprint and manifest checksum, the code version."""
    manifest_bytes = (plan.dataset / MANIFEST).read_bytes()
    manifest = json.loads(manifest_bytes)
    info = read_info(plan.dataset) if (plan.dataset / "info.json").is_file() else {}
    return {
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


def open_run(tracker: Tracker, plan: RunPlan, flow: str, extra_tags: dict[str, str] | None = None) -> str:
    """Create the MLflow run: the resolved config as params, provenance as tags, the manifest as an artifact."""
    run_id = tracker.create_run(plan.run_name, flatten(to_dict(plan.cfg)), run_tags(plan, flow) | (extra_tags or {}))
    tracker.client.log_artifact(run_id, str(plan.dataset / MANIFEST), "dataset")
    tracker.client.log_artifact(run_id, str(plan.config_file))
    return run_id


def train_under_torchrun(
    plan: RunPlan, tracker: Tracker, run_id: str, nproc_per_node: int, on_line, nnodes: int = 1,
    rdzv_endpoint: str = "", timeout_minutes: float = 0,
) -> TrainOutcome:  # fmt: skip
    """Run `torchrun -m gpt.train` to its end while a thread ships metrics.jsonl to the MLflow run."""
    cmd = torchrun_command(str(plan.config_file), nproc_per_node, nnodes, rdzv_endpoint, rdzv_id=run_id)
    shipper = MetricsShipper(tracker.client, run_id, plan.out_dir / "metrics.jsonl")
    with shipper:
        launch = run_process(cmd, on_line, timeout=timeout_minutes * 60, cwd=str(REPO))
    unsent = shipper.close()
    if unsent:
        on_line(f"warning: {unsent} metric points could not reach MLflow; they are in {shipper.path}")
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


def samples(model: GPT, tokenizer: Tokenizer, sample_cfg) -> list[str]:
    opts = SampleOptions(
        sample_cfg.num_samples, sample_cfg.max_new_tokens, sample_cfg.temperature, sample_cfg.top_k or None
    )
    prompt = sample_cfg.prompt
    return [prompt + text for text in generate_texts(model, tokenizer, prompt, opts)]


def same_tokenizer(a: Path, b: Path) -> bool:
    """Whether two folders (checkpoints or datasets) carry the same tokenizer.json."""
    specs = [json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")) for folder in (a, b)]
    return specs[0] == specs[1]


def champion_loss(tracker: Tracker, name: str, champion, plan: RunPlan, val_set: str) -> float | None:
    """The champion's val loss on this run's validation set: from its tags when measured on the same set,
    else measured now; None when its tokenizer differs from the dataset's (then the two cannot compare)."""
    if champion.tags.get("val_set") == val_set:
        return float(champion.tags["val_loss"])
    from tasks.tracking import download_model

    folder = download_model(tracker.client, f"models:/{name}/{champion.version}", plan.out_dir / "champion")
    if not same_tokenizer(folder, plan.dataset):
        return None
    cfg = plan.cfg
    return evaluate_checkpoint(folder, plan.dataset, cfg.batch_size, cfg.eval_iters, cfg.model.block_size)


def publish_results(config, plan: RunPlan, tracker: Tracker, run_id: str, extra_tags: dict | None = None) -> dict:
    """Log the best checkpoint and its samples, register it (the newest version is models:/NAME/latest) and point
    `champion` at it when it wins."""
    best = best_checkpoint(plan.out_dir)
    if best is None:
        raise TrainingFailed(f"training ended without a checkpoint in {plan.out_dir}")
    step = read_meta(best)["step"]
    tracker.log_checkpoint(run_id, best)
    model, tokenizer, _ = load_for_sampling(best)
    texts = samples(model, tokenizer, config.training[plan.preset].sample)
    tracker.log_text(run_id, "\n\n---------------\n\n".join(texts), f"samples/step-{step}.txt")
    cfg = plan.cfg
    val_set = validation_set_id(plan.dataset, cfg.model.block_size, cfg.batch_size, cfg.eval_iters)
    val_loss = evaluate_model(model, plan.dataset, cfg.batch_size, cfg.eval_iters, cfg.model.block_size)
    name = registered_model_name(config, plan.preset)
    tags = {"val_loss": f"{val_loss:.6f}", "val_set": val_set, "step": str(step), "preset": plan.preset}
    version = tracker.register(name, run_id, tags | (extra_tags or {}))
    champion = tracker.version_at(name, "champion")
    rival = None if champion is None else champion_loss(tracker, name, champion, plan, val_set)
    promoted = champion is None or (rival is not None and val_loss < rival)
    if promoted:
        tracker.set_alias(name, "champion", version.version)
    result = {
        "registered_model": name, "version": version.version, "step": step, "val_loss": val_loss,
        "champion": version.version if promoted else champion.version,
        "champion_val_loss": val_loss if promoted else rival, "sample": texts[0] if texts else "",
    }  # fmt: skip
    tracker.set_tags(run_id, {f"gptflow.{k}": v for k, v in result.items() if k != "sample"})
    return result
