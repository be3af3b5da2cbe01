"""Tokenize stage throughput against plain tiktoken, and its peak memory on 1x and 4x the input.

    python benchmarks/build_corpus_stages.py /tmp/webtext500.json --out /tmp/bench-corpus   # makes deduped parts
    python benchmarks/tokenize_throughput.py /tmp/bench-corpus/near --parts 2 --workers 1 2

Baseline: `encode_ordinary` over the same texts in one process, texts already in memory (the fastest plain use).
Ours: tokenize_dataset from the Parquet parts to finished shards (reading, splitting, encoding, writing, joining),
with 1, 2, ... worker processes; "per process" divides by the workers. Peak RSS is measured in a fresh process for
the parts once and four times over (each run's largest process: the parent or one worker).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def baseline(parts: list[Path], encoding: str) -> dict:
    import pyarrow.parquet as pq
    import tiktoken

    texts = [t for p in parts for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]
    enc = tiktoken.get_encoding(encoding)
    started = time.monotonic()
    tokens = sum(len(enc.encode_ordinary(t)) + 1 for t in texts)
    seconds = time.monotonic() - started
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    return {"mb": round(megabytes, 1), "seconds": round(seconds, 2), "tokens": tokens}


def ours(parts: list[Path], encoding: str, workers: int) -> dict:
    from tasks.corpus.settings import TokenizeConfig
    from tasks.corpus.stage6_tokenize import tokenize_parts

    out = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    try:
        started = time.monotonic()
        stats = tokenize_parts(parts, TokenizeConfig(tokenizer=encoding), out / "t", workers, "", set())
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(out)
    tokens = stats["total"]["train_tokens"] + stats["total"]["val_tokens"]
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"seconds": round(seconds, 2), "tokens": tokens, "peak_mb": peak // 1024}


def run_fresh(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("deduped", type=Path, help="a folder of dedupe-stage Parquet parts")
    parser.add_argument("--parts", type=int, default=2, help="how many of its parts to use")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--encoding", default="gpt2")
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = sorted(args.deduped.glob("part-*.parquet"))[: args.parts]
    if args.only == "baseline":
        print(json.dumps(baseline(parts, args.encoding)))
        return 0
    if args.only == "ours":
        print(json.dumps(ours(parts * args.repeat, args.encoding, args.workers[0])))
        return 0
    common = [str(args.deduped), "--parts", str(args.parts), "--encoding", args.encoding]
    base = run_fresh([*common, "--only", "baseline"])
    mb = base["mb"]
    print(json.dumps({"run": "tiktoken encode_ordinary, 1 process", **base, "mb_per_s": round(mb / base["seconds"], 1),
                      "tokens_per_s": round(base["tokens"] / base["seconds"])}))  # fmt: skip
    for workers in args.workers:
        for repeat in (1, 4) if workers == max(args.workers) else (1,):
            r = run_fresh([*common, "--only", "ours", "--workers", str(workers), "--repeat", str(repeat)])
            per_process = mb * repeat / r["seconds"] / workers
            print(json.dumps({
                "run": f"tokenize_dataset, {workers} workers, input x{repeat}", "mb": mb * repeat, **r,
                "mb_per_s": round(mb * repeat / r["seconds"], 1), "mb_per_s_per_process": round(per_process, 1),
                "vs_baseline_per_process": round(per_process / (mb / base["seconds"]), 2),
            }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
