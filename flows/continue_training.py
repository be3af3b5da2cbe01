"""The `continue-training` flow: carry a registered model on with the newest data, every night.

    prefect deployment run continue-training/nightly          # pipelines.yaml: cron 0 2 * * *, Asia/Shanghai
    gptflow continue-training --preset chinese-gpt2 [--steps 500] [--alias latest]

It takes the version at alias `champion` (or `latest`) of the preset's registered model with its whole training
state, rebuilds the dataset encoded with that version's tokenizer (unchanged corpora are cache hits), trains first on
the documents that are new since the version's dataset and then on from its data cursor (tasks/training/nightly.py),
registers a new version (`latest`) and moves `champion` when the new version has fewer bits per character than the
champion on the same evaluation text. The version it starts from is scored on that text first (tag
gptflow.parent_val_bpc), so each night shows where it began and where it ended. A night that failed, timed out or
was cancelled is resumed from its newest checkpoint by the next attempt from the same version (the flow retries once;
a configuration error, such as no version at the alias, fails at once in one line).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.build_corpus import build_corpus
from gpt.evaluate import DEFAULT_CHARS
from tasks.config import load_pipelines
from tasks.failures import fails_in_one_line
from tasks.training.evaluate import evaluate_task, tracked_model
from tasks.training.launch import default_nproc_per_node
from tasks.training.nightly import finish_night, night_data_task, start_night
from tasks.training.presets import carried_preset
from tasks.training.publish import publish_task
from tasks.training.run import flow_run_tags, open_run, plan_run, tracked_run, train_task
from tasks.training.tracking import Tracker


@flow(name="continue-training", log_prints=True, retries=1, retry_delay_seconds=60)
@fails_in_one_line
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
    continued.steps), carrying on the version at `alias` ("" : the preset's continued.alias)."""
    config = load_pipelines(Path(config_path))
    spec = carried_preset(config, preset)
    cont = spec.continued
    tracker = Tracker.connect(config)
    night = start_night(config, tracker, preset, alias or cont.alias)
    tokens = build_corpus(spec.dataset, config_path=config_path, tokenizer=str(night.weights))
    data = night_data_task(night, config.root.local(tokens.rel))
    settings = night.engine_settings(data, steps or cont.steps, cont)
    plan = plan_run(config, preset, overrides or [], data.base, night.run_name, **settings)
    chars = plan.cfg.eval_chars or DEFAULT_CHARS
    before = evaluate_task(config, [str(night.weights)], data.base, chars, plan.cfg.batch_size)
    lineage = {
        "parent_version": str(night.parent.version), "parent_run_id": night.parent.run_id or "",
        "parent_val_bpc": f"{before[0]['val_bpc']:.6f}", **data.tags(),
    }  # fmt: skip
    parent_model, _ = tracked_model(night.weights)  # as its MLmodel names it
    run_id = open_run(tracker, plan, "continue-training", flow_run_tags(), lineage, parent_model or "")
    timeout = timeout_minutes or spec.timeout_minutes
    with tracked_run(tracker, run_id, plan):
        result = train_task(plan, tracker, run_id, nproc_per_node or default_nproc_per_node(), timeout_minutes=timeout)
        published = publish_task(config, plan, tracker, run_id, lineage)
    finish_night(night.out_dir)
    return result | published
