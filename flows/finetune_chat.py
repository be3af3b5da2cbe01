"""The `finetune-chat` flow: a registered model fine-tuned on a conversation dataset into one you can talk to.

    prefect deployment run finetune-chat/demo-chat
    gptflow finetune-chat --preset demo-chat [--base models:/gptflow-demo@champion] [--max_iters=100 ...]

It takes the version the preset's `finetune_from` names (or `base`), downloads it, builds the preset's conversation
dataset encoded with that version's tokenizer (tasks/corpus/chat_tokens.py: the chat template's tokens after its
vocabulary, or its own ChatML), and trains it under torchrun as pretrain-gpt2 does, starting from its weights with
a new optimizer: the engine's loop with the loss on the replies only, rows of packed conversations, and bits per
character of the replies to held-out conversations per task (val_bpc/<task>) at each evaluation, the version's own
score first (step 0). The result is registered as the preset's own model (tags parent_model and parent_version name
where it came from) and becomes `champion` when its replies score better than the champion's. Scheduled after the
base model's nightly run, it fine-tunes each new champion of the base (pipelines.yaml, deployments).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.build_corpus import build_corpus
from gpt.config import ConfigError, parse_overrides
from tasks.config import load_pipelines
from tasks.failures import fails_in_one_line
from tasks.registry import registered_version, version_folder
from tasks.training.evaluate import tracked_model
from tasks.training.launch import default_nproc_per_node
from tasks.training.presets import train_config, training_preset
from tasks.training.publish import publish_task
from tasks.training.run import flow_run_tags, new_run_name, open_run, plan_run, tracked_run, train_task
from tasks.training.tracking import Tracker


@flow(name="finetune-chat", log_prints=True, retries=1, retry_delay_seconds=60)
@fails_in_one_line
def finetune_chat(
    preset: str,
    base: str = "",
    overrides: list[str] | None = None,
    nproc_per_node: int = 0,
    timeout_minutes: float = 0,
    config_path: str = "pipelines.yaml",
) -> dict:
    """Fine-tune the registered version `base` ("" : the preset's finetune_from, models:/NAME@ALIAS or
    models:/NAME/VERSION) on the preset's conversation dataset; returns the run id, the registered version and
    its val_bpc."""
    overrides = overrides or []
    config = load_pipelines(Path(config_path))
    spec = training_preset(config, preset)
    if not config.datasets[spec.dataset].conversations:
        raise ConfigError(f"training.{preset}: dataset {spec.dataset!r} has no conversations to fine-tune on")
    if set(parse_overrides(overrides)) & {"init_from", "continue_from"}:
        raise ConfigError("finetune-chat starts from the registered version it names (base): drop init_from")
    train_config(config, preset, overrides)
    tracker = Tracker.connect(config)
    parent = registered_version(tracker.client, base or spec.finetune_from)
    weights = version_folder(tracker.client, parent)
    tokens = build_corpus(spec.dataset, config_path=config_path, tokenizer=str(weights))
    plan = plan_run(config, preset, overrides, config.root.local(tokens.rel), new_run_name(preset),
                    init_from=str(weights))  # fmt: skip
    lineage = {"parent_model": parent.name, "parent_version": str(parent.version), "parent_run_id": parent.run_id or ""}
    parent_model, _ = tracked_model(weights)
    run_id = open_run(tracker, plan, "finetune-chat", flow_run_tags(), lineage, parent_model or "")
    timeout = timeout_minutes or spec.timeout_minutes
    with tracked_run(tracker, run_id, plan):
        nproc = nproc_per_node or default_nproc_per_node()
        return train_task(plan, tracker, run_id, nproc, timeout_minutes=timeout) | publish_task(
            config, plan, tracker, run_id, lineage
        )
