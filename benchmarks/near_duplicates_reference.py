"""The near-duplicate search against datasketch's MinHashLSH on the same shingles, threshold and verification.

    python benchmarks/near_duplicates_reference.py --out /tmp/near-reference

The documents are the poems of ../shared/data/chinese-poetry (全唐诗, 宋词 and 唐诗三百首) left by exact
deduplication, as the dedupe stage hands them to its near search. Both sides get the same input: each poem's
distinct bigram hashes from text/sketch.py (folded text, 32-bit hashes). datasketch's MinHashLSH (threshold 0.7, 128
permutations; it picks its own bands and rows) proposes pairs, and each is kept when the exact Jaccard similarity of
the two sets is 0.7 or more; gptflow's search does the same with its
own LSH. Printed: the verified pairs each finds, the share of datasketch's pairs gptflow finds (recall against it),
the pairs only one side finds, the documents each would drop (an earlier similar one kept, no chaining) and the
seconds each takes (datasketch in Python, gptflow with 2 worker threads). gptflow compares a document with the
earliest `bucket_peers` of each LSH bucket only, so in a large group of similar poems it skips pairs of two later
ones, both dropped anyway: recall is measured on documents too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POEMS = REPO.parent / "shared" / "data" / "chinese-poetry"


def poems() -> list[str]:
    """Every poem, in file order, without the exact copies (after folding), as the dedupe stage's exact step leaves
    them for the near search."""
    from tasks.corpus.text.stats import fold_text

    texts = []
    for path in sorted(POEMS.glob("*/*.json")):
        value = json.loads(path.read_text())
        records = value if isinstance(value, list) else [p for group in value["content"] for p in group["content"]]
        texts += ["\n".join(r["paragraphs"]) for r in records if r.get("paragraphs")]
    return list({fold_text(t): t for t in reversed(texts)}.values())[::-1]


def keep_earliest(pairs: set[tuple[int, int]], sets: list[set]) -> set[int]:
    """The documents dropped when each is compared with the earlier ones kept (the dedupe stage's rule)."""
    dropped = set()
    for i, j in sorted(pairs, key=lambda p: (p[1], p[0])):
        if i not in dropped:
            dropped.add(j)
    return dropped


def exact(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def with_datasketch(shingles: list[list[int]], threshold: float) -> set[tuple[int, int]]:
    import datasketch

    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=128)
    signatures = []
    for i, values in enumerate(shingles):
        m = datasketch.MinHash(num_perm=128, seed=3)
        m.update_batch([v.to_bytes(4, "little") for v in values])
        signatures.append(m)
        if values:
            lsh.insert(i, m)
    sets = [set(v) for v in shingles]
    found = set()
    for j, m in enumerate(signatures):
        for i in lsh.query(m) if shingles[j] else []:
            if i < j and exact(sets[i], sets[j]) >= threshold:
                found.add((i, j))
    return found


def with_gptflow(texts: list[str], out: Path, threshold: float) -> tuple[set[tuple[int, int]], int]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.corpus.settings import NearConfig
    from tasks.corpus.text.near_duplicates import find_near_duplicates
    from tasks.parallel import DuckDBLimits

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts}), out / "poems.parquet")
    parts = [(out / "poems.parquet", np.arange(len(texts)), 0)]
    found = find_near_duplicates(parts, len(texts), NearConfig(threshold=threshold), out / "spill", DuckDBLimits(), 2)
    return {tuple(p) for p in found.pairs.tolist()}, found.candidates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/near-reference"))
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    from tasks.corpus.text.sketch import Sketcher

    shutil.rmtree(args.out, ignore_errors=True)
    texts = poems()
    shingles = Sketcher(2, 8, 1, 1 << 20).sketch(texts).sketch.to_pylist()
    started = time.monotonic()
    reference = with_datasketch(shingles, args.threshold)
    reference_s = time.monotonic() - started
    started = time.monotonic()
    ours, candidates = with_gptflow(texts, args.out, args.threshold)
    ours_s = time.monotonic() - started
    sets = [set(v) for v in shingles]
    only_ours = ours - reference
    reference_dropped, ours_dropped = keep_earliest(reference, sets), keep_earliest(ours, sets)
    summary = {
        "documents": len(texts),
        "datasketch_pairs": len(reference),
        "datasketch_seconds": round(reference_s, 1),
        "gptflow_pairs": len(ours),
        "gptflow_candidates": candidates,
        "gptflow_seconds": round(ours_s, 1),
        "recall_against_datasketch": round(len(ours & reference) / max(len(reference), 1), 4),
        "only_datasketch": len(reference - ours),
        "only_gptflow": len(only_ours),
        "only_gptflow_below_threshold": sum(exact(sets[i], sets[j]) < args.threshold for i, j in only_ours),
        "datasketch_dropped_documents": len(reference_dropped),
        "gptflow_dropped_documents": len(ours_dropped),
        "document_recall_against_datasketch": round(len(ours_dropped & reference_dropped) / len(reference_dropped), 4),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
