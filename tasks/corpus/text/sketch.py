"""What the near-duplicate search knows of a document: LSH band keys and a bottom-k sketch of its shingles (compiled).

    sketcher = Sketcher(ngram=2, num_perm=120, bands=24, sketch_size=256, anchor_ngram=5, anchors=32)
    sketches = sketcher.sketch(texts)         # texts: an Arrow string array (or a list of str)
    sketches.band_keys                        # (documents, bands) uint64: equal keys make a candidate pair
    sketches.anchors                          # list<uint64>: a shared one makes a candidate pair too
    sketches.shingles                         # distinct shingles per document
    sketches.sketch                           # list<uint32>: the smallest shingle hashes
    jaccard, in_a, in_b = overlap(sketch_a, n_a, sketch_b, n_b, sketch_size)   # from two sketches

Shingles are n-grams of *units*, taken from the folded text (stats.fold_table: width, case, traditional and variant
Han characters to one form; punctuation and spaces dropped, so line breaks and punctuation never matter). A unit is
one character in scripts written without spaces (Han, kana, Thai, ...) and one word (a run of letters or digits) in
the others, so bigrams are character bigrams in Chinese and word bigrams in English: one edited Chinese character
changes two shingles, not five as with character 5-grams, which is what keeps short texts (a poem, a sentence, an
answer) above the threshold. A document with fewer units than n is a single shingle.

Each document's distinct shingle hashes give (1) a MinHash signature of num_perm functions, cut into bands whose
hashed values are the LSH keys; the signature is not kept, and (2) the sketch: its `sketch_size` smallest hashes.
Two sketches give the pair's Jaccard similarity exactly when both documents have at most sketch_size distinct
shingles (most short documents), and otherwise the bottom-k estimate (standard error about
sqrt(J(1 - J) / sketch_size), 0.03 at 0.7 with 256). The same sketches give the containments, the share of each
document's shingles that the other holds.

(3) Anchors, to find a document inside a longer one, where MinHash bands cannot: a document half the length of
the one that holds it has a Jaccard similarity of at most 0.5, and bands tuned that low would pair most documents
of a genre. Anchors are hashes of longer shingles (`anchor_ngram` units, rarely shared by chance), sampled
consistently: a shingle's level is the number of trailing zero bits of its hash, and a document of m of them keeps
those of level L or more, L the largest with m / 2^L >= `anchors` (so `anchors` to twice as many). A part of a
document has the lower level, so it keeps every anchor its whole keeps from that part: a third of a document,
wholly contained, shares about anchors / 3 of them with it (ten or more with 32). Each document also counts its
anchors at the ANCHOR_LEVELS levels from its own up: the anchors a longer document, of a higher level, can share.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

from gpt.hashing import FNV_PRIME
from tasks.corpus.text.stats import MULTI, arrow_buffers, code_buffer, decode, fold_table, mix
from tasks.corpus.text.tables import code_point_table

_WORD_SALT = np.uint64(0x5BD1E9955BD1E995)
_WORD_BIT = np.uint64(1 << 63)
_WORD_CHAR = np.uint32(1 << 31)
_ANCHOR_SALT = np.uint64(0x9E3779B97F4A7C15)
_ANCHOR_ROOM = 4  # anchors kept per document at most, in multiples of `anchors` (the expected is under 2)
ANCHOR_LEVELS = 4
"""Levels above its own that a document counts its anchors at (a longer document 8 times its length is 3 above)."""
_SPACELESS = (  # scripts written without spaces between words: every character is a unit
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x31FF),  # kana, bopomofo
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),
    (0x20000, 0x323AF),
)


@code_point_table
def unit_table() -> np.ndarray:
    """Code point -> its folded code point (0: a separator), with the top bit set for the letters and digits of
    scripts that space their words (they make word units). A character that folds to several keeps its own code."""
    fold = fold_table()
    table = np.where(fold == MULTI, np.arange(len(fold), dtype=np.uint32), fold)
    word = np.zeros(len(table), dtype=np.bool_)
    for cp in np.unique(table).tolist():
        if cp and unicodedata.category(chr(cp))[0] in "LN":
            word[cp] = not any(first <= cp <= last for first, last in _SPACELESS)
    return table | np.where(word[table], _WORD_CHAR, np.uint32(0))


@dataclass
class Sketches:
    band_keys: np.ndarray
    """(documents, bands) uint64 LSH keys."""
    shingles: np.ndarray
    """int32: distinct shingles per document (0 for a document with no letters, digits or characters)."""
    sketch: pa.ListArray
    """list<uint32>: each document's distinct shingle hashes (their upper 32 bits), all of them when there are at
    most sketch_size, else a few more than the sketch_size smallest, in no order (overlap() sorts and cuts)."""
    anchors: pa.ListArray
    """list<uint64>: each document's distinct sampled anchor hashes (none for a document shorter than anchor_ngram
    units)."""
    anchor_level: np.ndarray
    """int8: each document's anchor level L (it keeps the anchors of level L or more)."""
    anchor_counts: np.ndarray
    """(documents, ANCHOR_LEVELS) int32: how many of its anchors reach level L, L + 1, ...: the anchors a longer
    document of a higher level can share with it."""


class Sketcher:
    def __init__(
        self, ngram: int, num_perm: int, bands: int, sketch_size: int, seed: int = 1, anchor_ngram: int = 5,
        anchors: int = 32,
    ):  # fmt: skip
        self.ngram, self.bands, self.sketch_size = ngram, bands, sketch_size
        self.anchor_ngram, self.anchors = anchor_ngram, anchors
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def sketch(self, texts: list[str] | pa.Array | pa.ChunkedArray) -> Sketches:
        array = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
        offsets, data = arrow_buffers(array)
        count = len(offsets) - 1
        keys = np.zeros((count, self.bands), dtype=np.uint64)
        shingles = np.zeros(count, dtype=np.int32)
        starts = np.zeros(count + 1, dtype=np.int32)
        lengths = np.diff(offsets)
        values = np.empty(int(np.minimum(lengths, 2 * self.sketch_size).sum()), dtype=np.uint32)
        anchor_starts = np.zeros(count + 1, dtype=np.int32)
        anchor_level = np.zeros(count, dtype=np.int8)
        anchor_counts = np.zeros((count, ANCHOR_LEVELS), dtype=np.int32)
        anchor_values = np.empty(int(np.minimum(lengths, _ANCHOR_ROOM * self.anchors).sum()), dtype=np.uint64)
        if count:
            args = (self.ngram, self.sketch_size, self.a, self.b, keys, shingles, starts, values)
            anchored = (self.anchor_ngram, self.anchors, anchor_starts, anchor_values, anchor_level, anchor_counts)
            _sketch(offsets, data, unit_table(), *args, *anchored)
        sketch = pa.ListArray.from_arrays(pa.array(starts), pa.array(values[: starts[-1]], pa.uint32()))
        anchors = pa.array(anchor_values[: anchor_starts[-1]], pa.uint64())
        anchors = pa.ListArray.from_arrays(pa.array(anchor_starts), anchors)
        return Sketches(keys, shingles, sketch, anchors, anchor_level, anchor_counts)


@numba.njit(cache=True, inline="always")
def _end_word(units, u, word):
    """A word's unit: its hash, with the top bit set so that it never equals a character's unit (its code point)."""
    if word != 0:
        units[u] = mix(word ^ _WORD_SALT) | _WORD_BIT
        return u + 1
    return u


@numba.njit(cache=True, nogil=True)
def _smallest_first(hashes, count, size):
    """Move a superset of the `size` smallest of hashes[:count] (distinct uniform 64-bit values) to the front and
    return how many: the values below 1.25 size / count of the range, which hold them with near certainty and are
    rarely more than 2 size; otherwise (about one document in a million) exactly the smallest `size`, sorted."""
    limit = np.uint64(min(1.25 * size / count, 1.0) * 1.8446744073709552e19 * (1 - 1e-12))
    below = 0
    for s in range(count):
        h = hashes[s]
        if h < limit:
            hashes[s] = hashes[below]
            hashes[below] = h
            below += 1
    if size <= below <= 2 * size:
        return below
    hashes[:count].sort()
    return size


@numba.njit(cache=True, inline="always")
def _keep_anchors(units, u, n, target, out, at, level_of, counts):
    """Write the sampled anchors of one document's u units to out[at:] and return the new end (module doc, (3));
    sets the document's level and how many of its anchors reach each of the levels above it (counts)."""
    count = u - n + 1
    if count < 1:
        return at
    level = 0
    while count >> (level + 1) >= target:
        level += 1
    level_of[0] = level
    low = (np.uint64(1) << np.uint64(level)) - np.uint64(1)
    start, end = at, at + _ANCHOR_ROOM * target
    for s in range(count):
        h = units[s]
        for k in range(s + 1, s + n):
            h = h * FNV_PRIME + units[k]
        h = mix(h ^ _ANCHOR_SALT)
        if h & low != 0 or at == end or h in out[start:at]:  # kept once, however often the shingle recurs
            continue
        out[at] = h
        at += 1
        for above in range(len(counts)):
            if h & ((np.uint64(1) << np.uint64(level + above)) - np.uint64(1)) == 0:
                counts[above] += 1
    return at


@numba.njit(cache=True, nogil=True)
def _sketch(
    offsets,
    data,
    table,
    n,
    size,
    a,
    b,
    keys,
    shingles,
    starts,
    values,
    na,
    target,
    anchor_starts,
    anchors,
    level,
    counts,
):
    codes = code_buffer(offsets)
    units = np.empty(len(codes) + 1, dtype=np.uint64)
    hashes = np.empty(len(codes) + 1, dtype=np.uint64)
    room = 1
    while room < 2 * len(hashes):
        room *= 2
    slots = np.empty(room, dtype=np.uint64)
    stamps = np.zeros(room, dtype=np.int64)
    perms = len(a)
    rows = perms // keys.shape[1]
    signature = np.empty(perms, dtype=np.uint32)
    for d in range(len(offsets) - 1):
        length = decode(data, offsets[d], offsets[d + 1], codes)
        u = 0
        word = np.uint64(0)  # the running hash of the word being read, 0 between words
        for i in range(length):
            f = table[codes[i]]
            if f == 0:
                u = _end_word(units, u, word)
                word = np.uint64(0)
            elif f & _WORD_CHAR:
                word = word * FNV_PRIME + np.uint64(f)
            else:
                u = _end_word(units, u, word)
                word = np.uint64(0)
                units[u] = np.uint64(f)
                u += 1
        u = _end_word(units, u, word)
        anchor_starts[d + 1] = _keep_anchors(units, u, na, target, anchors, anchor_starts[d], level[d:], counts[d])
        starts[d + 1] = starts[d]
        if u == 0:  # nothing to compare: no shingles, zero keys (the search leaves such documents out)
            continue
        count = max(u - n + 1, 1)
        for s in range(count):
            h = units[s]
            for k in range(s + 1, min(s + n, u)):
                h = h * FNV_PRIME + units[k]
            hashes[s] = mix(h ^ np.uint64(min(n, u)))
        mask = np.uint64(1)
        while mask < np.uint64(2 * count):
            mask *= np.uint64(2)
        mask -= np.uint64(1)
        distinct = 0
        for s in range(count):  # distinct hashes, in an open-addressing table whose live slots carry stamp d + 1
            h = hashes[s]
            slot = h & mask
            while stamps[slot] == d + 1 and slots[slot] != h:
                slot = (slot + np.uint64(1)) & mask
            if stamps[slot] != d + 1:
                stamps[slot] = d + 1
                slots[slot] = h
                hashes[distinct] = h
                distinct += 1
        shingles[d] = distinct
        kept = distinct if distinct <= size else _smallest_first(hashes, distinct, size)
        for s in range(kept):
            values[starts[d] + s] = np.uint32(hashes[s] >> np.uint64(32))
        starts[d + 1] = starts[d] + kept
        signature[:] = 0xFFFFFFFF
        for s in range(distinct):
            h = hashes[s]
            for p in range(perms):
                value = np.uint32((a[p] * h + b[p]) >> np.uint64(32))
                if value < signature[p]:
                    signature[p] = value
        for band in range(keys.shape[1]):
            key = np.uint64(band)
            for r in range(band * rows, (band + 1) * rows):
                key = key * FNV_PRIME + np.uint64(signature[r])
            keys[d, band] = mix(key)


@numba.njit(cache=True, nogil=True)
def overlap(a, size_a, b, size_b, sketch_size):
    """(Jaccard similarity, share of a's shingles in b, share of b's shingles in a) from two documents' sketches.

    A sketch holds every shingle hash of its document up to its own limit (all of them when it has at most
    sketch_size, else up to its sketch_size-th smallest), so below the lower of the two limits both sets are known
    exactly: the three shares are counted there, exact when both sketches are whole."""
    a, b = np.sort(a)[:sketch_size], np.sort(b)[:sketch_size]
    limit = np.uint32(0xFFFFFFFF)
    if size_a > sketch_size:
        limit = min(limit, a[-1])
    if size_b > sketch_size:
        limit = min(limit, b[-1])
    i = j = only_a = only_b = both = 0
    while (i < len(a) and a[i] <= limit) or (j < len(b) and b[j] <= limit):
        if j == len(b) or b[j] > limit or (i < len(a) and a[i] < b[j]):
            only_a += 1
            i += 1
        elif i == len(a) or a[i] > limit or b[j] < a[i]:
            only_b += 1
            j += 1
        else:
            both += 1
            i += 1
            j += 1
    union = only_a + only_b + both
    if union == 0:
        return 0.0, 0.0, 0.0
    return both / union, both / max(both + only_a, 1), both / max(both + only_b, 1)
