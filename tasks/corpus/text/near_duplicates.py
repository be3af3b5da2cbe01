"""The dedupe stage's near-duplicate search, out of core: sketches spilled to Parquet, candidate pairs found by DuckDB,
every candidate verified by its real similarity, and the earliest document of each group of similar ones kept.

    config = NearConfig(threshold=0.7, ngram=2)
    found = find_near_duplicates(parts, total, config, spill_dir, limits, workers=2)
    # parts: [(Path of a filtered part, rows of it to search, global index of its first row), ...]
    found.docs           # int64, ascending: the global index of every near duplicate
    found.leaders        # int64: the kept document each one duplicates
    found.similarity     # float32: the measured Jaccard similarity to it

1. Sketch (worker threads over the parts): each document's LSH band keys and bottom-k sketch (text/sketch.py), written
   to spill_dir/sketch-NNNNN.parquet with the document's global index; nothing per document stays in memory.
2. Candidates (DuckDB, which spills to disk past its memory limit): per band, the documents sharing a band key; each
   is paired with the earliest `bucket_peers` documents of its bucket (a bucket of thousands of near-identical
   pages makes thousands of pairs, not millions).
3. Verify: the Jaccard similarity of each distinct candidate pair, from the two sketches (exact for documents of up
   to `sketch_size` distinct shingles). Pairs below `threshold` are dropped here, so LSH only ever proposes.
4. Keep the earliest: documents in index order (corpus order, then row order); a document is a duplicate when it is
   similar to an earlier document that is kept, and it names the most similar one. Similarity is never chained: a
   document similar only to a dropped one is kept, so every dropped document is within `threshold` of the one that
   stands for it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.corpus.settings import NearConfig
from tasks.corpus.text.sketch import Sketcher, jaccard, unit_table
from tasks.parallel import DuckDBLimits, Progress, run_jobs

VERIFY_BATCH = 50_000


@dataclass
class NearDuplicates:
    docs: np.ndarray
    """int64, ascending: global indices of the near duplicates (every other document searched is kept)."""
    leaders: np.ndarray
    """int64: for each of docs, the kept document it is most similar to."""
    similarity: np.ndarray
    """float32: for each of docs, its Jaccard similarity to its leader."""
    candidates: int
    """Distinct candidate pairs LSH proposed."""
    pairs: np.ndarray
    """(verified pairs, 2) int64: the candidate pairs (earlier, later) at or above the threshold."""


def _sketch_part(index: int, part: Path, rows: np.ndarray, first: int, config: NearConfig, spill: Path) -> int:
    texts = pq.read_table(part, columns=["text"]).column("text")
    texts = texts if len(rows) == len(texts) else texts.take(pa.array(rows))
    found = Sketcher(config.ngram, config.num_perm, config.bands, config.sketch_size, config.seed).sketch(texts)
    searched = found.shingles > 0
    columns = {
        "doc": pa.array(first + rows[searched], pa.int64()),
        "shingles": pa.array(found.shingles[searched], pa.int32()),
        "sketch": found.sketch.filter(pa.array(searched)),
        **{f"b{band}": pa.array(found.band_keys[searched, band], pa.uint64()) for band in range(config.bands)},
    }
    pq.write_table(pa.table(columns), spill / f"sketch-{index:05d}.parquet", compression="none")  # random bits
    return int(searched.sum())


def _candidate_sql(band: int, peers: int) -> str:
    key = f"b{band}"
    return f"""
    INSERT INTO pairs
    WITH shared AS (SELECT {key} AS key FROM sketches GROUP BY {key} HAVING count(*) > 1),
    members AS (
        SELECT doc, {key} AS key, row_number() OVER (PARTITION BY {key} ORDER BY doc) AS pos
        FROM sketches WHERE {key} IN (SELECT key FROM shared)
    )
    SELECT a.doc AS i, b.doc AS j FROM members a JOIN members b ON a.key = b.key AND a.pos < b.pos AND a.pos <= {peers}
    """


@numba.njit(cache=True, nogil=True)
def _verify(offsets_a, values_a, sizes_a, offsets_b, values_b, sizes_b, sketch_size, out):
    for p in range(len(out)):
        a = values_a[offsets_a[p] : offsets_a[p + 1]]
        b = values_b[offsets_b[p] : offsets_b[p + 1]]
        out[p] = jaccard(a, sizes_a[p], b, sizes_b[p], sketch_size)


def _list_buffers(array: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    offsets = array.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], array.values.to_numpy()[offsets[0] : offsets[-1]]


@numba.njit(cache=True)
def _keep_earliest(i, j, similarity, dropped, docs, leaders, best):
    """Edges (i < j) sorted by j: j is a duplicate of its most similar earlier document that is kept. Fills docs,
    leaders and best with one row per duplicate and returns how many; `dropped` (one flag per document) is kept
    up to date, since whether i is kept is settled before any edge into j is read."""
    found = -1
    for e in range(len(i)):
        a, b = i[e], j[e]
        if dropped[a]:
            continue
        if found < 0 or docs[found] != b:
            found += 1
            docs[found], leaders[found], best[found] = b, a, similarity[e]
            dropped[b] = True
        elif similarity[e] > best[found]:
            leaders[found], best[found] = a, similarity[e]
    return found + 1


def find_near_duplicates(
    parts: list[tuple[Path, np.ndarray, int]], total: int, config: NearConfig, spill: Path, limits: DuckDBLimits,
    workers: int = 1,
) -> NearDuplicates:  # fmt: skip
    """Search the given rows of the parts (global indices first + row) for near duplicates; see the module doc."""
    progress = Progress("near duplicates")
    spill.mkdir(parents=True, exist_ok=True)
    limits = dataclasses.replace(limits, temp_directory=limits.temp_directory or str(spill / "duckdb"))
    jobs = [(k, part, rows, first, config, spill) for k, (part, rows, first) in enumerate(parts) if len(rows)]
    unit_table()  # built once here, not by every worker thread at the same time
    searched = sum(n for _, n in run_jobs(_sketch_part, jobs, workers, "threads"))
    progress.report(f"sketched {searched:,} documents in {progress.elapsed:.1f} s")
    none = np.zeros(0, np.int64)
    if not jobs:
        return NearDuplicates(none, none, np.zeros(0, np.float32), 0, np.zeros((0, 2), np.int64))
    con = limits.connect()
    con.read_parquet((spill / "sketch-*.parquet").as_posix()).create_view("sketches")
    con.execute("CREATE TABLE pairs (i BIGINT, j BIGINT)")
    for band in range(config.bands):
        con.execute(_candidate_sql(band, config.bucket_peers))
    con.execute("CREATE TABLE candidates AS SELECT DISTINCT i, j FROM pairs; DROP TABLE pairs")
    candidates = con.sql("SELECT count(*) FROM candidates").fetchall()[0][0]
    progress.report(f"{candidates:,} candidate pairs in {progress.elapsed:.1f} s")
    con.execute("""
        CREATE TABLE involved AS SELECT doc, shingles, sketch FROM sketches
        WHERE doc IN (SELECT i FROM candidates UNION SELECT j FROM candidates)
    """)  # one pass over the sketches, then joins on the few documents in a candidate pair
    reader = con.sql("""
        SELECT p.i, p.j, a.shingles AS size_i, a.sketch AS sketch_i, b.shingles AS size_j, b.sketch AS sketch_j
        FROM candidates p JOIN involved a ON a.doc = p.i JOIN involved b ON b.doc = p.j
    """).to_arrow_reader(VERIFY_BATCH)
    edges = []
    for batch in reader:
        similarity = np.empty(batch.num_rows, dtype=np.float32)
        column = batch.column
        _verify(
            *_list_buffers(column("sketch_i")), column("size_i").to_numpy(),
            *_list_buffers(column("sketch_j")), column("size_j").to_numpy(), config.sketch_size, similarity,
        )  # fmt: skip
        similar = similarity >= config.threshold
        edges.append((column("i").to_numpy()[similar], column("j").to_numpy()[similar], similarity[similar]))
    con.close()
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    i, j, similarity = (np.concatenate([e[k] for e in [empty, *edges]]) for k in range(3))
    order = np.lexsort((i, j))
    docs, leaders, best = np.empty(len(i), np.int64), np.empty(len(i), np.int64), np.empty(len(i), np.float32)
    found = _keep_earliest(i[order], j[order], similarity[order], np.zeros(total, np.bool_), docs, leaders, best)
    progress.report(f"{len(i):,} pairs verified similar, {found:,} near duplicates in {progress.elapsed:.1f} s")
    return NearDuplicates(docs[:found], leaders[:found], best[:found], int(candidates), np.stack([i, j], axis=1))
