"""The `pretrain-gpt2` flow: build (or find) a preset's dataset, train it under torchrun, track it all in MLflow.

    prefect deployment run pretrain-gpt2/shakespeare-char-cpu
    prefect deployment run pretrain-gpt2/chinese-gpt2 -p nnodes=2 -p rdzv_endpoint=10.0.0.1:29400
    python -m flows.pretrain --preset shakespeare-char-cpu [--max_iters=500 ...]

One node: the flow runs build-corpus as a subflow (every stage is a cache hit when the shards exist), opens an
MLflow run (params: the resolved engine config; tags: dataset fingerprint and manifest checksum, code version),
launches `torchrun -m gpt.train` in its own process group with its output in the flow's logs, ships metrics.jsonl
to MLflow from a thread, then logs the best checkpoint and samples, registers it as a new version with alias
`latest`, and moves `champion` when it beats the champion on the same validation set. A failed, timed-out or
cancelled training makes a FAILED (or KILLED) MLflow run and a failed flow run; its checkpoints stay in the run
folder. Several nodes: the flow opens the run, then starts one flow run per node through its own deployment; a
worker on each node picks one up and torchrun's c10d rendezvous joins them.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.runtime import deployment as this_deployment
from prefect.runtime import flow_run as this_flow_run

from flows.build_corpus import build_corpus
from gpt.config import ConfigError
from tasks import runs
from tasks.launch import default_nproc_per_node
from tasks.pipelines import PipelinesConfig, load_pipelines
from tasks.tracking import Tracker
from tasks.training import train_config, training_preset

publish_results = task(runs.publish_results, name="publish-results")


def run_and_track(config: PipelinesConfig, plan: runs.RunPlan, tracker: Tracker, run_id: str, *, nproc: int,
                  nnodes: int = 1, rdzv_endpoint: str = "", timeout_minutes: float = 0, owns_run: bool = True,
                  extra_tags: dict | None = None) -> dict:  # fmt: skip
    """Train one node's share; the node that holds rank 0 publishes. The run's status is set when `owns_run`."""
    logger = get_run_logger()
    status = "FAILED"
    try:
        outcome = runs.train_under_torchrun(
            plan, tracker, run_id, nproc, logger.info, nnodes, rdzv_endpoint, timeout_minutes
        )
        logger.info(
            f"training took {outcome.seconds:.1f} s; {outcome.points_sent} metric points sent to MLflow "
            f"in {outcome.send_seconds:.2f} s of requests"
        )
        runs.check_outcome(plan, outcome)
        result = {"run_id": run_id, "out_dir": str(plan.out_dir), "seconds": outcome.seconds}
        if (plan.out_dir / "metrics.jsonl").exists():  # rank 0 trained here
            result |= publish_results(config, plan, tracker, run_id, extra_tags)
        status = "FINISHED"
        return result
    except BaseException as e:
        status = "FAILED" if isinstance(e, Exception) else "KILLED"  # KeyboardInterrupt, cancellation signals
        raise
    finally:
        if status != "FINISHED":
            _quietly(runs.log_last_checkpoint, tracker, run_id, plan)
        if owns_run or status != "FINISHED":
            _quietly(tracker.finish, run_id, status)


def flow_run_tags() -> dict[str, str]:
    """Links the MLflow run to the Prefect flow run that made it."""
    return {"prefect.flow_run_id": str(this_flow_run.id), "prefect.flow_run_name": str(this_flow_run.name)}


def _quietly(fn, *args) -> None:
    """Best effort on the way out of a failure: MLflow may be the reason for it."""
    try:
        fn(*args)
    except Exception as e:
        print(f"warning: {getattr(fn, '__name__', fn)} failed: {e}", file=sys.stderr)


@flow(name="pretrain-gpt2", log_prints=True)
def pretrain_gpt2(
    preset: str,
    overrides: list[str] | None = None,
    nproc_per_node: int = 0,
    nnodes: int = 1,
    node_rank: int | None = None,
    rdzv_endpoint: str = "",
    timeout_minutes: float = 0,
    config_path: str = "pipelines.yaml",
    mlflow_run_id: str = "",
    dataset_manifest: str = "",
) -> dict:
    """Train training preset `preset` of pipelines.yaml; returns the run id, the registered version and losses.

    nproc_per_node: processes per node (0: every GPU, or one process on a machine without one). nnodes > 1 needs
    rdzv_endpoint (HOST:PORT on the first node, reachable from all) and a deployment of this flow; node_rank,
    mlflow_run_id and dataset_manifest are set by the flow for the per-node runs it starts."""
    overrides = overrides or []
    config = load_pipelines(Path(config_path))
    spec = training_preset(config, preset)
    timeout = timeout_minutes or spec.timeout_minutes
    nproc = nproc_per_node or default_nproc_per_node()
    tracker = Tracker.connect(config)
    if node_rank is not None:  # one node of a multi-node run started by the parent flow run
        run = tracker.client.get_run(mlflow_run_id)
        dataset = runs.local_dataset(config, dataset_manifest)
        plan = runs.plan_run(config, preset, overrides, dataset, run.info.run_name, node=node_rank)
        return run_and_track(config, plan, tracker, mlflow_run_id, nproc=nproc, nnodes=nnodes,
                             rdzv_endpoint=rdzv_endpoint, timeout_minutes=timeout, owns_run=False)  # fmt: skip
    manifest = build_corpus(spec.dataset, config_path=config_path)
    dataset = runs.local_dataset(config, manifest)
    plan = runs.plan_run(config, preset, overrides, dataset, runs.new_run_name(preset))
    run_id = runs.open_run(tracker, plan, "pretrain-gpt2", flow_run_tags() | {"gptflow.nnodes": str(nnodes)})
    if nnodes == 1:
        return run_and_track(config, plan, tracker, run_id, nproc=nproc, timeout_minutes=timeout)
    return fan_out(tracker, run_id, preset, overrides, nproc_per_node, nnodes, rdzv_endpoint, timeout, config_path,
                   manifest)  # fmt: skip


def fan_out(tracker: Tracker, run_id: str, preset: str, overrides: list[str], nproc_per_node: int, nnodes: int,
            rdzv_endpoint: str, timeout: float, config_path: str, manifest: str) -> dict:  # fmt: skip
    """Start one flow run per node through this flow's deployment and wait for all of them."""
    deployment = this_deployment.name
    if not deployment or not rdzv_endpoint:
        tracker.finish(run_id, "FAILED")
        raise ConfigError(
            "nnodes > 1 runs one flow run per node through a deployment: start it with `prefect deployment run "
            "pretrain-gpt2/<name> -p nnodes=N -p rdzv_endpoint=HOST:PORT` (HOST: the first node, reachable from all)"
        )
    params = {
        "preset": preset, "overrides": overrides, "nproc_per_node": nproc_per_node, "nnodes": nnodes,
        "rdzv_endpoint": rdzv_endpoint, "timeout_minutes": timeout, "config_path": config_path,
        "mlflow_run_id": run_id, "dataset_manifest": manifest,
    }  # fmt: skip

    def node(rank: int):
        return run_deployment(f"pretrain-gpt2/{deployment}", parameters={**params, "node_rank": rank}, timeout=None)

    with ThreadPoolExecutor(nnodes) as pool:
        finished = list(pool.map(node, range(nnodes)))
    failed = [f"node {i}: {r.state.name}" for i, r in enumerate(finished) if not r.state.is_completed()]
    if failed:
        tracker.finish(run_id, "FAILED")
        raise runs.TrainingFailed(f"{len(failed)} of {nnodes} nodes did not complete ({'; '.join(failed)})")
    tracker.finish(run_id, "FINISHED")
    tags = tracker.client.get_run(run_id).data.tags  # set by the node that held rank 0
    return {"run_id": run_id} | {k.removeprefix("gptflow."): v for k, v in tags.items() if k.startswith("gptflow.")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, help="a training preset of pipelines.yaml")
    parser.add_argument("--config", default="pipelines.yaml", help="path of pipelines.yaml")
    parser.add_argument("--nproc-per-node", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)

    def run() -> dict:
        train_config(load_pipelines(Path(args.config)), args.preset, overrides)  # fail fast, before Prefect starts
        return pretrain_gpt2(args.preset, overrides, args.nproc_per_node, config_path=args.config)

    return run_from_command_line(run)


def run_from_command_line(run) -> int:
    """Run a training flow for a command: its result on stdout, a config error as one line on stderr."""
    try:
        result = run()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print({k: v for k, v in result.items() if k != "sample"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
