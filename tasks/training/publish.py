"""What a finished training run leaves in MLflow: its best checkpoint, samples, a registered version, and the
`champion` alias when the version beats the champion on the same validation set.

    published = publish_results(config, plan, tracker, run_id)   # {registered_model, version, val_loss, champion...}

The newest version is always models:/NAME/latest; `champion` moves only to a version with a lower val loss than
the champion's on this run's validation set (re-measured when the champion was scored on another one).
"""

from __future__ import annotations

from gpt.checkpoint import best_checkpoint, read_meta
from gpt.evaluate import evaluate_checkpoint, evaluate_model, validation_set_id
from gpt.model import GPT
from gpt.sample import SampleOptions, generate_texts, load_for_sampling
from gpt.tokenizer import Tokenizer
from tasks.stage import PrefectTask
from tasks.training.presets import registered_model_name
from tasks.training.run import RunPlan, TrainingFailed, same_tokenizer
from tasks.training.tracking import Tracker, download_model


def samples(model: GPT, tokenizer: Tokenizer, sample_cfg) -> list[str]:
    opts = SampleOptions(
        sample_cfg.num_samples, sample_cfg.max_new_tokens, sample_cfg.temperature, sample_cfg.top_k or None
    )
    prompt = sample_cfg.prompt
    return [prompt + text for text in generate_texts(model, tokenizer, prompt, opts)]


def champion_loss(tracker: Tracker, name: str, champion, plan: RunPlan, val_set: str) -> float | None:
    """The champion's val loss on this run's validation set: from its tags when measured on the same set,
    else measured now; None when its tokenizer differs from the dataset's (then the two cannot compare)."""
    if champion.tags.get("val_set") == val_set:
        return float(champion.tags["val_loss"])
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


publish_task = PrefectTask(publish_results, name="publish", task_run_name="publish-{plan.run_name}")
