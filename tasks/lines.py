"""Split a JSON-lines file into numbered lines for DuckDB, setting aside lines that are not UTF-8.

    for batch in read_lines(Path("web_text_zh_valid.json")):
        batch.table          # Arrow table: line_no (int64, 1-based), line (string); blank lines left out
        batch.rejected       # [(line_no, reason, first bytes)] with reason "invalid_utf8"
    counts["bom"], ...       # see LineStats

DuckDB's JSON and CSV scans do not report the line a row came from, and its `ignore_errors` drops broken rows
without a trace; reading the bytes here keeps the file and line of every row, so every dropped record can be
counted and quarantined where it came from. A UTF-8 byte-order mark at the start of the file is removed and
counted; a last line without a final newline is reported, so that a parse failure there reads as truncation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

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


@dataclass
class LineBatch:
    table: pa.Table
    rejected: list[tuple[int, str, bytes]] = field(default_factory=list)


def _batch(numbers: list[int], lines: list[str], rejected: list) -> LineBatch:
    table = pa.table({"line_no": pa.array(numbers, pa.int64()), "line": pa.array(lines, pa.string())})
    return LineBatch(table, rejected)


def read_lines(path: Path, stats: LineStats | None = None, batch_lines: int = 200_000) -> Iterator[LineBatch]:
    """Numbered UTF-8 lines of `path` in Arrow batches; `stats` (if given) is filled in as it goes."""
    stats = stats if stats is not None else LineStats()
    numbers: list[int] = []
    lines: list[str] = []
    rejected: list[tuple[int, str, bytes]] = []
    line_no = 0
    tail = b""
    with open(path, "rb") as fh:
        first = True
        while block := fh.read(BLOCK):
            if first and block.startswith(BOM):
                block, stats.bom = block[len(BOM) :], 1
            first = False
            chunk = tail + block
            cut = chunk.rfind(b"\n") + 1
            body, tail = chunk[:cut], chunk[cut:]
            try:  # the common case: the whole block is valid UTF-8, split it as text
                pieces = body.decode("utf-8").split("\n")[:-1]
            except UnicodeDecodeError:
                pieces = body.split(b"\n")[:-1]
            for raw in pieces:
                line_no += 1
                if not raw.strip():
                    stats.blank += 1
                    continue
                if isinstance(raw, bytes):
                    try:
                        raw = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        stats.invalid_utf8 += 1
                        rejected.append((line_no, "invalid_utf8", raw[:RAW_PREVIEW]))
                        continue
                lines.append(raw)
                numbers.append(line_no)
            if len(lines) >= batch_lines:
                yield _batch(numbers, lines, rejected)
                numbers, lines, rejected = [], [], []
    if tail.strip():
        line_no += 1
        stats.unterminated_last_line = line_no
        try:
            lines.append(tail.decode("utf-8"))
            numbers.append(line_no)
        except UnicodeDecodeError:
            stats.invalid_utf8 += 1
            rejected.append((line_no, "invalid_utf8", tail[:RAW_PREVIEW]))
    stats.lines = line_no
    if lines or rejected:
        yield _batch(numbers, lines, rejected)
