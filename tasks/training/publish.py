"""What a finished training run leaves in MLflow: its best checkpoint as an MLflow model (training/mlflow_model.py)
with the checkpoint's config as the model's parameters and its losses and bits per character as the model's metrics
(each linked to the dataset it was measured on, so the model page lists both datasets), samples, a registered
version with a description, and the `champion` alias when the version beats the champion on the same evaluation text.

    published = publish_results(config, plan, tracker, run_id)   # {registered_model, version, val_bpc, champion...}
    published = publish_later(config, tracker, Path("runs/demo/demo-20261207-0200-ab12"))   # server was down

The newest version is always models:/NAME/latest. `champion` moves only to a version with fewer bits per character
than the champion's on the dataset's evaluation text (gpt/bpc.py: whole val documents, the same text for any
tokenizer), so models with different tokenizers compete: the champion is re-measured, with its own tokenizer, when
its tags hold a score on another text. Each version's tags hold its val_bpc and the id of the text it was measured
on (eval_set), and the val loss of its checkpoint (on its own tokens, for reference).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlflow.entities import Metric
from prefect import task
from prefect.cache_policies import NO_CACHE

from gpt.atomic import write_text_atomic
from gpt.bpc import EvalText
from gpt.checkpoint import best_checkpoint, list_checkpoints, read_meta
from gpt.config import ConfigError
from gpt.decoding import CausalLM
from gpt.evaluate import DEFAULT_CHARS, evaluate_model
from gpt.pyfunc import Generation
from gpt.sample import SampleOptions, generate_texts, load_for_sampling, sample_file_name
from gpt.shards import TokenDataset
from gpt.tokenizer import Tokenizer
from tasks.registry import find_version
from tasks.training.chat_eval import ReplyScoring, reply_samples
from tasks.training.evaluate import version_bpc
from tasks.training.lineage import dataset_name, evaluation_input, training_dataset, training_input
from tasks.training.nightly import finish_night
from tasks.training.presets import registered_model_name
from tasks.training.run import RUN_RECORD, RunPlan, TrackingUnavailable, TrainingFailed, read_run
from tasks.training.tracking import MetricsShipper, Tracker, flatten, line_points

SAMPLE_CHARS = 300  # of the first sample, in the version's description
EVALUATION_METRICS = ("train_loss", "val_loss", "val_bpc", "val_bits_per_byte")
"""The metrics of an evaluation step that become the logged model's (val_bpc with its per-corpus ones)."""


def samples(model: CausalLM, tokenizer: Tokenizer, sample_cfg) -> list[str]:
    opts = SampleOptions(
        sample_cfg.num_samples, sample_cfg.max_new_tokens, sample_cfg.temperature, sample_cfg.top_k or None
    )
    prompt = sample_cfg.prompt
    return [prompt + text for text in generate_texts(model, tokenizer, prompt, opts)]


def generation_of(sample_cfg) -> Generation:
    """The registered model's default generation settings: the preset's samples'."""
    return Generation(sample_cfg.max_new_tokens, sample_cfg.temperature, sample_cfg.top_k)


def describe_version(plan: RunPlan, tags: dict[str, str], texts: list[str]) -> str:
    """The version's description in the registry: what it is, what it learned from, how good, and how it writes."""
    lineage = training_input(plan.dataset).dataset
    lines = [
        f"Preset `{plan.preset}`, step {tags['step']}, trained on dataset `{lineage.name}` (digest {lineage.digest}).",
        f"val_bpc {float(tags['val_bpc']):.4f} bits per character on evaluation text `{tags['eval_set']}`.",
    ]
    if "parent_model" in tags:
        lines.append(f"Fine-tuned on conversations from {tags['parent_model']} version {tags['parent_version']}.")
    elif "parent_version" in tags:
        parent_bpc = tags.get("parent_val_bpc", "?")
        lines.append(f"Continued from version {tags['parent_version']} (its val_bpc on this text: {parent_bpc}).")
    if texts:
        sample = texts[0][:SAMPLE_CHARS] + ("…" if len(texts[0]) > SAMPLE_CHARS else "")
        lines += ["", "Sample:", "", "```", sample, "```"]
    return "\n".join(lines)


def model_params(meta: dict) -> dict[str, str]:
    """The logged model's parameters: the engine config it was trained with, its model shape as built (a shape
    taken from other weights, a vocabulary sized from the dataset), and its step."""
    return flatten(meta["config"] | {"model": meta["model"]}) | {"step": str(meta["step"])}


def evaluation_points(metrics: Path, step: int) -> list[Metric]:
    """The points metrics.jsonl holds for evaluation step `step`: train and val loss, bits per character."""
    if not metrics.is_file():
        return []
    rows = (line_points(line) for line in metrics.read_text(encoding="utf-8").splitlines())
    return [m for points in rows for m in points if m.step == step and m.key.startswith(EVALUATION_METRICS)]


def log_model_metrics(tracker: Tracker, run_id: str, model_id: str, plan: RunPlan, step: int, evaluated_on, bpc):
    """The training's evaluation of the checkpoint (its points at `step`) as the logged model's metrics: losses on
    the training dataset, bits per character and per byte on the evaluation text (val_bpc measured now when the
    training did not)."""
    points = evaluation_points(plan.out_dir / "metrics.jsonl", step)
    if not any(m.key == "val_bpc" for m in points):
        points.append(Metric("val_bpc", bpc, int(time.time() * 1000), step))
    trained_on = training_dataset(plan.dataset)
    linked = [(m, trained_on if m.key.endswith("_loss") else evaluated_on) for m in points]
    tracker.log_model_metrics(run_id, model_id, linked)


def publish_results(config, plan: RunPlan, tracker: Tracker, run_id: str, extra_tags: dict | None = None) -> dict:
    """Log the best checkpoint as the run's MLflow model and its samples, register it (the newest version is
    models:/NAME/latest) with a description, and point `champion` at it when it wins."""
    best = best_checkpoint(plan.out_dir)
    if best is None:
        raise TrainingFailed(f"training ended without a checkpoint in {plan.out_dir}")
    meta = read_meta(best)
    sample_cfg = config.training[plan.preset].sample
    logged = tracker.log_model(run_id, best, generation_of(sample_cfg), sample_cfg.prompt, meta["step"])
    model, tokenizer, _ = load_for_sampling(best)
    cfg, dataset = plan.cfg, TokenDataset.open(plan.dataset)
    chars = cfg.eval_chars or DEFAULT_CHARS
    if dataset.chat:  # a chat model: its replies to held-out conversations
        texts = reply_samples(model, tokenizer, sample_cfg)
        replies = ReplyScoring(dataset, chars, cfg.batch_size, model.config.block_size)
        bpc, eval_set, evaluation = replies.score(model)["val_bpc"], replies.id, training_input(plan.dataset)
    else:
        texts = samples(model, tokenizer, sample_cfg)
        text = EvalText.of_dataset(dataset, chars)
        bpc, eval_set = evaluate_model(model, tokenizer, text, cfg.batch_size)["val_bpc"], text.id
        evaluation = evaluation_input(text, dataset_name(plan.dataset), plan.dataset)
    tracker.log_text(run_id, "\n\n---------------\n\n".join(texts), f"samples/{sample_file_name(meta['step'])}")
    tracker.client.log_inputs(run_id, datasets=[evaluation])
    tracker.log_model_params(logged.model_id, model_params(meta))
    log_model_metrics(tracker, run_id, logged.model_id, plan, meta["step"], evaluation.dataset, bpc)
    name = registered_model_name(config, plan.preset)
    tags = {"val_bpc": f"{bpc:.6f}", "eval_set": eval_set, "step": str(meta["step"]), "preset": plan.preset}
    if meta.get("val_loss") is not None:
        tags["val_loss"] = f"{meta['val_loss']:.6f}"
    tags |= extra_tags or {}
    version = tracker.register(name, run_id, logged, tags, describe_version(plan, tags, texts))
    champion = find_version(tracker.client, name, "champion")
    if champion is None:
        rival = None
    elif dataset.chat:
        rival = replies.version_bpc(tracker.client, champion)
    else:
        rival = version_bpc(tracker.client, champion, text, cfg.batch_size)
    promoted = rival is None or bpc < rival
    if promoted:
        tracker.set_alias(name, "champion", version.version)
    result = {
        "registered_model": name, "version": version.version, "step": meta["step"], "val_loss": meta.get("val_loss"),
        "val_bpc": bpc, "eval_set": eval_set, "champion": version.version if promoted else champion.version,
        "champion_val_bpc": bpc if promoted else rival, "sample": texts[0] if texts else "",
    }  # fmt: skip
    tracker.set_tags(run_id, {f"gptflow.{k}": v for k, v in result.items() if k != "sample" and v is not None})
    if (record := plan.out_dir / RUN_RECORD).is_file():
        write_text_atomic(record, json.dumps(json.loads(record.read_text()) | {"published": result["version"]}))
    return result


def publish_later(config, tracker: Tracker, out_dir: Path) -> dict:
    """Publish a finished run whose flow could not (its tracking server was down): send the metrics and samples the
    MLflow run lacks, then register it as publish_results does, finish the MLflow run and mark a night done."""
    plan, record = read_run(out_dir)
    if record.get("published"):
        raise ConfigError(f"{plan.out_dir} is published already, as version {record['published']}")
    if not list_checkpoints(plan.out_dir):
        raise ConfigError(f"{plan.out_dir} holds no finished checkpoint to publish")
    run_id = record["run_id"]
    shipper = MetricsShipper(tracker.client, run_id, plan.out_dir / "metrics.jsonl", samples=plan.out_dir / "samples")
    if unsent := shipper.after_sent().close(tracker.outage_seconds):
        raise TrackingUnavailable(f"{unsent} metric points of {plan.out_dir} could not be sent; try again later")
    result = publish_results(config, plan, tracker, run_id, record["lineage"])
    tracker.finish(run_id, "FINISHED")
    finish_night(plan.out_dir)
    return result


publish_task = task(
    publish_results, name="publish", task_run_name="publish-{plan.run_name}", cache_policy=NO_CACHE
)  # a publication is never reused
