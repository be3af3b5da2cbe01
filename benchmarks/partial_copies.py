"""Partial copies on real text: how many the dedupe stage finds, and what it merges that it should not.

    python benchmarks/partial_copies.py --out /tmp/partial-copies

1. The poetry dataset (全唐诗, 宋词, 唐诗三百首 from ../shared/data), deduplicated without and with containment:
   documents dropped by kind, seconds, and for reading, samples of the pairs dropped as contained written to
   out/contained-*.md by kind of pair (a poem of a series such as 其一/其二, two poets, two 宋词 lyrics, any).
2. Planted partial copies: real poems of 全唐诗 and THUCNews articles of at least 50 characters, each copied once,
   either cut to a random 30% to 90% of its characters (a contiguous piece, at a random place) or with lines removed
   until 30% to 90% of its characters are left, appended as a second corpus: how many are found as duplicates of
   their whole, by how much was kept; the ones missed go to out/planted/missed.txt (whole => copy), for reading.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "tasks" / "corpus")]

import duckdb  # noqa: E402

from tasks.config import load_pipelines  # noqa: E402
from tasks.corpus.settings import DedupeConfig, NearConfig  # noqa: E402
from tasks.corpus.stage1_raw import fetch_sources  # noqa: E402
from tasks.corpus.stage2_ingest import ingest_corpus  # noqa: E402
from tasks.corpus.stage3_filter import filter_corpus  # noqa: E402
from tasks.corpus.stage4_dedupe import dedupe_parts  # noqa: E402
from tasks.stage import input_parts  # noqa: E402

DATA = REPO.parent / "shared" / "data"
POETRY = ("poetry-tang", "poetry-song", "poetry-tang300")


def poetry_parts(root: Path) -> list[tuple[str, list[Path]]]:
    config = load_pipelines(REPO / "pipelines.yaml", {"data_root": str(root), "mirror": str(DATA)})
    inputs = []
    for corpus in POETRY:
        filtered = filter_corpus(
            config, "poetry", ingest_corpus(config, "poetry", corpus, fetch_sources(config, corpus))
        )
        inputs.append((corpus, input_parts(config.root, filtered)))
    return inputs


def dedupe(inputs, containment: float, out: Path) -> dict:
    start = time.perf_counter()
    config = DedupeConfig(near_search=NearConfig(containment=containment))
    result = dedupe_parts(inputs, config, out, workers=2)
    seconds = time.perf_counter() - start
    kinds = Counter()
    for counts in result.per_corpus.values():
        kinds.update({k: v for k, v in counts.items() if k.startswith("dropped_")})
    return {"seconds": round(seconds, 1), **kinds}


def contained_samples(inputs, out: Path, report: Path, per_kind: int = 40) -> None:
    documents = ", ".join(f"'{p.as_posix()}'" for _, parts in inputs for p in parts)
    pairs = duckdb.sql(f"""
        SELECT d.corpus, d.duplicate_corpus, d.similarity, d.text AS dropped, k.text AS kept, k.title AS kept_title,
               json_extract_string(k.meta, '$.author') AS kept_author, d.doc_id,
               json_extract_string(m.meta, '$.author') AS dropped_author
        FROM read_parquet('{out}/duplicates/*.parquet') d
        JOIN read_parquet('{out}/part-*.parquet') k ON k.doc_id = d.duplicate_of
        JOIN read_parquet([{documents}]) m ON m.doc_id = d.doc_id
        WHERE d.kind = 'contained'
    """).fetchall()
    kinds = {
        "series": lambda p: "其" in (p[5] or ""),
        "song": lambda p: p[0] == p[1] == "poetry-song",
        "two-poets": lambda p: p[8] != p[6],
        "any": lambda p: True,
    }
    rng = random.Random(0)
    for kind, chosen in kinds.items():
        picked = [p for p in pairs if chosen(p)]
        picked = rng.sample(picked, min(per_kind, len(picked)))
        lines = [f"# contained pairs, {kind}: {len(picked)} drawn\n"]
        for p in picked:
            lines.append(f"## {p[7]} ({p[8]}, {p[0]}) in {p[6]}《{p[5]}》 ({p[1]}), share {p[2]:.2f}\n")
            lines.append(
                f"dropped:\n\n    {p[3].replace(chr(10), ' / ')}\n\nkept:\n\n    {p[4].replace(chr(10), ' / ')}\n"
            )
        (report / f"contained-{kind}.md").write_text("\n".join(lines), encoding="utf-8")


def partial_copy(text: str, share: float, rng: random.Random, by_lines: bool) -> str:
    if by_lines and text.count("\n") >= 2:
        lines = text.split("\n")
        while len(lines) > 1 and sum(map(len, lines)) > share * len(text):
            lines.pop(rng.randrange(len(lines)))
        return "\n".join(lines)
    size = max(1, round(share * len(text)))
    start = rng.randrange(len(text) - size + 1)
    return text[start : start + size]


def planted(out: Path) -> dict:
    from test_dedupe import filtered_part
    from test_near_duplicates import POEMS

    texts = []
    for path in sorted((POEMS / "全唐诗").glob("*.json"))[:8]:
        texts += ["\n".join(p["paragraphs"]) for p in json.loads(path.read_text())]
    with zipfile.ZipFile(DATA / "samples" / "thucnews" / "THUCNews.zip") as z:
        texts += [z.read(n).decode() for n in z.namelist() if n.endswith(".txt") and "__MACOSX" not in n]
    originals = list(dict.fromkeys(t for t in texts if len(t) >= 50))
    rng = random.Random(0)
    sources = rng.sample(range(len(originals)), min(3000, len(originals)))
    shares = [rng.uniform(0.3, 0.9) for _ in sources]
    copies = [
        partial_copy(originals[s], f, rng, k % 2 == 1) for k, (s, f) in enumerate(zip(sources, shares, strict=True))
    ]
    inputs = [
        ("originals", [filtered_part(out / "originals.parquet", "originals", originals)]),
        ("copies", [filtered_part(out / "copies.parquet", "copies", copies)]),
    ]
    start = time.perf_counter()
    dedupe_parts(inputs, DedupeConfig(), out / "deduped", workers=2)
    seconds = time.perf_counter() - start
    duplicates = f"read_parquet('{out}/deduped/duplicates/*.parquet')"
    leader_of = dict(duckdb.sql(f"SELECT doc_id, duplicate_of FROM {duplicates}").fetchall())
    ids = {  # the filter's rules may drop or tidy a text, so documents are told by their place in the input
        corpus: dict(
            duckdb.sql(f"SELECT source_line - 1, doc_id FROM read_parquet('{out}/{corpus}.parquet')").fetchall()
        )
        for corpus in ("originals", "copies")
    }
    stands_for = {k: leader_of.get(doc, doc) for k, doc in ids["originals"].items()}  # each one's kept document
    buckets = Counter()
    for k, (s, f) in enumerate(zip(sources, shares, strict=True)):
        bucket = f"{int(f * 10) * 10}-{int(f * 10) * 10 + 10}%"
        buckets[(bucket, "copies")] += 1
        buckets[(bucket, "found")] += leader_of.get(ids["copies"].get(k)) == stands_for.get(s, "")
    originals_dropped = duckdb.sql(f"""
        SELECT count(*) FROM read_parquet('{out}/deduped/duplicates/*.parquet') WHERE corpus = 'originals'
    """).fetchall()[0][0]
    missed = [
        (originals[s], copies[k])
        for k, s in enumerate(sources)
        if leader_of.get(ids["copies"].get(k)) != stands_for.get(s, "")
    ]
    (out / "missed.txt").write_text("\n\n".join(f"{a}\n=>\n{b}" for a, b in missed))
    missed = [
        (originals[s], copies[k])
        for k, s in enumerate(sources)
        if leader_of.get(ids["copies"].get(k)) != stands_for.get(s, "")
    ]
    (out / "missed.txt").write_text("\n\n".join(f"{a}\n=>\n{b}" for a, b in missed))
    return {"seconds": round(seconds, 1), "originals": len(originals), "originals_dropped": originals_dropped,
            **{f"{b} {w}": n for (b, w), n in sorted(buckets.items())}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/partial-copies"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = poetry_parts(args.out / "data")
    for containment in (0.0, 0.8):
        out = args.out / f"poetry-{containment}"
        print(f"poetry, containment {containment}:", dedupe(inputs, containment, out), flush=True)
    contained_samples(inputs, args.out / "poetry-0.8", args.out)
    (args.out / "planted").mkdir(exist_ok=True)
    print("planted partial copies:", planted(args.out / "planted"), flush=True)


if __name__ == "__main__":
    main()
