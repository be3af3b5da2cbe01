"""Stage 4, dedupe: duplicates removed across a dataset's corpora (`datasets.<name>.dedupe`), from filtered/ into
deduped/: exact keys (written beside each document by the filter stage), then the near-duplicate search.

    deduped = dedupe_dataset(config, "zh", filtered)       # StageResult of deduped/zh-<fp>/
    result = dedupe_parts([("news", parts), ("webtext", parts)], DedupeConfig(), out_dir, workers=2)
    result.per_corpus["news"]       # rows_in, rows, dropped_exact_duplicate, _near_duplicate, _contained_duplicate
    result.pairs["webtext"]["news"] # webtext documents dropped as duplicates of news documents
    # out_dir/part-*.parquet (kept, with exact_key) and out_dir/duplicates/part-*.parquet (dropped, with their text)

Documents are ranked by corpus (the dataset's order), then by row; of equal or similar documents the first is kept.
Exact duplicates share the 128-bit key of their folded text (text/stats.py: width, case, traditional and variant
characters, punctuation and spaces folded away). Near duplicates are searched among the documents left
(text/near_duplicates.py: character bigram shingles, MinHash LSH and anchor candidates, each pair verified by its
Jaccard similarity and containment): a document similar to an earlier one, or mostly inside a longer one, is
dropped for it. Every dropped document is listed with its text, what it duplicates and how similar the two are (for
one inside another: the share of it the other holds).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task

from tasks.corpus.settings import DedupeConfig
from tasks.corpus.text.near_duplicates import find_near_duplicates
from tasks.parallel import DuckDBLimits, Progress, run_jobs
from tasks.stage import PARQUET, ROW_GROUP_ROWS, StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

DUPLICATE_COLUMNS = ["doc_id", "corpus", "source_file", "source_line", "text"]


@dataclass
class DedupeResult:
    per_corpus: dict[str, Counter]
    """Per corpus: rows_in, rows (kept), dropped_exact_duplicate, dropped_near_duplicate,
    dropped_contained_duplicate."""
    pairs: dict[str, Counter]
    """Dropped corpus -> corpus of the document kept in its place -> documents."""


@dataclass(frozen=True)
class _Dropped:
    """What the dropped rows of one part duplicate."""

    rows: np.ndarray
    kind: list[str]
    duplicate_of: pa.Array
    duplicate_corpus: list[str]
    similarity: np.ndarray


def _write_part(part: Path, dropped: _Dropped, out: Path, lost: Path) -> None:
    table = pq.read_table(part)
    kept = np.ones(table.num_rows, dtype=np.bool_)
    kept[dropped.rows] = False
    kept_rows = table.filter(pa.array(kept))
    pq.write_table(kept_rows, out, row_group_size=ROW_GROUP_ROWS, **PARQUET)
    rows = table.select(DUPLICATE_COLUMNS).take(pa.array(dropped.rows, pa.int64()))
    extra = {
        "kind": pa.array(dropped.kind, pa.string()),
        "duplicate_of": dropped.duplicate_of,
        "duplicate_corpus": pa.array(dropped.duplicate_corpus, pa.string()),
        "similarity": pa.array(dropped.similarity, pa.float32()),
    }
    for name, column in extra.items():
        rows = rows.append_column(name, column)
    pq.write_table(rows, lost, compression="zstd")


def _doc_ids(parts: list[Path], offsets: np.ndarray, indices: np.ndarray) -> pa.Array:
    """doc_id of each global index in `indices` (sorted ascending), reading only the parts that hold one."""
    chunks = []
    for k, part in enumerate(parts):
        lo, hi = np.searchsorted(indices, [offsets[k], offsets[k + 1]])
        if hi > lo:
            ids = pq.read_table(part, columns=["doc_id"]).column("doc_id")
            chunks.append(ids.take(pa.array(indices[lo:hi] - offsets[k])))
    return pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())


def _exact_duplicates(parts: list[Path], offsets: np.ndarray, limits: DuckDBLimits) -> tuple[np.ndarray, np.ndarray]:
    """(global indices of the documents whose exact key an earlier document has, ascending; that first index).

    DuckDB groups the keys (spilling past its memory limit), so no per-document array is held here."""
    con = limits.connect()
    files = pa.table({"filename": [p.as_posix() for p in parts], "first": offsets[:-1]})
    con.register("files", files)
    numbered = """
        SELECT r.exact_key, f.first + r.file_row_number AS g
        FROM read_parquet($files, filename = true, file_row_number = true) r
        JOIN files f ON r.filename = f.filename
    """
    found = con.sql(
        f"""
        WITH numbered AS ({numbered}),
        firsts AS (SELECT exact_key, min(g) AS first FROM numbered GROUP BY exact_key HAVING count(*) > 1)
        SELECT n.g, f.first FROM numbered n JOIN firsts f ON n.exact_key = f.exact_key WHERE n.g <> f.first
        ORDER BY n.g
    """,
        params={"files": [p.as_posix() for p in parts]},
    ).to_arrow_table()
    con.close()
    return found.column("g").to_numpy(), found.column("first").to_numpy()


def dedupe_parts(
    inputs: list[tuple[str, list[Path]]], config: DedupeConfig, out_dir: Path, workers: int = 1,
    limits: DuckDBLimits | None = None,
) -> DedupeResult:  # fmt: skip
    """Deduplicate the filtered parts of every corpus (in order) into out_dir.

    Writes out_dir/part-NNNNN.parquet (kept documents, with `exact_key`, the content key that splits them) and
    out_dir/duplicates/part-NNNNN.parquet (each dropped document: doc_id, corpus, source_file, source_line, text,
    kind exact|near|contained, duplicate_of, duplicate_corpus, similarity). Memory grows with the duplicates found,
    not with the documents: keys and sketches are grouped by DuckDB."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "duplicates").mkdir(exist_ok=True)
    limits = dataclasses.replace(limits or DuckDBLimits(), temp_directory=str(out_dir / "_duckdb"), threads=workers)
    corpus_of_part = [corpus for corpus, corpus_parts in inputs for _ in corpus_parts]
    parts = [part for _, corpus_parts in inputs for part in corpus_parts]
    sizes = np.array([pq.ParquetFile(part).metadata.num_rows for part in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(offsets[-1])
    none = np.zeros(0, np.int64)
    copies, originals = _exact_duplicates(parts, offsets, limits) if config.exact and total else (none, none)
    progress = Progress("dedupe")
    progress.report(f"{total:,} documents, {len(copies):,} exact duplicates")
    near_docs, near_leaders, near_similarity, contained = none, none, np.zeros(0, np.float32), np.zeros(0, np.bool_)
    if config.near and total:
        jobs = []
        for k, part in enumerate(parts):
            lo, hi = np.searchsorted(copies, [offsets[k], offsets[k + 1]])
            rows = np.setdiff1d(np.arange(sizes[k]), copies[lo:hi] - offsets[k], assume_unique=True)
            jobs.append((part, rows, int(offsets[k])))
        near = find_near_duplicates(jobs, total, config.near_search, out_dir / "_near", limits, workers)
        near_docs, near_leaders, near_similarity, contained = near.docs, near.leaders, near.similarity, near.contained
    # an exact copy stands with its original: beside it when that is kept, else beside the original's own leader
    at = np.searchsorted(near_docs, originals)
    moved = at < len(near_docs)
    moved[moved] = near_docs[at[moved]] == originals[moved]
    copy_leader, copy_similarity = originals.copy(), np.ones(len(originals), np.float32)
    copy_leader[moved], copy_similarity[moved] = near_leaders[at[moved]], near_similarity[at[moved]]
    dropped = np.concatenate([copies, near_docs])
    leader = np.concatenate([copy_leader, near_leaders])
    similarity = np.concatenate([copy_similarity, near_similarity])
    kind = np.concatenate([np.full(len(copies), "exact"), np.where(contained, "contained", "near")])
    order = np.argsort(dropped, kind="stable")
    dropped, leader, similarity, kind = dropped[order], leader[order], similarity[order].astype(np.float32), kind[order]
    progress.report(f"{len(dropped):,} duplicates in all, {total - len(dropped):,} documents kept")
    leaders = np.unique(leader)
    leader_ids = _doc_ids(parts, offsets, leaders)
    leader_part = np.searchsorted(offsets, leader, side="right") - 1
    per_corpus: dict[str, Counter] = {}
    pairs: dict[str, Counter] = {}
    jobs = []
    for k, part in enumerate(parts):
        lo, hi = np.searchsorted(dropped, [offsets[k], offsets[k + 1]])
        mine = slice(lo, hi)
        info = _Dropped(
            dropped[mine] - offsets[k],
            kind[mine].tolist(),
            leader_ids.take(pa.array(np.searchsorted(leaders, leader[mine]))),
            [corpus_of_part[p] for p in leader_part[mine]],
            similarity[mine],
        )
        jobs.append((part, info, out_dir / f"part-{k:05d}.parquet", out_dir / "duplicates" / f"part-{k:05d}.parquet"))
        c = per_corpus.setdefault(corpus_of_part[k], Counter())
        c["rows_in"] += int(sizes[k])
        c["rows"] += int(sizes[k] - (hi - lo))
        c["dropped_exact_duplicate"] += int((kind[mine] == "exact").sum())
        c["dropped_near_duplicate"] += int((kind[mine] == "near").sum())
        c["dropped_contained_duplicate"] += int((kind[mine] == "contained").sum())
        pairs.setdefault(corpus_of_part[k], Counter()).update(info.duplicate_corpus)
    for _ in run_jobs(_write_part, jobs, workers, "threads"):
        pass
    for spill in ("_near", "_duckdb"):
        shutil.rmtree(out_dir / spill, ignore_errors=True)
    return DedupeResult(per_corpus, {corpus: c for corpus, c in pairs.items() if c})


def dedupe_dataset(config: PipelinesConfig, dataset: str, filtered: list[StageResult]) -> StageResult:
    """Exact and near-duplicate removal across the dataset's corpora: deduped/<dataset>-<fp>/."""
    dedupe = config.datasets[dataset].dedupe
    settings = {"dedupe": dataclasses.asdict(dedupe), "corpora": [f.name for f in filtered]}
    inputs = [f.fingerprint for f in filtered]
    fp = fingerprint("deduped", settings, inputs)

    def build(tmp: Path):
        parts = [(f.name, input_parts(config.root, f)) for f in filtered]
        result = dedupe_parts(parts, dedupe, tmp, config.worker_count, config.duckdb_limits)
        totals = {k: sum(c.get(k, 0) for c in result.per_corpus.values()) for k in ("rows_in", "rows")}
        extra = {
            "per_corpus": {name: dict(c) for name, c in result.per_corpus.items()},
            "duplicate_pairs": {name: dict(c) for name, c in result.pairs.items()},
        }
        return totals, {"settings": settings, "inputs": inputs, "extra": extra}

    return reuse_or_build(config.root, "deduped", dataset, fp, build)


dedupe_task = task(dedupe_dataset, name="dedupe", task_run_name="dedupe-{dataset}")
