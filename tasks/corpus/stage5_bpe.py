"""Stage 5, bpe (for datasets with `tokenize.tokenizer: bpe`): a byte-level BPE trained on the dataset's own train
documents, from deduped/ into tokenizers/<dataset>-bpe<vocab>-<fp>/.

    vocabulary = bpe_dataset(config, "zh", deduped)      # StageResult; its folder holds:
    # tokenizer.json      gptflow's spec (gpt/tokenizer.py, type bpe): what the tokens stage encodes with
    # hf/tokenizer.json   the same tokenizer for Hugging Face `tokenizers` / transformers
    tokenizer = train_bpe(texts, vocab_size=32000)         # a gpt.tokenizer.BPETokenizer

Training data: the documents the tokens stage will put in train (never val: both stages take text/split.py's split), a
uniform sample of them when they hold more than `bpe_train_chars` characters. The trainer is rustbpe (the merges of
GPT-style byte-level BPE, trained in parallel in Rust); its tokens, in merge order, are the ranks the encoder reads.
The pre-tokenizer is GPT-4's split pattern: a run of letters (so a run of Chinese characters between punctuation,
where BPE learns words), digits by three at most, punctuation on its own, whitespace kept; English words keep their
leading space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
from prefect import task

from gpt.atomic import write_text_atomic
from gpt.hf import hf_tokenizer
from gpt.shards import TOKENIZER_FILE
from gpt.tokenizer import EOT, BPETokenizer
from tasks.corpus.settings import TokenizeConfig
from tasks.corpus.text.split import (
    HF_TOKENIZER,
    POSITIONAL_VAL_FRACTION,
    dataset_templates,
    read_rendered,
    single_document_corpora,
    split_plan,
)
from tasks.parallel import Progress
from tasks.stage import StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

BPE_SETTINGS = ("vocab_size", "bpe_train_chars", "val_fraction", "min_val_docs", "split_seed")
"""The tokenize settings the trained BPE depends on (the split decides which documents it learns from)."""

SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def train_bpe(texts: Iterable[str], vocab_size: int, name: str = "bpe") -> BPETokenizer:
    """A byte-level BPE of vocab_size tokens (end-of-text included) learned from texts."""
    import rustbpe

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), vocab_size - 1, pattern=SPLIT_PATTERN)
    ranks = [bytes(token) for token, _ in sorted(trainer.get_mergeable_ranks(), key=lambda kv: kv[1])]
    return BPETokenizer(name, SPLIT_PATTERN, ranks, EOT)


def train_texts(
    parts: list[Path], config: TokenizeConfig, single_doc: set[str], templates: dict[str, str] | None = None
) -> Iterator[str]:
    """The texts the tokens stage puts in train (`templates` filled; a single-document corpus: its first 90%), a
    uniform sample of them (by content hash) holding about bpe_train_chars characters."""
    plan = split_plan(parts, config, single_doc)
    total = 0
    for k, (part, group) in enumerate(plan.groups):
        chars = pq.ParquetFile(part).read_row_group(group, columns=["chars"]).column("chars").to_numpy()
        total += int(chars[~plan.to_val(k)].sum())
    share = min(1.0, config.bpe_train_chars / max(total, 1))
    upper = plan.threshold + share * (1 - plan.threshold)  # train hashes are uniform in [threshold, 1)
    for k, (part, group) in enumerate(plan.groups):
        texts, _ = read_rendered(part, group, templates or {})
        picked = (~plan.to_val(k)) & ((plan.hashes[k] < upper) | ~plan.splittable[k])
        for i in np.flatnonzero(picked).tolist():
            text = texts[i]
            yield text if plan.splittable[k][i] else text[: int(len(text) * (1 - POSITIONAL_VAL_FRACTION))]


def bpe_dataset(config: PipelinesConfig, dataset: str, deduped: StageResult) -> StageResult:
    """The dataset's trained BPE: tokenizers/<dataset>-bpe<vocab_size>-<fp>/ (reused when data and settings match)."""
    tokenize = config.datasets[dataset].tokenize
    settings = {k: v for k, v in dataclasses.asdict(tokenize).items() if k in BPE_SETTINGS}
    settings["templates"] = templates = dataset_templates(config, dataset)
    fp = fingerprint("tokenizers", settings, [deduped.fingerprint])
    name = f"{dataset}-bpe{tokenize.vocab_size}"

    def build(tmp: Path):
        progress = Progress("bpe")
        parts = input_parts(config.root, deduped)
        chars = 0

        def counted(texts: Iterator[str]) -> Iterator[str]:
            nonlocal chars
            for text in texts:
                chars += len(text)
                yield text

        texts = counted(train_texts(parts, tokenize, single_document_corpora(deduped), templates))
        tokenizer = train_bpe(texts, tokenize.vocab_size, name=f"{name}-{fp[:8]}")
        write_text_atomic(tmp / TOKENIZER_FILE, json.dumps(tokenizer.spec(), ensure_ascii=False))
        (tmp / HF_TOKENIZER).parent.mkdir()
        hf_tokenizer(tokenizer).save(str(tmp / HF_TOKENIZER))
        progress.report(f"{tokenizer.n_vocab:,} tokens learned from {chars:,} characters in {progress.elapsed:.1f} s")
        digest = hashlib.sha256((tmp / TOKENIZER_FILE).read_bytes()).hexdigest()
        counts = {"vocab_size": tokenizer.n_vocab, "train_chars": chars}
        return counts, {"settings": settings, "inputs": [deduped.fingerprint], "extra": {"sha256": digest}}

    return reuse_or_build(config.root, "tokenizers", name, fp, build)


def trained_tokenizer(config: PipelinesConfig, result: StageResult) -> Path:
    """The tokenizer.json of a finished bpe stage, local (downloaded first when only a URL data root has it)."""
    return config.root.local(result.rel) / TOKENIZER_FILE


bpe_task = task(bpe_dataset, name="bpe", task_run_name="bpe-{dataset}")
