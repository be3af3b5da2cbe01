"""The `continue-training` flow: carry a registered model on with the newest data, every night.

    prefect deployment run continue-training/nightly          # pipelines.yaml: cron 0 2 * * *, Asia/Shanghai
    gptflow continue-training --preset chinese-gpt2 [--steps 500] [--alias champion]

It loads the version at alias `latest` (or `champion`) of the preset's registered model, rebuilds the dataset
(new or changed corpora make new shards through the fingerprints; unchanged ones are cache hits), trains `steps`
more steps from those weights at the preset's continued-training learning rate, registers a new version (`latest`)
and moves `champion` when the new version has fewer bits per character than the champion on the dataset's
evaluation text. The version it starts from is scored on that text first (tag gptflow.parent_val_bpc), so each
night shows where it began and where it ended.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.build_corpus import build_corpus
from gpt.evaluate import DEFAULT_CHARS
from tasks.config import load_pipelines
from tasks.training.evaluate import evaluate_task
from tasks.training.launch import default_nproc_per_node
from tasks.training.presets import run_folder, training_preset
from tasks.training.publish import publish_task
from tasks.training.run import (
    flow_run_tags,
    new_run_name,
    open_run,
    parent_version,
    parent_weights,
    plan_run,
    tracked_run,
    train,
)  # fmt: skip
from tasks.training.tracking import Tracker


@flow(name="continue-training", log_prints=True)
def continue_training(
    preset: str,
    steps: int = 0,
    alias: str = "",
    overrides: list[str] | None = None,
    nproc_per_node: int = 0,
    timeout_minutes: float = 0,
    config_path: str = "pipelines.yaml",
) -> dict:
    """Train the registered model of training preset `preset` for `steps` more steps (0: the preset's
    continued.steps), starting from the version at `alias` ("" : the preset's continued.alias)."""
    config = load_pipelines(Path(config_path))
    spec = training_preset(config, preset)
    cont = spec.continued
    alias, steps = alias or cont.alias, steps or cont.steps
    tracker = Tracker.connect(config)
    parent = parent_version(config, tracker, preset, alias)
    print(f"continuing {parent.name} version {parent.version} (alias {alias}) for {steps} steps")
    dataset = config.root.local(build_corpus(spec.dataset, config_path=config_path).rel)
    run_name = new_run_name(preset)
    weights = parent_weights(tracker, parent, run_folder(config, preset, run_name) / "parent", dataset)
    plan = plan_run(
        config, preset, overrides or [], dataset, run_name, init_from=str(weights), max_iters=steps, lr=cont.lr,
        min_lr=cont.lr, lr_schedule="constant", warmup_iters=cont.warmup_iters, lr_decay_iters=0,
    )  # fmt: skip
    before = evaluate_task(config, [str(weights)], dataset, plan.cfg.eval_chars or DEFAULT_CHARS, plan.cfg.batch_size)
    lineage = {
        "parent_version": str(parent.version), "parent_run_id": parent.run_id or "",
        "parent_val_bpc": f"{before[0]['val_bpc']:.6f}",
    }  # fmt: skip
    run_id = open_run(
        tracker, plan, "continue-training", flow_run_tags() | {f"gptflow.{k}": v for k, v in lineage.items()}
    )
    timeout = timeout_minutes or spec.timeout_minutes
    with tracked_run(tracker, run_id, plan):
        result = train(plan, tracker, run_id, nproc_per_node or default_nproc_per_node(), timeout_minutes=timeout)
        return result | publish_task(config, plan, tracker, run_id, lineage)
