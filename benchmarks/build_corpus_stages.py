"""Time each build-corpus stage on a webtext2019zh-shaped file: MB/s and peak memory per stage and end to end.

    python benchmarks/make_webtext.py /tmp/webtext500.json --mb 500
    python benchmarks/build_corpus_stages.py /tmp/webtext500.json --out /tmp/bench-corpus --workers 2

Each stage runs in a fresh process (so peak RSS is per stage, worker processes included) and reports the input
megabytes (the JSON file for ingest, the text it holds for the later stages), seconds and MB/s. The planted
duplicates in the generator's truth file are checked against what the dedupe stage found.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("ingest", "filter", "exact", "near")


def run_stage(stage: str, source: Path, out: Path, workers: int) -> dict:
    """Run one stage in this process; returns its measurements."""
    import pyarrow.parquet as pq

    from tasks.corpus.settings import DedupeConfig, rules_for
    from tasks.corpus.stage2_ingest import IngestOptions, ingest_files
    from tasks.corpus.stage3_filter import filter_parts
    from tasks.corpus.stage4_dedupe import dedupe_parts
    from tasks.stage import parts

    started = time.monotonic()
    if stage == "ingest":
        counts = ingest_files([(source, source.name)], "webtext2019zh", IngestOptions("webtext2019zh"), out, workers)
        megabytes = source.stat().st_size / 1e6
    elif stage == "filter":
        inputs = parts(out.parent / "ingest")
        counts = filter_parts(inputs, "webtext2019zh", "star >= 3", ["star"], rules_for("qa"), out, workers)
        megabytes = sum(pq.read_table(p, columns=["text"]).column("text").nbytes for p in inputs) / 1e6
    else:
        inputs = parts(out.parent / "filter")
        config = DedupeConfig(exact=True, near=stage == "near")
        counts = dedupe_parts([("webtext2019zh", inputs)], config, out, workers).per_corpus["webtext2019zh"]
        megabytes = sum(pq.read_table(p, columns=["text"]).column("text").nbytes for p in inputs) / 1e6
    seconds = time.monotonic() - started
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    return {
        "stage": stage,
        "mb": round(megabytes, 1),
        "seconds": round(seconds, 2),
        "mb_per_s": round(megabytes / seconds, 1),
        "peak_rss_mb": round(peak / 1024),
        "counts": {k: v for k, v in dict(counts).items() if v},
    }


def check_truth(source: Path, out: Path) -> dict:
    """Planted copies (from the generator's truth file) that the dedupe stage dropped, by kind."""
    import pyarrow.parquet as pq

    from tasks.stage import parts

    truth = json.loads(source.with_suffix(".truth.json").read_text())
    ids = [r for part in parts(out / "ingest") for r in pq.read_table(part, columns=["doc_id", "meta"]).to_pylist()]
    by_answer = {json.loads(r["meta"])["answer_id"]: r["doc_id"] for r in ids}
    dropped = set(pq.read_table(out / "near" / "duplicates", columns=["doc_id"]).column("doc_id").to_pylist())
    found: dict[str, list[int]] = {}
    for copy in truth["copies"]:
        hit = found.setdefault(copy["kind"], [0, 0])
        hit[0] += by_answer.get(str(copy["answer_id"])) in dropped
        hit[1] += 1
    return {kind: f"{a} of {b}" for kind, (a, b) in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-corpus"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.source, args.out / args.stage, args.workers)))
        return 0
    shutil.rmtree(args.out, ignore_errors=True)
    results = []
    for stage in STAGES:
        command = [sys.executable, __file__, str(args.source), "--out", str(args.out), "--workers", str(args.workers)]
        done = subprocess.run([*command, "--stage", stage], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    source_mb = args.source.stat().st_size / 1e6
    through_exact = sum(r["seconds"] for r in results[:3])
    through_near = results[0]["seconds"] + results[1]["seconds"] + results[3]["seconds"]
    summary = {
        "end_to_end_through_exact_mb_per_s": round(source_mb / through_exact, 1),
        "end_to_end_through_near_mb_per_s": round(source_mb / through_near, 1),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "planted_duplicates_found": check_truth(args.source, args.out),
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
