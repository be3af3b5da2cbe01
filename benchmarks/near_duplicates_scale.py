"""Time and memory of the dedupe stage (exact + near) as the number of documents grows.

    python benchmarks/near_duplicates_scale.py --docs 500000 1000000 2000000 --out /tmp/near-scale

Documents are made of real Chinese sentences (the chinese-poetry lines and the THUCNews and translation2019zh samples
under ../shared/data), one to six of them drawn at random, so unrelated documents share a sentence now and then as
real ones do; 5% are near copies of an earlier document with 2% to 5% of their characters replaced. Each size is
written as filtered parts of 100,000 documents (with their exact keys), then deduplicated in a fresh process with 2
workers: seconds, MB/s of text and peak RSS (that process and its threads), and how many planted copies were found
among those at least 0.7 similar to a source that was kept (a copy of a dropped copy may rightly stay).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import time
import zipfile
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
PART_DOCS = 100_000


def sentences() -> list[str]:
    texts = []
    for path in sorted((DATA / "chinese-poetry").glob("*/*.json")):
        value = json.loads(path.read_text())
        texts += [line for poem in value if isinstance(poem, dict) for line in poem.get("paragraphs", [])]
    with zipfile.ZipFile(DATA / "samples" / "thucnews" / "THUCNews.zip") as z:
        texts += [z.read(n).decode() for n in z.namelist() if n.endswith(".txt") and "__MACOSX" not in n]
    for line in (DATA / "samples" / "translation2019zh" / "translation2019zh_valid.json").read_text().splitlines():
        texts.append(json.loads(line)["chinese"])
    pieces = (p.strip() for t in texts for p in re.split(r"(?<=[。！？\n])", t))
    return sorted({p for p in pieces if len(p) >= 5})


def edit(text: str, share: float, rng: random.Random) -> str:
    chars = list(text)
    for i in rng.sample(range(len(chars)), max(1, round(len(chars) * share))):
        chars[i] = chr(0x4E00 + rng.randrange(20000))
    return "".join(chars)


def similarities(pairs: list[tuple[str, str]]) -> list[float]:
    """The Jaccard similarity of each (copy, source) pair's bigram sets, exactly as the search measures it."""
    import numpy as np

    from tasks.corpus.text.sketch import Sketcher, overlap

    sketcher = Sketcher(2, 8, 1, 1 << 20)
    copies, sources = (sketcher.sketch([pair[k] for pair in pairs]) for k in (0, 1))
    found = []
    for k in range(len(pairs)):
        a, b = (np.array(s.sketch[k].as_py(), dtype=np.uint32) for s in (copies, sources))
        found.append(overlap(a, copies.shingles[k], b, sources.shingles[k], 1 << 20)[0])
    return found


def write_parts(count: int, folder: Path, seed: int = 0) -> tuple[int, dict]:
    """`count` documents as filtered parts in folder; returns text bytes and {copy doc_id: (source doc_id,
    similarity)}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.corpus.text.stats import text_stats

    rng = random.Random(seed)
    pool = sentences()
    folder.mkdir(parents=True, exist_ok=True)
    recent: deque[tuple[int, str]] = deque(maxlen=50_000)  # copies are of documents up to 50,000 back
    planted, texts, batch, size = {}, [], [], 0
    for i in range(count):
        if recent and rng.random() < 0.05:
            source, original = recent[rng.randrange(len(recent))]
            text = edit(original, rng.uniform(0.02, 0.05), rng)
            planted[f"d{i}"] = f"d{source}"
            texts.append((text, original))
        else:
            text = "".join(rng.sample(pool, rng.randint(1, 6)))
        recent.append((i, text))
        batch.append(text)
        if len(batch) == PART_DOCS or i == count - 1:
            first = i + 1 - len(batch)
            array = pa.array(batch, pa.string())
            keys = text_stats(array, ngrams=False, lines=False).exact_keys
            exact = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(keys), [None, pa.py_buffer(keys.tobytes())])
            ids = [f"d{first + k}" for k in range(len(batch))]
            table = pa.table({
                "doc_id": ids, "corpus": ["bench"] * len(batch), "text": array, "source_file": ["bench"] * len(batch),
                "source_line": pa.array(range(first, first + len(batch)), pa.int64()), "exact_key": exact,
            })  # fmt: skip
            pq.write_table(table, folder / f"part-{first // PART_DOCS:05d}.parquet", compression="zstd")
            size += array.nbytes
            batch = []
    return size, dict(zip(planted, zip(planted.values(), similarities(texts), strict=True), strict=True))


def run(folder: Path, out: Path, workers: int) -> dict:
    """Deduplicate the parts in this process; returns its measurements."""

    from tasks.corpus.settings import DedupeConfig
    from tasks.corpus.stage4_dedupe import dedupe_parts
    from tasks.parallel import DuckDBLimits

    parts = sorted(folder.glob("part-*.parquet"))
    started = time.monotonic()
    result = dedupe_parts([("bench", parts)], DedupeConfig(), out, workers, DuckDBLimits("2GB"))
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "counts": dict(result.per_corpus["bench"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/near-scale"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args.run, args.out, args.workers)))
        return 0
    import pyarrow.parquet as pq

    for count in args.docs:
        folder = args.out / f"{count}"
        size, planted = write_parts(count, folder / "filtered")
        command = [sys.executable, __file__, "--run", str(folder / "filtered"), "--out", str(folder / "deduped")]
        done = subprocess.run([*command, "--workers", str(args.workers)], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        dropped = set(pq.read_table(folder / "deduped" / "duplicates", columns=["doc_id"])[0].to_pylist())
        similar = [copy for copy, (source, j) in planted.items() if j >= 0.7 and source not in dropped]
        found = sum(copy in dropped for copy in similar)
        print(json.dumps({
            "docs": count, "text_mb": round(size / 1e6, 1), "seconds": result["seconds"],
            "mb_per_s": round(size / 1e6 / result["seconds"], 1), "peak_rss_mb": result["peak_rss_mb"],
            "counts": result["counts"], "planted_copies": len(planted),
            "planted_copies_found": f"{found} of {len(similar)}",
        }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
