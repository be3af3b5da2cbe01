"""The `pretrain-gpt2` flow: build (or find) a preset's dataset, train it under torchrun, track it all in MLflow.

    prefect deployment run pretrain-gpt2/shakespeare-char-cpu
    prefect deployment run pretrain-gpt2/chinese-gpt2 -p nnodes=2 -p rdzv_endpoint=10.0.0.1:29400
    gptflow pretrain --preset shakespeare-char-cpu [--max_iters=500 ...]

One node: the flow runs build-corpus as a subflow (every stage is a cache hit when the shards exist), opens an
MLflow run (params: the resolved engine config; tags: dataset fingerprint and manifest checksum, code version, the
flow run's address) and links it from the flow run, launches `torchrun -m gpt.train` in its own process group as the
`train` task (its output in the flow's logs, its progress in an artifact), ships metrics.jsonl to MLflow from a
thread, then logs the best checkpoint and samples, registers it as a new version (`latest`), and
moves `champion` when it beats the champion on the same validation set. A failed, timed-out or cancelled training
makes a FAILED (or KILLED) MLflow run and a failed flow run; its checkpoints stay in the run folder. Several nodes:
the flow opens the run, then starts one flow run per node through its own deployment; a worker on each node picks
one up and torchrun's c10d rendezvous joins them.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.build_corpus import build_corpus
from tasks.config import load_pipelines
from tasks.failures import fails_in_one_line
from tasks.training.launch import default_nproc_per_node
from tasks.training.presets import train_config, training_preset
from tasks.training.publish import publish_task
from tasks.training.run import (
    flow_run_tags,
    new_run_name,
    open_run,
    plan_run,
    run_nodes,
    tracked_run,
    train_task,
    trained_rank_zero,
)  # fmt: skip
from tasks.training.tracking import Tracker


@flow(name="pretrain-gpt2", log_prints=True)
@fails_in_one_line
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
    tokens: str = "",
) -> dict:
    """Train training preset `preset` of pipelines.yaml; returns the run id, the registered version and losses.

    nproc_per_node: processes per node (0: every GPU, or one process on a machine without one). nnodes > 1 needs
    rdzv_endpoint (HOST:PORT on the first node, reachable from all) and a deployment of this flow; node_rank,
    mlflow_run_id and tokens (the token dataset's folder under the data root) are set by the flow for the per-node
    runs it starts."""
    overrides = overrides or []
    config = load_pipelines(Path(config_path))
    train_config(config, preset, overrides)  # an unknown preset or a wrong override fails before anything starts
    timeout = timeout_minutes or training_preset(config, preset).timeout_minutes
    nproc = nproc_per_node or default_nproc_per_node()
    tracker = Tracker.connect(config)
    if node_rank is not None:  # one node of a multi-node run started by the parent flow run
        run_name = tracker.client.get_run(mlflow_run_id).info.run_name
        plan = plan_run(config, preset, overrides, config.root.local(tokens), run_name, node=node_rank)
        with tracked_run(tracker, mlflow_run_id, plan, owns_run=False):
            result = train_task(plan, tracker, mlflow_run_id, nproc, nnodes, rdzv_endpoint, timeout)
            return result | (publish_task(config, plan, tracker, mlflow_run_id) if trained_rank_zero(plan) else {})
    dataset = build_corpus(training_preset(config, preset).dataset, config_path=config_path)
    plan = plan_run(config, preset, overrides, config.root.local(dataset.rel), new_run_name(preset))
    run_id = open_run(tracker, plan, "pretrain-gpt2", flow_run_tags() | {"gptflow.nnodes": str(nnodes)})
    if nnodes > 1:
        parameters = {
            "preset": preset, "overrides": overrides, "nproc_per_node": nproc_per_node, "nnodes": nnodes,
            "rdzv_endpoint": rdzv_endpoint, "timeout_minutes": timeout, "config_path": config_path,
            "mlflow_run_id": run_id, "tokens": dataset.rel,
        }  # fmt: skip
        return run_nodes(tracker, run_id, parameters, nnodes)
    with tracked_run(tracker, run_id, plan):
        return train_task(plan, tracker, run_id, nproc, timeout_minutes=timeout) | publish_task(
            config, plan, tracker, run_id
        )
