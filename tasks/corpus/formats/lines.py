"""Split a JSON-lines file into numbered lines for DuckDB, setting aside lines that are not UTF-8.

    for batch in read_lines(Path("web_text_zh_valid.json"), max_line_bytes=1 << 20):   # or a span: split_lines
        batch.table          # Arrow table: line_no (int64, 1-based), line (string); blank lines left out
        batch.rejected       # [(line_no, reason, first bytes)]: reason "invalid_utf8" or "line_too_long"
    counts["bom"], ...       # see LineStats

DuckDB's JSON and CSV scans do not report the line a row came from, and its `ignore_errors` drops broken rows
without a trace; reading the bytes here keeps the file and line of every row, so every dropped record can be
counted and quarantined where it came from. A UTF-8 byte-order mark at the start of the file is removed and
counted; a last line without a final newline is reported, so that a parse failure there reads as truncation. A line
longer than `max_line_bytes` is set aside unread, holding only its first bytes for the quarantine: memory stays
bounded by the block size and that limit whatever the file holds (a 200 MB line is skipped, not parsed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BOM = b"\xef\xbb\xbf"
BLOCK = 1 << 24
RAW_PREVIEW = 200


@dataclass
class LineStats:
    lines: int = 0
    blank: int = 0
    invalid_utf8: int = 0
    bom: int = 0
    unterminated_last_line: int | None = None
    """Number of the last line when the file does not end with a newline (often a cut-off download)."""


@dataclass(frozen=True)
class LineSpan:
    """Bytes [start, end) of a file, starting at a line start; `first_line` is the number of its first line."""

    start: int
    end: int
    first_line: int


def split_lines(path: Path, target_bytes: int) -> list[LineSpan]:
    """Cut a file into spans of about `target_bytes` at line ends, each knowing the number of its first line."""
    size = path.stat().st_size
    spans, start, first_line = [], 0, 1
    with open(path, "rb") as fh:
        while start < size:
            fh.seek(min(start + target_bytes, size))
            end = fh.tell() + len(fh.readline()) if start + target_bytes < size else size
            fh.seek(start)
            newlines, left = 0, end - start
            while left > 0 and (block := fh.read(min(BLOCK, left))):
                newlines, left = newlines + block.count(b"\n"), left - len(block)
            spans.append(LineSpan(start, end, first_line))
            start, first_line = end, first_line + newlines
    return spans


@dataclass
class LineBatch:
    table: pa.Table
    rejected: list[tuple[int, str, bytes]] = field(default_factory=list)


def _split_valid(body: bytes, line_no: int, stats: LineStats) -> pa.Table:
    """Number and split a block of whole lines (ending in a newline) in Arrow, dropping blank ones.

    Raises pa.ArrowInvalid when the block is not valid UTF-8."""
    offsets = pa.array([0, len(body)], pa.int32()).buffers()[1]
    block = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(body)])
    pieces = pc.split_pattern(block, pattern=b"\n").flatten()
    lines = pieces.slice(0, len(pieces) - 1).cast(pa.string())
    numbers = pa.array(np.arange(line_no + 1, line_no + 1 + len(lines), dtype=np.int64))
    blank = pc.match_substring_regex(lines, r"^\s*$")
    blanks = pc.sum(blank).as_py() or 0
    if blanks:
        stats.blank += blanks
        keep = pc.invert(blank)
        lines, numbers = lines.filter(keep), numbers.filter(keep)
    return pa.table({"line_no": numbers, "line": lines})


def _drop_long(table: pa.Table, max_line_bytes: int, rejected: list) -> pa.Table:
    """The lines of `table` of at most `max_line_bytes` bytes; the others go to `rejected`."""
    long = pc.greater(pc.binary_length(table.column("line")), max_line_bytes)
    if not pc.any(long).as_py():
        return table
    for line_no, line in zip(*table.filter(long).to_pydict().values(), strict=True):
        rejected.append((line_no, "line_too_long", line.encode("utf-8")[:RAW_PREVIEW]))
    return table.filter(pc.invert(long))


EMPTY = pa.table({"line_no": pa.array([], pa.int64()), "line": pa.array([], pa.string())})


def _split_invalid(body: bytes, line_no: int, stats: LineStats, rejected: list) -> pa.Table:
    """The slow path for a block holding invalid UTF-8: line by line, setting the bad lines aside."""
    numbers, lines = [], []
    for raw in body.split(b"\n")[:-1]:
        line_no += 1
        if not raw.strip():
            stats.blank += 1
            continue
        try:
            lines.append(raw.decode("utf-8"))
            numbers.append(line_no)
        except UnicodeDecodeError:
            stats.invalid_utf8 += 1
            rejected.append((line_no, "invalid_utf8", raw[:RAW_PREVIEW]))
    return pa.table({"line_no": pa.array(numbers, pa.int64()), "line": pa.array(lines, pa.string())})


def read_lines(
    path: Path, stats: LineStats | None = None, span: LineSpan | None = None, max_line_bytes: int = 0
) -> Iterator[LineBatch]:
    """Numbered UTF-8 lines of `path` (or of one span of it) in Arrow batches of about BLOCK bytes; lines longer
    than `max_line_bytes` (0: no limit) are rejected unread.

    `stats` (if given) is filled in as it goes."""
    stats = stats if stats is not None else LineStats()
    span = span or LineSpan(0, path.stat().st_size, 1)
    line_no = span.first_line - 1
    tail = b""
    skipping: bytes | None = None  # the first bytes of a line too long to read, while its end is sought
    left = span.end - span.start
    with open(path, "rb") as fh:
        fh.seek(span.start)
        first = span.start == 0
        while left > 0 and (block := fh.read(min(BLOCK, left))):
            left -= len(block)
            if first and block.startswith(BOM):
                block, stats.bom = block[len(BOM) :], 1
            first = False
            rejected: list[tuple[int, str, bytes]] = []
            if skipping is not None:
                end = block.find(b"\n")
                if end < 0:
                    continue
                line_no += 1
                rejected.append((line_no, "line_too_long", skipping))
                skipping, block = None, block[end + 1 :]
            chunk = tail + block
            cut = chunk.rfind(b"\n") + 1
            body, tail = chunk[:cut], chunk[cut:]
            if max_line_bytes and len(tail) > max_line_bytes:
                skipping, tail = tail[:RAW_PREVIEW], b""
            if not body:
                if rejected:
                    yield LineBatch(EMPTY, rejected)
                continue
            try:  # the common case: the whole block is valid UTF-8, split it in Arrow
                table = _split_valid(body, line_no, stats)
            except pa.ArrowInvalid:
                table = _split_invalid(body, line_no, stats, rejected)
            line_no += body.count(b"\n")
            yield LineBatch(_drop_long(table, max_line_bytes, rejected) if max_line_bytes else table, rejected)
    if skipping is not None:
        line_no += 1
        stats.unterminated_last_line = line_no
        yield LineBatch(EMPTY, [(line_no, "line_too_long", skipping)])
    elif tail.strip():
        rejected = []
        table = _split_invalid(tail + b"\n", line_no, stats, rejected)
        line_no += 1
        stats.unterminated_last_line = line_no
        yield LineBatch(table, rejected)
    stats.lines = line_no - span.first_line + 1
