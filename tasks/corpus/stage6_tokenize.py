"""Stage 6, tokenize: a deduplicated dataset's documents into train and val token shards of the engine
(gpt/shards.py), from deduped/ into tokens/ (`datasets.<name>.tokenize`).

    tokens = tokenize_dataset(config, "zh", deduped)      # StageResult of tokens/zh-gpt2-<fp>/
    config = TokenizeConfig(tokenizer="gpt2", val_fraction=0.005)
    stats = tokenize_parts(parts, config, out_dir, workers=2, created_by="gptflow build-corpus --dataset zh")
    # out_dir: train-00000.bin ..., val-00000.bin, tokenizer.json, stats.json, manifest.json (last)

Every document ends with the end-of-text token and goes to the side the split gives it (text/split.py: by a salted hash
of its content key; a single-document corpus by position). Beside the shards, train.npz lists each train document
(first token, tokens, content key) and eval.npz each val document (also characters, UTF-8 bytes, corpus, text
hash), so that later runs can tell which documents are new.

Work: one job per Parquet row group, in worker processes (tiktoken is fastest with one process per core). A job
writes its tokens to a piece file; the pieces are then joined in order into shards of shard_tokens tokens. Memory
holds a row group and a piece at a time, whatever the corpus size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task

from gpt.shards import TOKENIZER_FILE, ShardWriter, TokenDataset, token_dtype, write_manifest
from gpt.tokenizer import EOT, UNK, CharTokenizer, Tokenizer, load_tokenizer, tokenizer_from_spec
from tasks.corpus.settings import TokenizeConfig
from tasks.corpus.text.split import (
    HF_TOKENIZER,
    POSITIONAL_VAL_FRACTION,
    dataset_templates,
    read_rendered,
    single_document_corpora,
    split_plan,
)
from tasks.parallel import Progress, pool_for, run_jobs
from tasks.stage import StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

EVAL_INDEX = "eval.npz"
TRAIN_INDEX = "train.npz"
EXAMPLE_CHARS = 300
"""Characters of each corpus' example document in the statistics (the first document, as the model reads it)."""
SPLITS = ("train", "val")
KEYS = [f"{split}_{key}" for split in SPLITS for key in ("docs", "chars", "tokens")]


def char_vocabulary(parts: list[Path], min_count: int, workers: int, templates: dict[str, str]) -> CharTokenizer:
    """The characters of the dataset's rendered texts seen at least min_count times, plus end-of-text and unknown
    tokens."""
    from tasks.corpus.text.stats import count_codepoints  # compiled kernels: only this process needs them

    def count(part: Path) -> np.ndarray:
        counts = np.zeros(sys.maxunicode + 1, dtype=np.int64)
        for group in range(pq.ParquetFile(part).num_row_groups):
            texts, _ = read_rendered(part, group, templates)
            count_codepoints(pa.array(texts, pa.string()), counts)
        return counts

    total = sum(counts for _, counts in run_jobs(count, [(p,) for p in parts], workers, "threads"))
    chars = [chr(cp) for cp in np.flatnonzero(total >= min_count) if not 0xD800 <= cp <= 0xDFFF]
    return CharTokenizer(chars, eot=EOT, unk=UNK)


@cache
def _tokenizer(spec_file: Path) -> Tokenizer:
    """The tokenizer of a spec file, built once per process."""
    return load_tokenizer(spec_file)


@dataclass(frozen=True)
class Job:
    part: Path
    row_group: int
    index: int
    tokenizer_file: Path
    """The tokenizer's spec, written once for every job to read (an open base's is megabytes)."""
    to_val: np.ndarray
    """Per row of the row group: whether its document goes to val (by its content key)."""
    keys: np.ndarray
    """Per row of the row group: its content key."""
    templates: dict[str, str]
    """Per corpus: the template of the text the model reads."""
    positional: frozenset[str]
    pieces: Path


def _histogram_bucket(tokens: int) -> int:
    return max(tokens, 1).bit_length() - 1  # bucket b holds lengths in [2^b, 2^(b+1))


def tokenize_job(job: Job) -> dict:
    """Tokenize one row group into piece files, one per split; returns counts per corpus and split and length
    histograms."""
    tokenizer = _tokenizer(job.tokenizer_file)
    eot = np.array([tokenizer.eot_token])
    dtype = token_dtype(tokenizer.n_vocab)
    texts, corpora = read_rendered(job.part, job.row_group, job.templates)
    out: dict[str, list] = {split: [] for split in SPLITS}
    counts: Counter = Counter()
    histogram: Counter = Counter()
    docs: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    examples: dict[str, str] = {}
    documents: list[tuple[str, str, str, int]] = []  # (split, corpus, text, content key), in row order
    for text, corpus, val, key in zip(texts, corpora, job.to_val, job.keys.tolist(), strict=True):
        if corpus in job.positional:
            cut = int(len(text) * (1 - POSITIONAL_VAL_FRACTION))
            documents += [("train", corpus, text[:cut], key), ("val", corpus, text[cut:], key)]
        else:
            documents.append(("val" if val else "train", corpus, text, key))
        examples.setdefault(corpus, text[:EXAMPLE_CHARS])
    encoded = tokenizer.encode_batch([text for _, _, text, _ in documents])
    for (split, corpus, text, key), ids in zip(documents, encoded, strict=True):
        out[split] += (ids, eot)
        if split == "val":
            data = text.encode("utf-8")
            digest = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1  # fits int64
            docs[split].append((ids.size, key, len(text), len(data), corpus, digest))
        else:
            docs[split].append((ids.size, key, corpus))
        counts[(corpus, split, "docs")] += 1
        counts[(corpus, split, "chars")] += len(text)
        counts[(corpus, split, "tokens")] += ids.size + 1
        histogram[(corpus, _histogram_bucket(ids.size + 1))] += 1
    for split, arrays in out.items():
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        tokens.astype(dtype).tofile(job.pieces / f"{job.index:06d}-{split}.tokens")
    return {"counts": counts, "histogram": histogram, "docs": docs, "examples": examples}


def _join_pieces(pieces: Path, jobs: int, split: str, out_dir: Path, dtype: np.dtype, shard_tokens: int) -> list[dict]:
    """The pieces of a split, in job order, cut into shards of shard_tokens tokens."""
    entries: list[dict] = []
    shard: ShardWriter | None = None
    for index in range(jobs):
        tokens = np.fromfile(pieces / f"{index:06d}-{split}.tokens", dtype=dtype)
        at = 0
        while at < tokens.size:
            if shard is None:
                shard = ShardWriter(out_dir / f"{split}-{len(entries):05d}.bin", dtype)
            take = min(tokens.size - at, shard_tokens - shard.num_tokens)
            shard.add(tokens[at : at + take])
            at += take
            if shard.num_tokens == shard_tokens:
                entries.append(shard.close())
                shard = None
    if shard is not None:
        entries.append(shard.close())
    return entries


def dataset_tokenizer(
    parts: list[Path], config: TokenizeConfig, workers: int, given: Path | None, templates: dict[str, str]
) -> Tokenizer:
    """The tokenizer the dataset is encoded with: `given` (a tokenizer.json: the bpe stage's, or a reused one), the
    characters of the dataset's rendered texts, or a tiktoken encoding."""
    if given is not None:
        return load_tokenizer(given)
    if config.tokenizer in ("bpe", "hf") or config.reuse_tokenizer:
        raise ValueError("this tokenizer needs its tokenizer.json (the bpe stage's result, or the one named)")
    if config.tokenizer == "char":
        return char_vocabulary(parts, config.char_min_count, workers, templates)
    return tokenizer_from_spec({"type": "tiktoken", "name": config.tokenizer})


def tokenize_parts(
    parts: list[Path], config: TokenizeConfig, out_dir: Path, workers: int, created_by: str, single_doc: set[str],
    given: Path | None = None, templates: dict[str, str] | None = None,
) -> dict:  # fmt: skip
    """Tokenize the deduplicated dataset's parts into out_dir; returns the statistics (also written to stats.json).

    `single_doc` names the corpora of one document, split by position; `given` is the tokenizer.json to encode with
    (the bpe stage's, or a reused one); `templates` the text each corpus' documents become (default `{text}`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = dataset_tokenizer(parts, config, workers, given, templates or {})
    dtype = token_dtype(tokenizer.n_vocab)
    plan = split_plan(parts, config, single_doc)
    threshold = plan.threshold
    pieces = out_dir / "pieces"
    pieces.mkdir()
    spec = pieces / TOKENIZER_FILE
    spec.write_text(json.dumps(tokenizer.spec(), ensure_ascii=False), encoding="utf-8")
    positional = frozenset(single_doc)
    jobs = [
        (Job(part, group, index, spec, plan.to_val(index), plan.keys[index], templates or {}, positional, pieces),)
        for index, (part, group) in enumerate(plan.groups)
    ]
    pool = pool_for(sum(p.stat().st_size for p in parts))
    counts: Counter = Counter()
    histogram: Counter = Counter()
    docs: dict[int, dict] = {}
    examples: dict[str, tuple[int, str]] = {}
    progress = Progress("tokenize")
    for done, (index, result) in enumerate(run_jobs(tokenize_job, jobs, workers, pool), 1):
        counts.update(result["counts"])
        histogram.update(result["histogram"])
        docs[index] = result["docs"]
        for corpus, text in result["examples"].items():  # the first row group's, whatever order the jobs end in
            if corpus not in examples or index < examples[corpus][0]:
                examples[corpus] = (index, text)
        tokens = sum(v for (_, _, k), v in counts.items() if k == "tokens")
        progress.report(f"{done}/{len(jobs)} row groups, {progress.rate(tokens):,.0f} tokens/s")
    splits = {split: _join_pieces(pieces, len(jobs), split, out_dir, dtype, config.shard_tokens) for split in SPLITS}
    shutil.rmtree(pieces)
    in_order = {split: [doc for index in range(len(jobs)) for doc in docs[index][split]] for split in SPLITS}
    train_index = write_train_index(out_dir, in_order["train"])
    eval_set = write_eval_index(out_dir, in_order["val"])
    stats = corpus_statistics(counts, histogram)
    stats["examples"] = {corpus: text for corpus, (_, text) in sorted(examples.items())}
    stats["val_threshold"] = threshold
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    per_corpus_tokens = {c: {s: v[f"{s}_tokens"] for s in SPLITS} for c, v in stats["corpora"].items()}
    corpora = {  # (tokens, corpus) of each document of a split, in order
        "train": corpus_ranges([(d[0], d[2]) for d in in_order["train"]]),
        "val": corpus_ranges([(d[0], d[4]) for d in in_order["val"]]),
    }
    write_manifest(
        out_dir, tokenizer, splits, created_by=created_by, tokens_per_corpus=per_corpus_tokens,
        tokens_per_char=stats["total"]["tokens_per_char"], eval=eval_set, train_index=train_index, corpora=corpora,
    )  # fmt: skip
    return stats


def corpus_ranges(docs: list[tuple[int, str]]) -> list[list]:
    """[corpus, first token, end] of each run of one corpus' documents in a split, from each document's (tokens
    before its end-of-text, corpus), so that training can draw from each corpus at its own share (gpt/mixture.py)."""
    ranges: list[list] = []
    at = 0
    for size, corpus in docs:
        tokens = size + 1
        if ranges and ranges[-1][0] == corpus:
            ranges[-1][2] += tokens
        else:
            ranges.append([corpus, at, at + tokens])
        at += tokens
    return ranges


def _starts(tokens: np.ndarray) -> np.ndarray:
    """Each document's first token in its split: documents follow one another, each with its end-of-text."""
    return np.concatenate([[0], np.cumsum(tokens + 1)[:-1]]).astype(np.int64) if len(tokens) else tokens


def write_train_index(out_dir: Path, docs: list[tuple[int, int, str]]) -> dict:
    """train.npz: each train document's first token and tokens (before its end-of-text) in the train split, and its
    content key; returns the manifest's `train_index` entry."""
    tokens = np.array([d[0] for d in docs], dtype=np.int64)
    index = {"start": _starts(tokens), "tokens": tokens, "key": np.array([d[1] for d in docs], dtype=np.int64)}
    with open(out_dir / TRAIN_INDEX, "wb") as f:
        np.savez(f, **index)
    return {"file": TRAIN_INDEX, "docs": len(docs)}


def write_eval_index(out_dir: Path, docs: list[tuple[int, int, int, int, str, int]]) -> dict:
    """eval.npz: each val document's place in the val split (first token, tokens before its end-of-text), its
    content key, characters and UTF-8 bytes, its corpus and a hash of its text, in val order; returns the
    manifest's `eval` entry. Any two datasets built from the same deduplicated data list the same documents in the
    same order, whatever their tokenizer, so bits per character over them compare models with different tokenizers
    on the same text."""
    tokens = np.array([d[0] for d in docs], dtype=np.int64)
    corpora = sorted({d[4] for d in docs})
    index = {
        "start": _starts(tokens),
        "tokens": tokens,
        "key": np.array([d[1] for d in docs], dtype=np.int64),
        "chars": np.array([d[2] for d in docs], dtype=np.int64),
        "bytes": np.array([d[3] for d in docs], dtype=np.int64),
        "corpus": np.array([corpora.index(d[4]) for d in docs], dtype=np.int32),
        "text_hash": np.array([d[5] for d in docs], dtype=np.int64),
    }
    with open(out_dir / EVAL_INDEX, "wb") as f:
        np.savez(f, **index)
    return {"file": EVAL_INDEX, "docs": len(docs), "chars": int(index["chars"].sum()), "corpora": corpora}


def corpus_statistics(counts: Counter, histogram: Counter) -> dict:
    """Documents, characters and tokens per corpus and split, tokens per character, each corpus' share of the
    tokens, and the histogram of document lengths in tokens (powers of two)."""
    corpora: dict[str, dict] = {}
    for (corpus, split, key), value in sorted(counts.items()):
        row = corpora.setdefault(corpus, dict.fromkeys(KEYS, 0))
        row[f"{split}_{key}"] = value
    total_tokens = sum(r["train_tokens"] + r["val_tokens"] for r in corpora.values())
    for row in corpora.values():
        tokens, chars = row["train_tokens"] + row["val_tokens"], row["train_chars"] + row["val_chars"]
        row["tokens_per_char"] = round(tokens / chars, 4) if chars else 0.0
        row["share"] = round(tokens / total_tokens, 4) if total_tokens else 0.0
    lengths = {
        corpus: {f"{2**b}-{2 ** (b + 1) - 1}": n for (c, b), n in sorted(histogram.items()) if c == corpus}
        for corpus in corpora
    }
    total = {key: sum(r[key] for r in corpora.values()) for key in KEYS}
    chars = total["train_chars"] + total["val_chars"]
    total["tokens_per_char"] = round(total_tokens / chars, 4) if chars else 0.0
    return {"corpora": corpora, "total": total, "doc_tokens_histogram": lengths}


def tokenize_dataset(
    config: PipelinesConfig, dataset: str, deduped: StageResult, tokenizer: Path | None = None
) -> StageResult:
    """The deduplicated dataset in train and val shards (a corpus of one document is split by position):
    tokens/<dataset>-<tokenizer>-<fp>/, whose manifest.json is written last. `tokenizer` is the tokenizer.json to
    encode with: the bpe stage's (stage5_bpe.trained_tokenizer) or a reused one (registry.tokenizer_file)."""
    tokenize = config.datasets[dataset].tokenize
    settings, inputs = tokens_key(tokenize, deduped, tokenizer)
    settings["templates"] = templates = dataset_templates(config, dataset)
    fp = fingerprint("tokens", settings, inputs)
    single_doc = single_document_corpora(deduped)
    rebuild = config.build_command(dataset)

    def build(tmp: Path):
        parts = input_parts(config.root, deduped)
        stats = tokenize_parts(parts, tokenize, tmp, config.worker_count, rebuild, single_doc, tokenizer, templates)
        if tokenizer is not None and (hf := tokenizer.parent / HF_TOKENIZER).is_file():  # a bpe stage's, or a dataset's
            (tmp / HF_TOKENIZER).parent.mkdir()
            shutil.copy(hf, tmp / HF_TOKENIZER)
        return stats["total"], {"settings": settings, "inputs": inputs, "extra": {"stats": stats}}

    return reuse_or_build(config.root, "tokens", f"{dataset}-{tokenize.tokenizer}", fp, build, verify_tokens)


def tokens_key(tokenize: TokenizeConfig, source: StageResult, tokenizer: Path | None) -> tuple[dict, list[str]]:
    """The settings and inputs a tokens folder is found by: the tokenize settings but where a given tokenizer comes
    from, and its content instead (wherever it is read from, a dataset reusing it is the same)."""
    by_content = ("reuse_tokenizer", "hf_tokenizer")
    settings = {k: v for k, v in dataclasses.asdict(tokenize).items() if k not in by_content}
    inputs = [source.fingerprint]
    if tokenizer is not None:
        inputs.append(hashlib.sha256(json.dumps(load_tokenizer(tokenizer).spec()).encode()).hexdigest())
    return settings, inputs


def verify_tokens(folder: Path) -> None:
    """Every shard of a finished tokens folder read once: a damaged one (truncated, a flipped byte) is rebuilt, not
    reused."""
    TokenDataset.open(folder, verify=True)


tokenize_task = task(tokenize_dataset, name="tokenize", task_run_name="tokenize-{dataset}")
