"""Models scored on one evaluation text for the flows and `gptflow evaluate`: bits per character, whatever their
tokenizers, and the scores recorded in MLflow.

    rows = evaluate_models(config, ["models:/gptflow-poetry@champion", "runs/poetry-bpe"], dataset_folder)
    rows = score_models(client, refs, text)      # the same for any EvalText (a dataset's or files')
    logged = log_scores(client, rows, evaluation_input(text, "poetry", dataset_folder))   # lineage.py
    bpc = version_bpc(client, version, text)     # a registered version: from its tags when scored on this text
    evaluate_task(config, refs, dataset_folder)  # the Prefect task

The continue-training flow scores the version it starts from before training, so that a night's run shows where it
began; publishing compares the new version with the champion through version_bpc. log_scores puts a row's scores on
the logged model that was scored and on the run that logged it, each metric linked to the evaluation text as its
dataset (also logged as an input of the run), so that the model's page in MLflow lists the score with the text it
was measured on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.entities import DatasetInput, Metric
from mlflow.models import Model
from prefect import task

from gpt.bpc import EvalText
from gpt.checkpoint import MLMODEL
from gpt.evaluate import DEFAULT_CHARS, evaluate_checkpoint
from gpt.shards import TokenDataset
from tasks.registry import is_tracked, model_client, model_folder, version_folder


def version_bpc(client, version, text: EvalText, batch_size: int = 8) -> float:
    """Bits per character of a registered version on `text`: its val_bpc tag when that was measured on the same
    text (its eval_set tag), else measured now with the version's own tokenizer."""
    if version.tags.get("eval_set") == text.id and "val_bpc" in version.tags:
        return float(version.tags["val_bpc"])
    folder = version_folder(client, version)
    return evaluate_checkpoint(folder, text, batch_size)["val_bpc"]


def score_models(
    client, refs: list[str], text: EvalText, batch_size: int = 8, device: str = "auto",
    report: Callable[[str], None] = print,
) -> list[dict]:  # fmt: skip
    """Each model (a models:/ URI, a run id, a run or checkpoint folder) on `text`: one row per model, `model` being
    its reference, `checkpoint` the folder scored, `eval_set` the text's id; `report` gets a line per model."""
    rows = []
    for ref in refs:
        folder = model_folder(client, ref)
        row = evaluate_checkpoint(folder, text, batch_size, device)
        rows.append(row | {"model": ref, "checkpoint": str(folder), "eval_set": text.id})
        report(f"{ref}: {row['val_bpc']:.4f} bits per character, {row['tokens_per_char']:.3f} tokens per character")
    return rows


def evaluate_models(
    config, refs: list[str], dataset: Path, max_chars: int = DEFAULT_CHARS, batch_size: int = 8
) -> list[dict]:
    """Each model on the dataset's evaluation set (see score_models)."""
    text = EvalText.of_dataset(TokenDataset.open(dataset), max_chars)
    client = model_client(config, refs)
    print(f"evaluating {len(refs)} model(s) on {text.describe()}")
    return score_models(client, refs, text, batch_size)


def tracked_model(checkpoint: Path) -> tuple[str | None, str | None]:
    """(logged model id, run id) that the MLmodel of the MLflow model holding `checkpoint` (a registered version or
    a run's model, as downloaded) names; (None, None) for a checkpoint outside an MLflow model."""
    for folder in checkpoint.parents:
        if (folder / MLMODEL).is_file():
            model = Model.load(folder / MLMODEL)
            return model.model_id, model.run_id
    return None, None


def metric_key(column: str) -> str:
    """A table column as an MLflow metric name (a corpus named with other characters gets `_` for them)."""
    return re.sub(r"[^/\w.\- ]", "_", column)


def log_scores(client, rows: list[dict], evaluation: DatasetInput) -> dict[str, str]:
    """Log each tracked row's scores (its float columns: val_bpc, val_bits_per_byte, tokens_per_char, each per
    corpus) at the checkpoint's step, on the logged model scored and on its run, with the evaluation text as their
    dataset (and as an input of the run). Returns, per model reference, where its scores went or why they did not."""
    dataset, stamp, logged = evaluation.dataset, int(time.time() * 1000), {}
    for row in rows:
        if not is_tracked(row["model"]):
            logged[row["model"]] = "not logged: a local folder belongs to no MLflow run"
            continue
        model_id, run_id = tracked_model(Path(row["checkpoint"]))
        if run_id is None:
            logged[row["model"]] = f"not logged: {row['checkpoint']} is in no MLflow model that names its run"
            continue
        metrics = [
            Metric(metric_key(key), value, stamp, row["step"], model_id=model_id, dataset_name=dataset.name,
                   dataset_digest=dataset.digest)
            for key, value in row.items() if isinstance(value, float)
        ]  # fmt: skip
        client.log_inputs(run_id, datasets=[evaluation])
        client.log_batch(run_id, metrics=metrics)
        where = f"run {run_id}" if model_id is None else f"logged model {model_id} and its run {run_id}"
        logged[row["model"]] = f"{len(metrics)} metrics on {where}, dataset {dataset.name} ({dataset.digest})"
    return logged


evaluate_task = task(evaluate_models, name="evaluate")
