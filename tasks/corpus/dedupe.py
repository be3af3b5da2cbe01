"""Stage 4, dedupe: duplicates removed across a dataset's corpora (`datasets.<name>.dedupe`), from filtered/ into
deduped/: exact keys (written beside each document by the filter stage), then MinHash LSH for near copies.

    deduped = dedupe_dataset(config, "zh", filtered)       # StageResult of deduped/zh-<fp>/
    counts = dedupe_parts([("news", parts), ("webtext", parts)], DedupeConfig(), out_dir, workers=2)
    # out_dir/part-*.parquet (kept, with cluster_id) and out_dir/duplicates.parquet

    hasher = MinHasher(MinHashConfig(num_perm=128, bands=16, threshold=0.8))
    labels = near_duplicate_clusters(hasher.signatures(texts), hasher.config)
    # labels[i] is the smallest index in i's cluster: keep the rows where labels[i] == i

Signatures come from a compiled kernel (numba) that reads the Arrow text column's UTF-8 bytes directly: every
character n-gram is hashed once and run through the num_perm hash functions, so no Python string is made.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpt.config import ConfigError
from gpt.hashing import FNV_PRIME
from tasks.corpus.text.stats import arrow_buffers, code_buffer, decode, mix
from tasks.parallel import Progress, run_jobs
from tasks.stage import PARQUET, ROW_GROUP_ROWS, PrefectTask, StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig


@dataclass(frozen=True)
class MinHashConfig:
    num_perm: int = 128
    """Hash functions per signature."""
    bands: int = 16
    """LSH bands; num_perm / bands rows each. More bands find pairs of lower similarity."""
    threshold: float = 0.8
    """Estimated Jaccard similarity of n-gram sets at or above which two documents are duplicates."""
    ngram: int = 5
    """Characters per shingle."""
    seed: int = 1
    """Seeds the hash functions; fixed so that clusters are reproducible."""

    def __post_init__(self):
        for key in ("num_perm", "bands", "ngram"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.num_perm % self.bands:
            raise ConfigError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")


class MinHasher:
    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.a = rng.integers(1, 2**63, size=config.num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=config.num_perm, dtype=np.uint64)

    def signatures(self, texts: list[str] | pa.Array) -> np.ndarray:
        """(len(texts), num_perm) uint32 MinHash signatures."""
        offsets, data = arrow_buffers(texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts))
        out = np.full((len(offsets) - 1, self.config.num_perm), 0xFFFFFFFF, dtype=np.uint32)
        if len(out):
            _minhash(offsets, data, self.config.ngram, self.a, self.b, out)
        return out


@numba.njit(cache=True, nogil=True)
def _minhash(offsets, data, n, a, b, out):
    """Each of a document's character n-grams (a document shorter than n: itself, once) is hashed, then run
    through every hash function x -> (a * x + b) >> 32; a signature holds the minimum per function."""
    codes = code_buffer(offsets, n)
    for d in range(len(offsets) - 1):
        length = decode(data, offsets[d], offsets[d + 1], codes)
        span = min(length, n)
        codes[length : length + n] = 0
        signature = out[d]
        for start in range(max(length - n + 1, 1)):
            h = np.uint64(0)
            for k in range(n):
                h = h * FNV_PRIME + np.uint64(codes[start + k])  # zeros past the end
            h = mix(h ^ np.uint64(span))
            for p in range(len(a)):
                value = np.uint32((a[p] * h + b[p]) >> np.uint64(32))
                if value < signature[p]:
                    signature[p] = value


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def near_duplicate_clusters(signatures: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """Cluster label per row: the smallest row index among its near duplicates (itself when it has none).

    Rows that share a band bucket are compared with the bucket's first row and joined when the share of equal
    signature values reaches the threshold."""
    n = len(signatures)
    parent = np.arange(n)
    rows = config.num_perm // config.bands
    for band in range(config.bands):
        block = np.ascontiguousarray(signatures[:, band * rows : (band + 1) * rows]).astype(np.uint64)
        key = np.zeros(n, dtype=np.uint64)
        for column in block.T:
            key = mix(key ^ column)
        order = np.argsort(key, kind="stable")
        sorted_keys = key[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]) + 1  # positions continuing a bucket
        if not len(same):
            continue
        bucket_start = np.maximum.accumulate(
            np.where(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]], np.arange(n), 0)
        )
        for at in same.tolist():
            i, leader = int(order[at]), int(order[bucket_start[at]])
            if np.mean(signatures[i] == signatures[leader]) >= config.threshold:
                ri, rl = _find(parent, i), _find(parent, leader)
                if ri != rl:
                    parent[max(ri, rl)] = min(ri, rl)
    return np.array([_find(parent, i) for i in range(n)])


@dataclass
class DedupeConfig:
    """Deduplication across all corpora of a dataset."""

    exact: bool = True
    """Drop documents equal after folding width, case, punctuation and whitespace."""
    near: bool = True
    """Drop near duplicates found by MinHash LSH over character n-grams."""
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    """Signature size, bands, threshold and n-gram size of the near-duplicate search."""


def _signatures(part: Path, rows: np.ndarray, config: MinHashConfig) -> np.ndarray:
    return MinHasher(config).signatures(pq.read_table(part, columns=["text"]).column("text").take(pa.array(rows)))


def _write_kept(part: Path, kept: np.ndarray, cluster_ids: pa.Array, out: Path) -> None:
    table = pq.read_table(part).drop_columns(["exact_key"]).filter(pa.array(kept))
    table = table.append_column("cluster_id", cluster_ids)
    pq.write_table(table, out, row_group_size=ROW_GROUP_ROWS, **PARQUET)


def dedupe_parts(
    inputs: list[tuple[str, list[Path]]], config: DedupeConfig, out_dir: Path, workers: int = 1
) -> dict[str, Counter]:
    """Deduplicate the filtered parts of every corpus (in order) into out_dir; returns counts per corpus.

    Writes out_dir/part-NNNNN.parquet (kept documents with `cluster_id`, the doc_id of the document kept for their
    cluster) and out_dir/duplicates.parquet (doc_id, corpus, kind exact|near, duplicate_of)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [(corpus, part) for corpus, corpus_parts in inputs for part in corpus_parts]
    tables = [pq.read_table(part, columns=["doc_id", "exact_key"]) for _, part in parts]
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    ids = np.array([i for t in tables for i in t.column("doc_id").to_pylist()], dtype=object)
    n = len(ids)
    rep = np.arange(n)
    if config.exact and n:
        column = pa.concat_arrays([c for t in tables for c in t.column("exact_key").chunks])
        keys = np.frombuffer(column.buffers()[1], dtype="V16")[column.offset : column.offset + n]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        rep = first[inverse.ravel()]
    progress = Progress("dedupe")
    progress.report(f"{n:,} documents, {int((rep != np.arange(n)).sum()):,} exact duplicates")
    cluster = rep.copy()
    if config.near and n:
        survivors = np.flatnonzero(rep == np.arange(n))
        jobs = [
            (part, survivors[(survivors >= offsets[k]) & (survivors < offsets[k + 1])] - offsets[k], config.minhash)
            for k, (_, part) in enumerate(parts)
        ]
        signatures = np.vstack(
            [sig for _, sig in sorted(run_jobs(_signatures, jobs, workers, "threads"), key=lambda r: r[0])]
        )
        leaders = survivors[near_duplicate_clusters(signatures, config.minhash)]
        cluster_of = np.arange(n)
        cluster_of[survivors] = leaders
        cluster = cluster_of[rep]
    kept = cluster == np.arange(n)
    progress.report(f"{int((~kept).sum()):,} duplicates in all, {int(kept.sum()):,} documents kept")
    counts: dict[str, Counter] = {}
    corpus_of = np.repeat(np.array([c for c, _ in parts], dtype=object), sizes)
    jobs = []
    for k, (corpus, part) in enumerate(parts):
        lo, hi = offsets[k], offsets[k + 1]
        cluster_ids = pa.array(ids[cluster[lo:hi][kept[lo:hi]]].tolist(), pa.string())
        jobs.append((part, kept[lo:hi], cluster_ids, out_dir / f"part-{k:05d}.parquet"))
        c = counts.setdefault(corpus, Counter())
        c["rows_in"] += int(hi - lo)
        c["rows"] += int(kept[lo:hi].sum())
        c["dropped_exact_duplicate"] += int((rep[lo:hi] != np.arange(lo, hi)).sum())
        c["dropped_near_duplicate"] += int(((rep[lo:hi] == np.arange(lo, hi)) & ~kept[lo:hi]).sum())
    for _ in run_jobs(_write_kept, jobs, workers, "threads"):
        pass
    dropped = np.flatnonzero(~kept)
    duplicates = pa.table(
        {
            "doc_id": pa.array(ids[dropped].tolist(), pa.string()),
            "corpus": pa.array(corpus_of[dropped].tolist(), pa.string()),
            "kind": pa.array(np.where(rep[dropped] != dropped, "exact", "near").tolist(), pa.string()),
            "duplicate_of": pa.array(ids[cluster[dropped]].tolist(), pa.string()),
        }
    )
    pq.write_table(duplicates, out_dir / "duplicates.parquet", compression="zstd")
    return counts


def dedupe_dataset(config: PipelinesConfig, dataset: str, filtered: list[StageResult]) -> StageResult:
    """Exact and near-duplicate removal across the dataset's corpora: deduped/<dataset>-<fp>/."""
    dedupe = config.datasets[dataset].dedupe
    settings = {"dedupe": dataclasses.asdict(dedupe), "corpora": [f.name for f in filtered]}
    inputs = [f.fingerprint for f in filtered]
    fp = fingerprint("deduped", settings, inputs)

    def build(tmp: Path):
        parts = [(f.name, input_parts(config.root, f)) for f in filtered]
        per_corpus = dedupe_parts(parts, dedupe, tmp, config.worker_count)
        totals = {k: sum(c.get(k, 0) for c in per_corpus.values()) for k in ("rows_in", "rows")}
        extra = {"per_corpus": {name: dict(c) for name, c in per_corpus.items()}}
        return totals, {"settings": settings, "inputs": inputs, "extra": extra}

    return reuse_or_build(config.root, "deduped", dataset, fp, build)


dedupe_task = PrefectTask(dedupe_dataset, name="dedupe", task_run_name="dedupe-{dataset}")
