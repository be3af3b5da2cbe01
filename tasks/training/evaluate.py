"""Models scored on one evaluation text for the flows: bits per character, whatever their tokenizers.

    rows = evaluate_models(config, ["models:/gptflow-poetry@champion", "runs/poetry-bpe"], dataset_folder)
    bpc = version_bpc(client, version, text)     # a registered version: from its tags when scored on this text
    evaluate_task(config, refs, dataset_folder)  # the Prefect task

The continue-training flow scores the version it starts from before training, so that a night's run shows where it
began; publishing compares the new version with the champion through version_bpc.
"""

from __future__ import annotations

from pathlib import Path

from gpt.bpc import EvalText
from gpt.evaluate import DEFAULT_CHARS, evaluate_checkpoint
from gpt.shards import TokenDataset
from tasks.registry import client_for, is_tracked, model_folder
from tasks.stage import PrefectTask


def version_bpc(client, version, text: EvalText, batch_size: int = 8) -> float:
    """Bits per character of a registered version on `text`: its val_bpc tag when that was measured on the same
    text (its eval_set tag), else measured now with the version's own tokenizer."""
    if version.tags.get("eval_set") == text.id and "val_bpc" in version.tags:
        return float(version.tags["val_bpc"])
    folder = model_folder(client, f"models:/{version.name}/{version.version}")
    return evaluate_checkpoint(folder, text, batch_size)["val_bpc"]


def evaluate_models(
    config, refs: list[str], dataset: Path, max_chars: int = DEFAULT_CHARS, batch_size: int = 8
) -> list[dict]:
    """Each model (a models:/ URI, a run id, a run or checkpoint folder) on the dataset's evaluation set: one row
    per model, `model` being its reference, plus `eval_set`, the text's id."""
    text = EvalText.of_dataset(TokenDataset.open(dataset), max_chars)
    client = client_for(config) if any(map(is_tracked, refs)) else None
    print(f"evaluating {len(refs)} model(s) on {text.describe()}")
    rows = []
    for ref in refs:
        row = evaluate_checkpoint(model_folder(client, ref), text, batch_size)
        rows.append(row | {"model": ref, "eval_set": text.id})
        print(f"{ref}: {row['val_bpc']:.4f} bits per character, {row['tokens_per_char']:.3f} tokens per character")
    return rows


evaluate_task = PrefectTask(evaluate_models, name="evaluate")
