"""What a run trained and was measured on, as MLflow dataset inputs: the run page's Datasets tab, the model page's
"Datasets used" and the model's lineage.

    tracker.client.log_inputs(run_id, datasets=[training_input(Path("data/tokens/zh-1a2b3c"))])
    tracker.client.log_inputs(run_id, datasets=[evaluation_input(text, "zh", Path("data/tokens/zh-1a2b3c"))])

The training dataset is named after pipelines.yaml's dataset (the folder's name for other token datasets); its
digest is the start of the manifest's sha256 (which names every shard's sha256, so any change of tokens changes it);
its source is the folder; its schema is MLflow's column spec of a token stream (one integer column, the token id);
its profile holds the tokenizer and the tokens and documents per split and per corpus. The evaluation text (gpt/bpc.py)
is named `<dataset>-eval` and digested by its id, the same for every tokenizer, so models measured on the same text
list the same dataset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.types.schema import ColSpec, Schema

from gpt.bpc import EvalText
from gpt.shards import MANIFEST
from tasks.stage import INFO, read_info

DIGEST_CHARS = 16  # MLflow keeps at most 36 characters of a dataset digest
COUNTS = {"documents": "docs", "characters": "chars", "tokens": "tokens"}
STATS = "stats.json"  # the tokens stage's documents, characters and tokens per corpus and split


def corpus_totals(row: dict) -> dict[str, int]:
    """A corpus' documents, characters and tokens over both splits (from a stats.json row)."""
    return {key: row[f"train_{part}"] + row[f"val_{part}"] for key, part in COUNTS.items()}


def dataset_profile(folder: Path, manifest: dict) -> dict:
    splits = manifest["splits"]
    profile = {
        "tokenizer": manifest["tokenizer"], "vocab_size": manifest["vocab_size"],
        **{f"{split}_tokens": sum(shard["tokens"] for shard in shards) for split, shards in splits.items()},
    }  # fmt: skip
    if (folder / STATS).is_file():
        corpora = json.loads((folder / STATS).read_text(encoding="utf-8"))["corpora"]
        profile["corpora"] = {corpus: corpus_totals(row) for corpus, row in corpora.items()}
    return profile


def token_schema(dtype: str) -> str:
    """MLflow's column spec of a token stream: one column of token ids (uint16 ids fit MLflow's integer)."""
    column = ColSpec("integer" if dtype == "uint16" else "long", "token_id")
    return json.dumps({"mlflow_colspec": Schema([column]).to_dict()})


def dataset_name(folder: Path) -> str:
    """pipelines.yaml's name of the token dataset at `folder` (the folder's own name for other datasets)."""
    return read_info(folder).get("name", folder.name) if (folder / INFO).is_file() else folder.name


def training_dataset(folder: Path) -> Dataset:
    """The token dataset at `folder` as an MLflow dataset."""
    raw = (folder / MANIFEST).read_bytes()
    manifest = json.loads(raw)
    return Dataset(
        name=dataset_name(folder), digest=hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS], source_type="local",
        source=json.dumps({"uri": str(folder.resolve())}), schema=token_schema(manifest["dtype"]),
        profile=json.dumps(dataset_profile(folder, manifest), ensure_ascii=False),
    )  # fmt: skip


def training_input(folder: Path) -> DatasetInput:
    """The token dataset at `folder` as the training input of a run."""
    return DatasetInput(training_dataset(folder), tags=[InputTag("mlflow.data.context", "training")])


def evaluation_dataset(text: EvalText, name: str, source: Path) -> Dataset:
    """The evaluation text bits per character are measured on, taken from `source` (a token dataset's folder or a
    text file), as the MLflow dataset `<name>-eval`."""
    schema = json.dumps({"mlflow_colspec": Schema([ColSpec("string", "text")]).to_dict()})
    return Dataset(
        name=f"{name}-eval", digest=text.id, source_type="local", schema=schema,
        source=json.dumps({"uri": str(Path(source).resolve())}), profile=json.dumps({"text": text.describe()}),
    )  # fmt: skip


def evaluation_input(text: EvalText, name: str, source: Path) -> DatasetInput:
    """The evaluation text as an input of a run (context `evaluation`)."""
    return DatasetInput(evaluation_dataset(text, name, source), tags=[InputTag("mlflow.data.context", "evaluation")])
