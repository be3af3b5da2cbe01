"""Time the check training makes before its first step: every shard's sha256 and token ids, on a 1 GB dataset.

    python benchmarks/verify_shards.py /tmp/verify1g        # builds 10 shards of 50M random gpt2 ids on first use

Prints the seconds of TokenDataset.open without and with `verify` (headers only, then every byte read once).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gpt.shards import ShardWriter, TokenDataset, write_manifest
from gpt.tokenizer import TiktokenTokenizer


def build(folder: Path, shards: int = 10, tokens: int = 50_000_000) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(shards):
        with ShardWriter(folder / f"train-{i:05d}.bin", np.uint16) as shard:
            for _ in range(tokens // 10_000_000):
                shard.add(rng.integers(0, 50257, 10_000_000, dtype=np.uint16))
        entries.append(shard.entry)
    write_manifest(folder, TiktokenTokenizer("gpt2"), {"train": entries}, created_by="benchmarks/verify_shards.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    if not (args.folder / "manifest.json").exists():
        build(args.folder)
    size = sum(p.stat().st_size for p in args.folder.glob("*.bin")) / 1e9
    for verify in (False, True, True):
        started = time.perf_counter()
        TokenDataset.open(args.folder, verify=verify)
        print(f"{size:.2f} GB, verify={verify}: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
