"""What the bpe and tokens stages read the same way: the `tokenize` settings (`datasets.<name>.tokenize`), the
train/val split of a deduplicated dataset, and the texts its documents become (each corpus' template filled).

    config = TokenizeConfig(tokenizer="char", val_fraction=0.01)
    plan = split_plan(parts, config, single_document_corpora(deduped))
    plan.groups[k], plan.to_val(k)                        # (part, row group), and which of its rows go to val
    texts, corpora = read_rendered(part, group, dataset_templates(pipelines, "zh"))

Splitting: a document goes to val when a salted hash of its content key (the filter stage's exact key: its
normalized, variant-folded text) falls below the val fraction (raised when needed so that val holds min_val_docs
documents). A document's side depends on its own content only: adding corpora or documents never moves one from
val to train once the dataset holds min_val_docs / val_fraction documents. A corpus of a single document (Tiny
Shakespeare) is split by position instead: its first 90% of characters train, the rest val. The bpe stage learns
from the train side of this split, the tokens stage encodes both, so a trained tokenizer never sees val.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpt.hashing import mix64
from gpt.shards import TOKENIZER_FILE
from tasks.corpus.formats.templates import PLAIN, Template
from tasks.corpus.settings import TokenizeConfig

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig
    from tasks.stage import StageResult

HF_TOKENIZER = Path("hf") / TOKENIZER_FILE
"""Where a folder with a trained BPE keeps it as a Hugging Face tokenizer.json (its own tokenizer.json is gptflow's)."""
POSITIONAL_VAL_FRACTION = 0.1


def content_keys(keys: pa.Array) -> np.ndarray:
    """A document's identity, int64, from its 16-byte exact key: equal for equal (normalized) text."""
    halves = np.frombuffer(keys.buffers()[1], dtype=np.uint64, count=2 * len(keys), offset=keys.offset * 16)
    return (mix64(halves[0::2] ^ mix64(halves[1::2]))).view(np.int64)


def content_hashes(keys: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per content key, salted by the split seed."""
    salt = mix64(np.array([seed], dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    return mix64(keys.view(np.uint64) ^ salt) / 2.0**64


def val_threshold(hashes: np.ndarray, config: TokenizeConfig) -> float:
    """Documents whose content hash is below this go to val."""
    wanted = min(config.min_val_docs, max(1, len(hashes) // 10)) if len(hashes) > 1 else 0
    if wanted == 0 or int((hashes < config.val_fraction).sum()) >= wanted:
        return config.val_fraction
    return float(np.nextafter(np.sort(hashes)[wanted - 1], 1.0))


@dataclass(frozen=True)
class SplitPlan:
    """Where each document of a deduplicated dataset goes, row group by row group."""

    groups: list[tuple[Path, int]]
    """(part, row group) in order."""
    keys: list[np.ndarray]
    """Per row group: each row's content key."""
    hashes: list[np.ndarray]
    """Per row group: each row's content hash in [0, 1)."""
    splittable: list[np.ndarray]
    """Per row group: whether the row is split by its hash (False: a single-document corpus, split by position)."""
    threshold: float
    """Rows whose hash is below it go to val."""

    def to_val(self, k: int) -> np.ndarray:
        return (self.hashes[k] < self.threshold) & self.splittable[k]


def split_plan(parts: list[Path], config: TokenizeConfig, single_doc: set[str]) -> SplitPlan:
    """The train/val split of the dataset's parts (`single_doc`: the corpora of one document)."""
    groups, keys, hashes, splittable = [], [], [], []
    for part in parts:
        reader = pq.ParquetFile(part)
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=["exact_key", "corpus"])
            groups.append((part, group))
            keys.append(content_keys(table.column("exact_key").combine_chunks()))
            hashes.append(content_hashes(keys[-1], config.split_seed))
            splittable.append(np.array([c not in single_doc for c in table.column("corpus").to_pylist()], dtype=bool))
    splits = [h[ok] for h, ok in zip(hashes, splittable, strict=True)]
    threshold = val_threshold(np.concatenate([np.zeros(0), *splits]), config)
    return SplitPlan(groups, keys, hashes, splittable, threshold)


def single_document_corpora(deduped: StageResult) -> set[str]:
    """The corpora a deduplicated dataset holds one document of (split by position, not by content hash)."""
    return {name for name, counts in deduped.extra.get("per_corpus", {}).items() if counts.get("rows") == 1}


def read_rendered(part: Path, group: int, templates: dict[str, str]) -> tuple[list[str], list[str]]:
    """The texts the model reads of a row group (each row's corpus template over its text, title and meta), and
    their corpora."""
    reader = pq.ParquetFile(part)
    columns = [c for c in ("text", "corpus", "title", "meta") if c in reader.schema_arrow.names]
    table = reader.read_row_group(group, columns=columns)
    texts, corpora = table.column("text").to_pylist(), table.column("corpus").to_pylist()
    titles = table.column("title").to_pylist() if "title" in columns else [None] * len(texts)
    metas = table.column("meta").to_pylist() if "meta" in columns else [None] * len(texts)
    parsed = {corpus: _template(spec) for corpus, spec in templates.items() if spec != PLAIN}
    rendered = [
        parsed[corpus].render(text, title, json.loads(meta) if meta else None) if corpus in parsed else text
        for text, corpus, title, meta in zip(texts, corpora, titles, metas, strict=True)
    ]
    return rendered, corpora


@cache
def _template(spec: str) -> Template:
    return Template(spec)


def dataset_templates(config: PipelinesConfig, dataset: str) -> dict[str, str]:
    """Per corpus of the dataset: the template of the text its documents become."""
    return {name: config.corpora[name].resolved_template.spec for name in config.datasets[dataset].corpora}
