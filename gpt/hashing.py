"""Hashing helpers shared by the engine and the corpus stages: one mixer, one multiplier, one file checksum.

mix64(np.arange(4, dtype=np.uint64))   # splitmix64's finaliser, elementwise (compiled by the corpus kernels)
h = h * FNV_PRIME + code               # the polynomial rolling hash over code points of the text kernels
sha256_file(Path("THUCNews.zip"))      # hex digest, read in 4 MiB blocks
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

FNV_PRIME = np.uint64(0x100000001B3)
"""The 64-bit FNV prime: the base of the rolling hashes over code points."""
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-mixed hash of uint64 values."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
