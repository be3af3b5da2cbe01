"""The dedupe stage's near-duplicate search, out of core: sketches spilled to Parquet, candidate pairs found by DuckDB,
every candidate verified by its real similarity and containment, the earliest of similar documents kept and a
document mostly inside a longer one dropped for it.

    config = NearConfig(threshold=0.7, ngram=2, containment=0.8)
    found = find_near_duplicates(parts, total, config, spill_dir, limits, workers=2)
    # parts: [(Path of a filtered part, rows of it to search, global index of its first row), ...]
    found.docs           # int64, ascending: the global index of every near duplicate
    found.leaders        # int64: the kept document each one duplicates
    found.similarity     # float32: the measured Jaccard similarity to it, or the share of it the leader holds
    found.contained      # bool: dropped as contained in its leader (else as similar to it)

1. Sketch (worker threads over the parts): each document's LSH band keys, anchors and bottom-k sketch
   (text/sketch.py), written to spill_dir/sketch-NNNNN.parquet with the document's global index; nothing per
   document stays in memory.
2. Candidates (DuckDB, which spills to disk past its memory limit): per band, and for the anchors, the documents
   sharing a key; each is paired with the earliest `bucket_peers` documents sharing it (a bucket of thousands of
   near-identical pages makes thousands of pairs, not millions).
3. Verify: each distinct candidate pair's Jaccard similarity and the share of each document's shingles the other
   holds, from the two sketches (exact for documents of up to `sketch_size` distinct shingles). Pairs under both
   `threshold` and `containment` are dropped here, so the keys only ever propose.
4. Keep the earliest: documents in index order (corpus order, then row order); a document is a duplicate when it is
   similar to an earlier document that is kept, and it names the most similar one.
5. Keep the longest: of the documents left, one of at least `containment_min_shingles` shingles, at least
   `containment` of which a longer document holds (of equal length: an earlier one), is a duplicate of it when that
   one is kept; longer documents are settled first, and a document that stands for a similar one in step 4 is kept.
   Neither rule chains: a document that resembles or lies inside only dropped documents is kept, so every dropped
   document is similar to, or contained in, the one that stands for it.
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
from tasks.corpus.text.sketch import ANCHOR_LEVELS, Sketcher, overlap, unit_table
from tasks.parallel import DuckDBLimits, Progress, run_jobs

VERIFY_BATCH = 50_000


@dataclass
class NearDuplicates:
    docs: np.ndarray
    """int64, ascending: global indices of the near duplicates (every other document searched is kept)."""
    leaders: np.ndarray
    """int64: for each of docs, the kept document it is most similar to."""
    similarity: np.ndarray
    """float32: for each of docs, its Jaccard similarity to its leader, or (when contained) the share of its
    shingles the leader holds."""
    contained: np.ndarray
    """bool: for each of docs, whether it was dropped as contained in its leader (step 5) or as similar (step 4)."""
    candidates: int
    """Distinct candidate pairs the band keys and anchors proposed."""
    pairs: np.ndarray
    """(verified pairs, 2) int64: the candidate pairs (earlier, later) at or above the similarity threshold."""


def _sketch_part(index: int, part: Path, rows: np.ndarray, first: int, config: NearConfig, spill: Path) -> int:
    texts = pq.read_table(part, columns=["text"]).column("text")
    texts = texts if len(rows) == len(texts) else texts.take(pa.array(rows))
    shape = (config.ngram, config.num_perm, config.bands, config.sketch_size, config.seed)
    found = Sketcher(*shape, config.anchor_ngram, config.anchors).sketch(texts)
    searched = found.shingles > 0
    columns = {
        "doc": pa.array(first + rows[searched], pa.int64()),
        "shingles": pa.array(found.shingles[searched], pa.int32()),
        "sketch": found.sketch.filter(pa.array(searched)),
        "anchors": found.anchors.filter(pa.array(searched)),
        "level": pa.array(found.anchor_level[searched], pa.int8()),
        **{f"a{k}": pa.array(found.anchor_counts[searched, k], pa.int32()) for k in range(ANCHOR_LEVELS)},
        **{f"b{band}": pa.array(found.band_keys[searched, band], pa.uint64()) for band in range(config.bands)},
    }
    pq.write_table(pa.table(columns), spill / f"sketch-{index:05d}.parquet", compression="none")  # random bits
    return int(searched.sum())


def _sharing_sql(keyed: str, peers: int, first: str = "doc") -> str:
    """(i < j, shared): pairs of documents sharing keys of `keyed` (a query of doc, key), each document paired with
    the first `peers` documents sharing a key in the order `first`, and how many keys the two share so."""
    return f"""
    WITH keyed AS ({keyed}),
    shared AS (SELECT key FROM keyed GROUP BY key HAVING count(*) > 1),
    members AS (
        SELECT doc, key, row_number() OVER (PARTITION BY key ORDER BY {first}) AS pos
        FROM keyed WHERE key IN (SELECT key FROM shared)
    )
    SELECT least(a.doc, b.doc) AS i, greatest(a.doc, b.doc) AS j, count(*) AS shared
    FROM members a JOIN members b ON a.key = b.key AND a.pos < b.pos AND a.pos <= {peers}
    GROUP BY ALL
    """


def _band_sql(band: int, peers: int) -> str:
    """Pairs sharing a band key, each document with the earliest documents of its bucket (the ones kept)."""
    return f"INSERT INTO pairs SELECT i, j FROM ({_sharing_sql(f'SELECT doc, b{band} AS key FROM sketches', peers)})"


def _anchor_sql(config: NearConfig) -> str:
    """Pairs sharing anchors that could be one inside the other: each document with the longest documents sharing an
    anchor (the ones that could hold it), kept when at least `anchors_shared` and half `containment` of the shorter
    one's anchors at the longer one's level (the only ones the longer can share) are shared."""
    docs = f"SELECT * FROM sketches WHERE shingles >= {config.containment_min_shingles}"
    keyed = f"SELECT doc, shingles, unnest(anchors) AS key FROM ({docs})"
    reach = {  # the shorter document's anchors at the longer one's level, from its counts per level above its own
        side: "CASE " + " ".join(f"WHEN {other}.level - {side}.level <= {k} THEN {side}.a{k}"
                                 for k in range(ANCHOR_LEVELS - 1)) + f" ELSE {side}.a{ANCHOR_LEVELS - 1} END"
        for side, other in (("a", "b"), ("b", "a"))
    }  # fmt: skip
    shorter = f"CASE WHEN b.shingles <= a.shingles THEN {reach['b']} ELSE {reach['a']} END"
    return f"""
    INSERT INTO pairs
    WITH found AS ({_sharing_sql(keyed, config.bucket_peers, "shingles DESC, doc")}), docs AS ({docs})
    SELECT f.i, f.j FROM found f JOIN docs a ON a.doc = f.i JOIN docs b ON b.doc = f.j
    WHERE f.shared >= {config.anchors_shared} AND f.shared >= {config.containment / 2} * ({shorter})
    """


@numba.njit(cache=True, nogil=True)
def _verify(offsets_a, values_a, sizes_a, offsets_b, values_b, sizes_b, sketch_size, similarity, in_b, in_a):
    """Per pair: the Jaccard similarity, the share of a's shingles b holds, the share of b's that a holds."""
    for p in range(len(similarity)):
        a = values_a[offsets_a[p] : offsets_a[p + 1]]
        b = values_b[offsets_b[p] : offsets_b[p + 1]]
        similarity[p], in_b[p], in_a[p] = overlap(a, sizes_a[p], b, sizes_b[p], sketch_size)


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


@numba.njit(cache=True)
def _keep_longest(dup, keeper, share, dropped, standing, docs, leaders, best):
    """Containment edges (dup inside a longer keeper) sorted longest dup first: a dup not dropped and not standing
    for another is dropped for its kept keeper that holds the most of it. A keeper is settled before any document
    inside it, being longer. Fills docs, leaders and best; returns how many."""
    found = 0
    e = 0
    while e < len(dup):
        d = dup[e]
        chosen, most = -1, -1.0
        while e < len(dup) and dup[e] == d:
            if not dropped[keeper[e]] and share[e] > most:
                chosen, most = keeper[e], share[e]
            e += 1
        if chosen >= 0 and not dropped[d] and not standing[d]:
            docs[found], leaders[found], best[found] = d, chosen, most
            dropped[d] = True
            standing[chosen] = True
            found += 1
    return found


def _containment_edges(verified: dict[str, np.ndarray], config: NearConfig) -> tuple[np.ndarray, ...]:
    """(dup, keeper, share) of the verified pairs where the shorter document (of equal length, the later) has at
    least `containment` of its shingles in the other, sorted longest dup first, and not already similar."""
    i, j, size_i, size_j = verified["i"], verified["j"], verified["size_i"], verified["size_j"]
    j_shorter = size_j <= size_i  # i < j: of equal length the later is the one inside
    dup, keeper = np.where(j_shorter, j, i), np.where(j_shorter, i, j)
    share = np.where(j_shorter, verified["j_in_i"], verified["i_in_j"])
    size = np.where(j_shorter, size_j, size_i)
    inside = (
        (share >= config.containment) & (size >= config.containment_min_shingles)
        & (verified["similarity"] < config.threshold)
    )  # fmt: skip
    dup, keeper, share, size = dup[inside], keeper[inside], share[inside], size[inside]
    order = np.lexsort((keeper, dup, -size.astype(np.int64)))
    return dup[order], keeper[order], share[order]


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
        return NearDuplicates(none, none, np.zeros(0, np.float32), np.zeros(0, np.bool_), 0, np.zeros((0, 2), np.int64))
    con = limits.connect()
    con.read_parquet((spill / "sketch-*.parquet").as_posix()).create_view("sketches")
    con.execute("CREATE TABLE pairs (i BIGINT, j BIGINT)")
    for band in range(config.bands):
        con.execute(_band_sql(band, config.bucket_peers))
    if config.containment:
        con.execute(_anchor_sql(config))
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
    measures = ("similarity", "i_in_j", "j_in_i")
    empty = {name: none for name in ("i", "j", "size_i", "size_j")} | {m: np.zeros(0, np.float32) for m in measures}
    kept_pairs = [empty]
    for batch in reader:
        column = batch.column
        measured = {name: np.empty(batch.num_rows, dtype=np.float32) for name in measures}
        _verify(
            *_list_buffers(column("sketch_i")), column("size_i").to_numpy(),
            *_list_buffers(column("sketch_j")), column("size_j").to_numpy(), config.sketch_size, *measured.values(),
        )  # fmt: skip
        inside = np.maximum(measured["i_in_j"], measured["j_in_i"]) >= config.containment
        keep = (measured["similarity"] >= config.threshold) | (inside & (config.containment > 0))
        pairs = {name: column(name).to_numpy()[keep] for name in ("i", "j", "size_i", "size_j")}
        kept_pairs.append(pairs | {name: values[keep] for name, values in measured.items()})
    con.close()
    verified = {name: np.concatenate([p[name] for p in kept_pairs]) for name in kept_pairs[0]}
    similar = verified["similarity"] >= config.threshold
    i, j, similarity = verified["i"][similar], verified["j"][similar], verified["similarity"][similar]
    order = np.lexsort((i, j))
    dropped = np.zeros(total, np.bool_)
    docs, leaders, best = np.empty(len(i), np.int64), np.empty(len(i), np.int64), np.empty(len(i), np.float32)
    found = _keep_earliest(i[order], j[order], similarity[order], dropped, docs, leaders, best)
    progress.report(f"{len(i):,} pairs verified similar, {found:,} near duplicates in {progress.elapsed:.1f} s")
    result = (docs[:found], leaders[:found], best[:found])
    contained = np.zeros(found, np.bool_)
    if config.containment:
        dup, keeper, share = _containment_edges(verified, config)
        standing = np.zeros(total, np.bool_)
        standing[result[1]] = True
        more = [np.empty(len(dup), np.int64), np.empty(len(dup), np.int64), np.empty(len(dup), np.float32)]
        inside = _keep_longest(dup, keeper, share, dropped, standing, *more)
        progress.report(f"{len(dup):,} pairs verified contained, {inside:,} documents inside a longer one")
        order = np.argsort(np.concatenate([result[0], more[0][:inside]]), kind="stable")
        result = tuple(np.concatenate([r, m[:inside]])[order] for r, m in zip(result, more, strict=True))
        contained = np.concatenate([contained, np.ones(inside, np.bool_)])[order]
    return NearDuplicates(*result, contained, int(candidates), np.stack([i, j], axis=1))
