"""Loader memory against dataset size: the process's own memory must not grow with the tokens on disk.

    python benchmarks/loader_memory.py /tmp/loader-bench 100000000 1000000000

Writes one random uint16 shard per size into the folder (reused when present), then, in a fresh process per size,
reads 2000 batches of 16 x 1024-token windows and prints the time per batch with RssAnon (the process's own memory)
and RssFile (page-cache pages mapped in, which the kernel reclaims at will).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gpt.data import TokenWindows, sample_indices
from gpt.shards import write_shard


def measure(path: Path) -> str:
    windows = TokenWindows([path], block_size=1024, seed=1)
    t0 = time.perf_counter()
    for step in range(2000):
        windows.batch(sample_indices(step * 16, 0, 0, 1, 16))
    micros = (time.perf_counter() - t0) / 2000 * 1e6
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss = ", ".join(f"{key} {status[key].strip()}" for key in ("RssAnon", "RssFile"))
    return f"{sum(map(len, windows.tokens)):>14,} tokens: {micros:6.0f} us per batch, {rss}"


def main() -> None:
    if sys.argv[1] == "--measure":
        print(measure(Path(sys.argv[2])))
        return
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    chunk = np.random.default_rng(0).integers(0, 50257, 10_000_000, dtype=np.uint16)
    for size in map(int, sys.argv[2:]):
        path = folder / f"tokens-{size}.bin"
        if not path.exists():
            write_shard(path, np.tile(chunk, max(1, size // len(chunk))), np.uint16)
        subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
