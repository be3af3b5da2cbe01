"""Deduplication primitives: exact keys over a normalized form, and MinHash LSH over character n-grams.

    keys = [exact_key(t) for t in texts]                      # NFKC, case, whitespace and punctuation folded
    hasher = MinHasher(MinHashConfig(num_perm=128, bands=16, threshold=0.8))
    labels = near_duplicate_clusters(hasher.signatures(texts), hasher.config)
    # labels[i] is the smallest index in i's cluster: keep the rows where labels[i] == i

Signatures are computed for a whole batch of documents at once with numpy: every character n-gram is hashed with a
rolling polynomial, then each of the num_perm hash functions is applied to all n-grams of the batch and reduced per
document, so the per-document Python cost is a string join.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

import numpy as np

from gpt.data import mix64

_PRIME = np.uint64(0x100000001B3)
_FOLD_CATEGORIES = ("P", "S", "Z", "C")  # punctuation, symbols, separators, control characters


def normalize_for_hash(text: str) -> str:
    """The form exact duplicates share: NFKC (full-width to half-width), lower case, no punctuation or spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if not unicodedata.category(c).startswith(_FOLD_CATEGORIES))


def exact_key(text: str) -> str:
    return hashlib.blake2b(normalize_for_hash(text).encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class MinHashConfig:
    num_perm: int = 128
    """Hash functions per signature."""
    bands: int = 16
    """LSH bands; num_perm / bands rows each. More bands find pairs of lower similarity."""
    threshold: float = 0.8
    """Estimated Jaccard similarity of n-gram sets at or above which two documents are duplicates."""
    ngram: int = 5
    """Characters per shingle."""
    seed: int = 1
    """Seeds the hash functions; fixed so that clusters are reproducible."""

    def __post_init__(self):
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


class MinHasher:
    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.a = rng.integers(1, 2**63, size=config.num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=config.num_perm, dtype=np.uint64)

    def shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """64-bit hashes of every character n-gram, grouped by document, and each document's first index.

        A document shorter than n contributes one shingle: itself."""
        n = self.config.ngram
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        width = np.maximum(lengths - n + 1, 1)  # shingles per document
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        firsts = np.concatenate([[0], np.cumsum(width)[:-1]])
        doc = np.repeat(np.arange(len(texts)), width)
        pos = starts[doc] + np.arange(int(width.sum())) - firsts[doc]  # where each shingle begins in `codes`
        span = np.minimum(lengths, n)[doc]
        padded = np.concatenate([codes, np.zeros(n, dtype=np.uint64)])
        h = np.zeros(len(pos), dtype=np.uint64)
        for k in range(n):
            h = h * _PRIME + np.where(k < span, padded[pos + k], np.uint64(0))
        return mix64(h ^ span.astype(np.uint64)), firsts

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 MinHash signatures."""
        if not texts:
            return np.zeros((0, self.config.num_perm), dtype=np.uint32)
        shingles, firsts = self.shingle_hashes(texts)
        out = np.empty((len(texts), self.config.num_perm), dtype=np.uint32)
        for p in range(self.config.num_perm):
            hashed = ((self.a[p] * shingles + self.b[p]) >> np.uint64(32)).astype(np.uint32)
            out[:, p] = np.minimum.reduceat(hashed, firsts)
        return out


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def near_duplicate_clusters(signatures: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """Cluster label per row: the smallest row index among its near duplicates (itself when it has none).

    Rows that share a band bucket are compared with the bucket's first row and joined when the share of equal
    signature values reaches the threshold."""
    n = len(signatures)
    parent = np.arange(n)
    rows = config.num_perm // config.bands
    for band in range(config.bands):
        block = np.ascontiguousarray(signatures[:, band * rows : (band + 1) * rows]).astype(np.uint64)
        key = np.zeros(n, dtype=np.uint64)
        for column in block.T:
            key = mix64(key ^ column)
        order = np.argsort(key, kind="stable")
        sorted_keys = key[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]) + 1  # positions continuing a bucket
        if not len(same):
            continue
        bucket_start = np.maximum.accumulate(
            np.where(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]], np.arange(n), 0)
        )
        for at in same.tolist():
            i, leader = int(order[at]), int(order[bucket_start[at]])
            if np.mean(signatures[i] == signatures[leader]) >= config.threshold:
                ri, rl = _find(parent, i), _find(parent, leader)
                if ri != rl:
                    parent[max(ri, rl)] = min(ri, rl)
    return np.array([_find(parent, i) for i in range(n)])
