"""Measuring documents: text statistics and exact-duplicate keys of a whole Arrow string array, compiled (numba).

    raw = scan_raw(array, strip_markup=True)   # control and invisible characters per document; which tidying changes
    stats = text_stats(array, ngram=10)        # chars, cjk, repeated n-gram and line shares, exact keys
    count_codepoints(array, counts)            # how often each code point occurs (a char vocabulary's counts)

The filter stage keeps the statistics' verdicts and writes the exact keys beside each document, for the dedupe
stage; the near-duplicate sketches and tokenize's character counts read text with the same helpers (arrow_buffers,
decode, mix). Each kernel walks the array's UTF-8 bytes once, document by document, without making Python strings:
- exact keys are 128-bit hashes of the folded text, where a lookup table folds every code point (NFKC and case
  folding of single characters; traditional and variant Han characters to one simplified form, see variants.py;
  punctuation, symbols, separators and control characters to nothing). The few
  characters whose NFKC form is several characters (ligatures, circled numbers) send their document through the
  same folding in Python (fold_text);
- the repeated n-gram share counts a document's character n-grams that occur in it more than once, in a hash
  table per document; in documents of SAMPLE_FROM n-grams or more one n-gram in SAMPLE, picked by hash value, is
  counted (every copy of a picked n-gram is picked too, so the estimate is unbiased);
- the repeated line share is 1 - distinct / all among a document's non-blank lines.
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
import pyarrow as pa

from gpt.hashing import FNV_PRIME, mix64
from tasks.corpus.text.tables import code_point_table
from tasks.corpus.text.variants import han_variants

_FOLD_CATEGORIES = ("P", "S", "Z", "C")  # punctuation, symbols, separators, control
MULTI = np.uint32(0xFFFFFFFF)
SAMPLE_FROM = 2_000
SAMPLE = 8
_B1 = np.uint64(0x9E3779B97F4A7C15 | 1)


def _fold_char(c: str) -> str:
    folded = unicodedata.normalize("NFKC", c).casefold()
    variants = han_variants()
    return "".join(variants.get(x, x) for x in folded if not unicodedata.category(x).startswith(_FOLD_CATEGORIES))


@code_point_table
def fold_table() -> np.ndarray:
    """Code point -> its folded code point, 0 when it folds away, MULTI when it folds to several."""
    chars = list(map(chr, range(sys.maxunicode + 1)))
    folds_away = np.fromiter((unicodedata.category(c)[0] in "PSZC" for c in chars), np.bool_, len(chars))
    table = np.where(folds_away, 0, np.arange(len(chars))).astype(np.uint32)
    changed = [c for c in chars if unicodedata.normalize("NFKC", c) != c or c.casefold() != c]
    for c in changed:  # a symbol may still normalize to a letter (㊙ to 秘)
        folded = _fold_char(c)
        table[ord(c)] = ord(folded) if len(folded) == 1 else (0 if not folded else MULTI)
    standard = np.arange(len(chars), dtype=np.uint32)
    variants = han_variants()
    standard[[ord(c) for c in variants]] = [ord(c) for c in variants.values()]
    single = table != MULTI
    table[single] = standard[table[single]]
    return table


def fold_text(text: str) -> str:
    """The form exact duplicates share (the per-character reference of the exact keys' folding)."""
    return "".join(_fold_char(c) for c in text)


@cache
def space_table() -> np.ndarray:
    """Code point -> whether Python's str.strip() removes it; every such code point is below 0x3001."""
    return np.array([chr(cp).isspace() for cp in range(0x3001)], dtype=np.bool_)


def arrow_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, uint8 UTF-8 bytes) of a string array without copying the text; nulls read as empty."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_string(array.type):
        width = np.int32
    elif pa.types.is_large_string(array.type):
        width = np.int64
    else:
        raise TypeError(f"expected a string array, got {array.type}")
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=width)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


mix = numba.njit(cache=True, inline="always")(mix64)  # the shared mixer, compiled


@numba.njit(cache=True)
def code_buffer(offsets, extra=0):
    """Room for the code points of the longest document (a UTF-8 byte is at most one code point), plus extra."""
    return np.empty(max(int(np.max(offsets[1:] - offsets[:-1])), 1) + extra, dtype=np.uint32)


@numba.njit(cache=True, nogil=True)
def decode(data, start, end, out):
    """UTF-8 bytes data[start:end] (valid, as Arrow guarantees) into code points out[:n]; returns n."""
    n = 0
    i = start
    while i < end:
        b = np.uint32(data[i])
        if b < 0x80:
            i += 1
        elif b < 0xE0:
            b = ((b & 0x1F) << 6) | (data[i + 1] & 0x3F)
            i += 2
        elif b < 0xF0:
            b = ((b & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)
            i += 3
        else:
            b = ((b & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6) | (data[i + 3] & 0x3F)
            i += 4
        out[n] = b
        n += 1
    return n


@numba.njit(cache=True, inline="always")
def _is_control(c):
    return c <= 0x08 or c == 0x0B or c == 0x0C or (0x0E <= c <= 0x1F) or c == 0x7F or c == 0xFFFD


@numba.njit(cache=True, inline="always")
def is_invisible(c):
    """Bidi controls and invisible format characters (text/rules.py INVISIBLE), which tidying removes."""
    return c == 0x200B or c == 0x200E or c == 0x200F or (0x202A <= c <= 0x202E) or c == 0x2060 or (
        0x2066 <= c <= 0x2069) or c == 0xFEFF  # fmt: skip


@numba.njit(cache=True, inline="always")
def _is_space(c, spaces):
    return c < spaces.shape[0] and spaces[c]


@numba.njit(cache=True, nogil=True)
def _scan_raw(offsets, data, markup, spaces, controls, invisible, untidy):
    codes = code_buffer(offsets)
    for d in range(len(offsets) - 1):
        n = decode(data, offsets[d], offsets[d + 1], codes)
        count = 0
        hidden = 0
        flag = n > 0 and (_is_space(codes[0], spaces) or _is_space(codes[n - 1], spaces))
        for i in range(n):
            c = codes[i]
            if _is_control(c):
                count += 1
            elif is_invisible(c):
                hidden += 1
            elif c == 0x0D or (markup and (c == 0x3C or c == 0x26)):  # \r, <, &
                flag = True
            elif c == 0x0A:  # spaces before or after a line break, three breaks in a row
                if i > 0 and (codes[i - 1] == 0x20 or codes[i - 1] == 0x09):
                    flag = True
                if i + 1 < n and (codes[i + 1] == 0x20 or codes[i + 1] == 0x09 or codes[i + 1] == 0x3000):
                    flag = True
                if i + 2 < n and codes[i + 1] == 0x0A and codes[i + 2] == 0x0A:
                    flag = True
        controls[d] = count
        invisible[d] = hidden
        untidy[d] = flag or count > 0 or hidden > 0


@dataclass
class RawScan:
    controls: np.ndarray
    """Control characters (besides tab and line breaks) and U+FFFD per document."""
    invisible: np.ndarray
    """Bidi controls and invisible format characters per document (removed by tidying)."""
    untidy: np.ndarray
    """Whether tidying would change the document (markup, `\\r`, control characters, whitespace to fold)."""


def scan_raw(array: pa.Array, strip_markup: bool) -> RawScan:
    offsets, data = arrow_buffers(array)
    controls = np.zeros(len(offsets) - 1, dtype=np.int64)
    invisible = np.zeros(len(offsets) - 1, dtype=np.int64)
    untidy = np.zeros(len(offsets) - 1, dtype=np.bool_)
    if len(controls):
        _scan_raw(offsets, data, strip_markup, space_table(), controls, invisible, untidy)
    return RawScan(controls, invisible, untidy)


@numba.njit(cache=True)
def _mask(n):
    size = 1
    while size < 2 * n:
        size *= 2
    return np.uint64(size - 1)


@numba.njit(cache=True)
def _repeated(keys, counts, stamps, stamp, hashes, n):
    """How many of hashes[:n] have a value that occurs more than once there, counted in the open-addressing table
    keys/counts/stamps, whose live slots carry `stamp` (so the table is never cleared); and how many values."""
    mask = _mask(n)
    repeated = 0
    distinct = 0
    for i in range(n):
        h = hashes[i]
        slot = h & mask
        while stamps[slot] == stamp and keys[slot] != h:
            slot = (slot + np.uint64(1)) & mask
        if stamps[slot] != stamp:
            stamps[slot] = stamp
            keys[slot] = h
            counts[slot] = 0
            distinct += 1
        counts[slot] += 1
        repeated += 2 if counts[slot] == 2 else (1 if counts[slot] > 2 else 0)
    return repeated, distinct


@numba.njit(cache=True)
def _ngram_share(codes, n, ngram, top, hashes, table, stamp):
    """Share of the character n-grams of codes[:n] that occur there more than once (sampled in long documents)."""
    windows = n - ngram + 1
    if windows < 1:
        return 0.0
    sampled = windows >= SAMPLE_FROM
    h = np.uint64(0)
    for i in range(ngram - 1):
        h = h * FNV_PRIME + np.uint64(codes[i])
    picked = 0
    for i in range(windows):
        h = h * FNV_PRIME + np.uint64(codes[i + ngram - 1])
        m = mix(h)
        if not sampled or m % np.uint64(SAMPLE) == 0:
            hashes[picked] = m
            picked += 1
        h -= np.uint64(codes[i]) * top  # the character leaving the window
    repeated, _ = _repeated(table[0], table[1], table[2], stamp, hashes, picked)
    return repeated / picked if picked else 0.0


@numba.njit(cache=True)
def _line_share(codes, n, spaces, hashes, table, stamp):
    """Share of the non-blank lines of codes[:n] that repeat another one."""
    count = 0
    h = np.uint64(0)
    blank = True
    for i in range(n + 1):
        if i == n or codes[i] == 0x0A:
            if not blank:
                hashes[count] = mix(h)
                count += 1
            h = np.uint64(0)
            blank = True
        else:
            h = h * FNV_PRIME + np.uint64(codes[i]) + np.uint64(1)
            blank = blank and _is_space(codes[i], spaces)
    if count < 2:
        return 0.0
    _, distinct = _repeated(table[0], table[1], table[2], stamp, hashes, count)
    return 1 - distinct / count


@numba.njit(cache=True, nogil=True)
def _text_stats(offsets, data, fold, spaces, ngram, ngrams, lines, chars, cjk, ngram_shares, line_shares, keys, multi):
    codes = code_buffer(offsets)
    hashes = np.empty(len(codes) + 1, dtype=np.uint64)
    size = int(_mask(len(codes) + 1)) + 1
    table = (np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.int64), np.full(size, -1, dtype=np.int64))
    top = np.uint64(1)  # B0^(ngram-1): the weight of the character leaving a rolling window
    for _ in range(ngram - 1):
        top *= FNV_PRIME
    for d in range(len(offsets) - 1):
        n = decode(data, offsets[d], offsets[d + 1], codes)
        chars[d] = n
        ideographs = 0
        h0 = np.uint64(0)
        h1 = np.uint64(0)
        p0 = np.uint64(1)
        p1 = np.uint64(1)
        folded = np.uint64(0)
        for i in range(n):
            c = codes[i]
            if (0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF):
                ideographs += 1
            f = fold[c]
            if f == 0xFFFFFFFF:
                multi[d] = True
            elif f != 0:
                h0 += np.uint64(f) * p0
                h1 += np.uint64(f) * p1
                p0 *= FNV_PRIME
                p1 *= _B1
                folded += np.uint64(1)
        cjk[d] = ideographs
        keys[d, 0] = mix(h0 ^ folded)
        keys[d, 1] = mix(h1 ^ folded)
        if ngrams:
            ngram_shares[d] = _ngram_share(codes, n, ngram, top, hashes, table, 2 * d)
        if lines:
            line_shares[d] = _line_share(codes, n, spaces, hashes, table, 2 * d + 1)


@dataclass
class TextStats:
    chars: np.ndarray
    """Characters (code points) per document."""
    cjk: np.ndarray
    """CJK ideographs per document."""
    repeated_ngram_share: np.ndarray
    """Share of the document's character n-grams that occur in it more than once (0 when not asked for)."""
    repeated_line_share: np.ndarray
    """Share of the document's non-blank lines that repeat another one (0 when not asked for)."""
    exact_keys: np.ndarray
    """(documents, 2) uint64: equal for texts equal after folding (see fold_table)."""


def text_stats(array: pa.Array, ngram: int = 10, ngrams: bool = True, lines: bool = True) -> TextStats:
    offsets, data = arrow_buffers(array)
    count = len(offsets) - 1
    stats = TextStats(
        np.zeros(count, np.int64),
        np.zeros(count, np.int64),
        np.zeros(count),
        np.zeros(count),
        np.zeros((count, 2), np.uint64),
    )
    if not count:
        return stats
    multi = np.zeros(count, dtype=np.bool_)
    outputs = (stats.chars, stats.cjk, stats.repeated_ngram_share, stats.repeated_line_share, stats.exact_keys, multi)
    _text_stats(offsets, data, fold_table(), space_table(), ngram, ngrams, lines, *outputs)
    rare = np.flatnonzero(multi)
    if len(rare):  # characters that fold to several: fold in Python, then key the folded text
        texts = array.take(pa.array(rare)).to_pylist()
        folded = pa.array([fold_text(t or "") for t in texts], pa.string())
        stats.exact_keys[rare] = text_stats(folded, ngrams=False, lines=False).exact_keys
    return stats


@numba.njit(cache=True, nogil=True)
def _count_codepoints(offsets, data, counts):
    codes = code_buffer(offsets)
    for d in range(len(offsets) - 1):
        for i in range(decode(data, offsets[d], offsets[d + 1], codes)):
            counts[codes[i]] += 1


def count_codepoints(array: pa.Array, counts: np.ndarray) -> None:
    """Add how often each code point occurs in `array` to counts (int64, one slot per code point)."""
    offsets, data = arrow_buffers(array)
    if len(offsets) > 1:
        _count_codepoints(offsets, data, counts)
