"""What a run trained on, as an MLflow dataset input: the run page's Datasets tab and the model's lineage.

    tracker.client.log_inputs(run_id, datasets=[training_input(Path("data/tokens/zh-1a2b3c"))])

The dataset is named after pipelines.yaml's dataset (the folder's name for other token datasets); its digest is the
start of the manifest's sha256 (which names every shard's sha256, so any change of tokens changes it); its source
is the folder; its profile holds the tokenizer and the tokens and documents per split and per corpus.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag

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


def training_input(folder: Path) -> DatasetInput:
    """The token dataset at `folder` as the training input of a run."""
    raw = (folder / MANIFEST).read_bytes()
    manifest = json.loads(raw)
    name = read_info(folder).get("name", folder.name) if (folder / INFO).is_file() else folder.name
    dataset = Dataset(
        name=name, digest=hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS], source_type="local",
        source=json.dumps({"uri": str(folder.resolve())}), schema=json.dumps({"format": manifest["format"],
        "dtype": manifest["dtype"]}), profile=json.dumps(dataset_profile(folder, manifest), ensure_ascii=False),
    )  # fmt: skip
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])
