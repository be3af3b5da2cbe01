"""Per-document text statistics and exact-duplicate keys for a whole batch at once, in numpy over code points.

    batch = CodeBatch(texts)
    batch.cjk_counts()               # CJK ideographs per document
    batch.repeated_ngram_shares(10)  # share of character 10-grams that occur more than once in their document
    batch.exact_keys()               # 128-bit keys, equal for texts equal after NFKC, case folding and removing
                                     # punctuation, symbols, spaces and control characters

One UTF-32 copy of the batch replaces a Python loop per character: a lookup table folds every code point (NFKC
and case folding of single characters; punctuation, symbols, separators and control characters to nothing), and
hashes are polynomial sums over prefix sums, so each statistic costs a few vector passes whatever the n-gram size.
Characters whose NFKC form is several characters (ligatures, circled numbers) send their document through the
same folding in Python.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import cache

import numpy as np

from gpt.data import mix64

_BASES = (0x100000001B3, 0x9E3779B97F4A7C15 | 1)
_INVERSES = tuple(pow(b, -1, 2**64) for b in _BASES)
_FOLD_CATEGORIES = ("P", "S", "Z", "C")
_MULTI = np.uint32(0xFFFFFFFF)
SAMPLE_FROM = 2_000


def _fold_char(c: str) -> str:
    folded = unicodedata.normalize("NFKC", c).casefold()
    return "".join(x for x in folded if not unicodedata.category(x).startswith(_FOLD_CATEGORIES))


@cache
def fold_table() -> np.ndarray:
    """Code point -> its folded code point, 0 when it folds away, _MULTI when it folds to several."""
    table = np.arange(sys.maxunicode + 1, dtype=np.uint32)
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if unicodedata.category(c).startswith(_FOLD_CATEGORIES):
            table[cp] = 0
        elif not unicodedata.is_normalized("NFKC", c) or c.casefold() != c:
            folded = _fold_char(c)
            table[cp] = ord(folded) if len(folded) == 1 else (0 if not folded else _MULTI)
    return table


def fold_text(text: str) -> str:
    """The form exact duplicates share (the slow reference of exact_keys' folding)."""
    return "".join(_fold_char(c) for c in text)


@cache
def _powers(which: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """B^i and B^-i (mod 2^64) for i < n, n rounded up to a power of two so that the cache stays small."""
    size = 1 << max(int(n - 1).bit_length(), 10)
    ones = np.ones(1, dtype=np.uint64)
    up = np.concatenate([ones, np.cumprod(np.full(size - 1, _BASES[which], dtype=np.uint64))])
    down = np.concatenate([ones, np.cumprod(np.full(size - 1, _INVERSES[which], dtype=np.uint64))])
    return up, down


class CodeBatch:
    def __init__(self, texts: list[str]):
        self.texts = texts
        self.lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])
        self.codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        self.doc = np.repeat(np.arange(len(texts)), self.lengths)
        self.rel = np.arange(len(self.codes)) - self.starts[self.doc]  # position inside the document

    def _per_doc(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.doc[mask], minlength=len(self.texts))

    def cjk_counts(self) -> np.ndarray:
        c = self.codes
        return self._per_doc(((c >= 0x4E00) & (c <= 0x9FFF)) | ((c >= 0x3400) & (c <= 0x4DBF)))

    def repeated_ngram_shares(self, n: int, sample: int = 8) -> np.ndarray:
        """Share of each document's character n-grams that occur in it more than once.

        In documents of SAMPLE_FROM n-grams or more, one n-gram in `sample`, picked by hash value, is counted:
        every copy of a picked n-gram is picked too, so the share is estimated without bias."""
        shares = np.zeros(len(self.texts))
        windows = np.maximum(self.lengths - n + 1, 0)
        if not windows.sum():
            return shares
        doc = np.repeat(np.arange(len(self.texts)), windows)
        pos = np.arange(int(windows.sum())) - np.repeat(np.cumsum(windows) - windows, windows) + self.starts[doc]
        up, down = _powers(0, int(self.lengths.max()) + 1)
        prefix = np.concatenate([[np.uint64(0)], np.cumsum(self.codes * up[self.rel], dtype=np.uint64)])
        pos = np.flatnonzero(self.rel + n <= self.lengths[self.doc])  # windows that stay inside their document
        hashes = mix64((prefix[pos + n] - prefix[pos]) * down[self.rel[pos]])
        doc = self.doc[pos]
        picked = ((hashes % np.uint64(sample)) == 0) | (windows[doc] < SAMPLE_FROM)
        keys = (hashes[picked] >> np.uint64(24)) | (doc[picked].astype(np.uint64) << np.uint64(40))
        keys.sort()
        same = keys[1:] == keys[:-1]
        repeated = np.zeros(len(keys), dtype=bool)
        repeated[1:] |= same
        repeated[:-1] |= same
        owner = (keys >> np.uint64(40)).astype(np.int64)
        counted = np.bincount(owner, minlength=len(self.texts))
        np.divide(np.bincount(owner, weights=repeated, minlength=len(self.texts)), counted, shares, where=counted > 0)
        return shares

    def exact_keys(self) -> np.ndarray:
        """(len(texts), 2) uint64 keys of the folded texts (see fold_table)."""
        folded = fold_table()[self.codes]
        multi = np.flatnonzero(self._per_doc(folded == _MULTI))
        keep = folded != 0
        values, doc = folded[keep].astype(np.uint64), self.doc[keep]
        counts = np.bincount(doc, minlength=len(self.texts))
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rel = np.arange(len(values)) - first[doc]
        keys = np.zeros((len(self.texts), 2), dtype=np.uint64)
        for which in (0, 1):
            up, _ = _powers(which, int(counts.max(initial=0)) + 1)
            keys[:, which] = mix64(_segment_sums(values * up[rel], first) ^ counts.astype(np.uint64))
        for i in multi:  # rare: characters that fold to several, handled one document at a time
            keys[i] = CodeBatch([fold_text(self.texts[i])]).exact_keys()[0]
        return keys


def _segment_sums(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Sums of values over consecutive segments starting at `first` (mod 2^64; empty segments give 0)."""
    prefix = np.concatenate([[np.uint64(0)], np.cumsum(values, dtype=np.uint64)])
    ends = np.concatenate([first[1:], [len(values)]])
    return prefix[ends] - prefix[first]
