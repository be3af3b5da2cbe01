"""What a finished training run leaves in MLflow: its best checkpoint, samples, a registered version, and the
`champion` alias when the version beats the champion on the same evaluation text.

    published = publish_results(config, plan, tracker, run_id)   # {registered_model, version, val_bpc, champion...}

The newest version is always models:/NAME/latest. `champion` moves only to a version with fewer bits per character
than the champion's on this run's evaluation text (gpt/bpc.py), so models with different tokenizers compete: the
champion is re-measured, with its own tokenizer, when it was scored on another text. A dataset without an evaluation
text (one made by prepare_text) compares val loss on the same validation windows instead, which needs the same
tokenizer.
"""

from __future__ import annotations

from gpt.bpc import EvalDocuments, eval_set_id
from gpt.checkpoint import best_checkpoint, read_meta
from gpt.evaluate import evaluate_checkpoint, evaluate_model, validation_set_id
from gpt.model import GPT
from gpt.sample import SampleOptions, generate_texts, load_for_sampling
from gpt.shards import TokenDataset
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


def champion_bpc(tracker: Tracker, name: str, champion, plan: RunPlan, eval_set: str) -> float:
    """The champion's bits per character on this run's evaluation text: from its tags when scored on it, else
    measured now, the text encoded with the champion's own tokenizer."""
    if champion.tags.get("eval_set") == eval_set and "val_bpc" in champion.tags:
        return float(champion.tags["val_bpc"])
    folder = download_model(tracker.client, f"models:/{name}/{champion.version}", plan.out_dir / "champion")
    model, tokenizer, _ = load_for_sampling(folder)
    own = None if same_tokenizer(folder, plan.dataset) else tokenizer
    documents = EvalDocuments.load(TokenDataset.open(plan.dataset), plan.cfg.eval_chars, model.config.block_size, own)
    return documents.score(model, plan.cfg.batch_size)["val_bpc"]


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
    dataset = TokenDataset.open(plan.dataset)
    eval_set = eval_set_id(dataset, cfg.eval_chars)
    documents = EvalDocuments.load(dataset, cfg.eval_chars, model.config.block_size)
    bpc = documents.score(model, cfg.batch_size)["val_bpc"] if documents is not None else None
    name = registered_model_name(config, plan.preset)
    tags = {"val_loss": f"{val_loss:.6f}", "val_set": val_set, "step": str(step), "preset": plan.preset}
    if bpc is not None:
        tags |= {"val_bpc": f"{bpc:.6f}", "eval_set": eval_set}
    version = tracker.register(name, run_id, tags | (extra_tags or {}))
    champion = tracker.version_at(name, "champion")
    ours, metric = (bpc, "val_bpc") if bpc is not None else (val_loss, "val_loss")
    if champion is None:
        rival = None
    elif bpc is not None:
        rival = champion_bpc(tracker, name, champion, plan, eval_set)
    else:
        rival = champion_loss(tracker, name, champion, plan, val_set)
    promoted = champion is None or (rival is not None and ours < rival)
    if promoted:
        tracker.set_alias(name, "champion", version.version)
    result = {
        "registered_model": name, "version": version.version, "step": step, "val_loss": val_loss, "val_bpc": bpc,
        "compared_on": metric, "champion": version.version if promoted else champion.version,
        f"champion_{metric}": ours if promoted else rival, "sample": texts[0] if texts else "",
    }  # fmt: skip
    tracker.set_tags(run_id, {f"gptflow.{k}": v for k, v in result.items() if k != "sample" and v is not None})
    return result


publish_task = PrefectTask(publish_results, name="publish", task_run_name="publish-{plan.run_name}")
