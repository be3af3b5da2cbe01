import itertools
import subprocess
import sys

import duckdb
import pytest

import tasks.corpus.formats.lines as lines_module
from tasks.corpus.formats.lines import LineStats, read_lines, split_lines

GOOD = '{"title": "人工智能", "star": 5}'


def write(tmp_path, data: bytes):
    path = tmp_path / "corpus.json"
    path.write_bytes(data)
    return path


def collect(path, **kwargs):
    stats = LineStats()
    batches = list(read_lines(path, stats, **kwargs))
    numbers = [n for b in batches for n in b.table.column("line_no").to_pylist()]
    texts = [t for b in batches for t in b.table.column("line").to_pylist()]
    rejected = [r for b in batches for r in b.rejected]
    return stats, numbers, texts, rejected


@pytest.mark.parametrize("block", [7, 1 << 24])  # tiny blocks cut lines and characters anywhere
def test_every_line_keeps_its_number_and_bad_ones_are_set_aside(tmp_path, monkeypatch, block):
    monkeypatch.setattr(lines_module, "BLOCK", block)
    data = (
        b"\xef\xbb\xbf" + GOOD.encode() + b"\n"  # 1: after a byte-order mark
        b"\n"  # 2: blank
        b"{broken json\n"  # 3: kept here, refused by the JSON stage
        b'{"title": "\xff\xfe"}\n'  # 4: not UTF-8
        + GOOD.encode()
        + b"\r\n"  # 5: Windows line end
        + b'{"title": "cut'  # 6: no final newline
    )
    stats, numbers, texts, rejected = collect(write(tmp_path, data))
    assert numbers == [1, 3, 5, 6]
    assert texts[0] == GOOD and texts[1] == "{broken json" and texts[2] == GOOD + "\r"
    assert [(n, reason) for n, reason, _ in rejected] == [(4, "invalid_utf8")]
    assert (stats.lines, stats.blank, stats.invalid_utf8, stats.bom, stats.unterminated_last_line) == (6, 1, 1, 1, 6)


def test_duckdb_reads_the_batches_with_their_line_numbers(tmp_path):
    path = write(tmp_path, (GOOD + "\n{oops\n" + GOOD + "\n").encode())
    numbered = next(read_lines(path)).table  # noqa: F841 - DuckDB reads the local Arrow table by name
    broken = duckdb.sql("SELECT line_no FROM numbered WHERE NOT json_valid(line)").fetchall()
    titles = duckdb.sql("SELECT line_no, line->>'$.title' FROM numbered WHERE json_valid(line)").fetchall()
    assert broken == [(2,)] and titles == [(1, "人工智能"), (3, "人工智能")]


@pytest.mark.parametrize("target", [1, 50, 10_000])
def test_spans_number_lines_as_the_whole_file_does(tmp_path, target):
    rows = [GOOD, "", "{broken", GOOD + " ", "x" * 120, GOOD]
    path = write(tmp_path, ("\n".join(rows) + "\n").encode())
    whole = collect(path)
    spans = split_lines(path, target)
    parts = [collect(path, span=span) for span in spans]
    assert spans[0].start == 0 and spans[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    assert [n for part in parts for n in part[1]] == whole[1] == [1, 3, 4, 5, 6]
    assert [t for part in parts for t in part[2]] == whole[2]
    assert sum(part[0].lines for part in parts) == whole[0].lines == 6


@pytest.mark.parametrize("block", [7, 64, 1 << 24])
def test_lines_past_the_limit_are_set_aside_unread_with_their_numbers(tmp_path, monkeypatch, block):
    monkeypatch.setattr(lines_module, "BLOCK", block)
    long = '{"title": "' + "长" * 100 + '"}'  # 311 bytes
    data = f"{GOOD}\n{long}\n{GOOD}\n{long}\n{GOOD}\n{long}".encode()  # the last one unterminated
    stats, numbers, texts, rejected = collect(write(tmp_path, data), max_line_bytes=100)
    assert numbers == [1, 3, 5] and texts == [GOOD] * 3
    assert [(n, reason) for n, reason, _ in rejected] == [(2, "line_too_long"), (4, "line_too_long"),
                                                          (6, "line_too_long")]  # fmt: skip
    assert all(long.encode().startswith(raw) and raw for _, _, raw in rejected)
    assert stats.lines == 6 and stats.unterminated_last_line == 6


def test_a_line_of_200_megabytes_is_skipped_in_bounded_memory(tmp_path):
    path = tmp_path / "one-line.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"content": "')
        for _ in range(200):
            fh.write("长".encode() * ((1 << 20) // 3))
        fh.write(b'"}\n' + GOOD.encode() + b"\n")
    script = (  # the peak is VmHWM: ru_maxrss would start from the pytest process it was forked from
        "import re, sys; from pathlib import Path; from tasks.corpus.formats.lines import read_lines\n"
        "batches = list(read_lines(Path(sys.argv[1]), max_line_bytes=1 << 20))\n"
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)) // 1024\n"
        "print([r[:2] for b in batches for r in b.rejected], sum(b.table.num_rows for b in batches), peak)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    rejected, kept, peak_mb = out.stdout.rsplit(" ", 2)
    assert rejected == "[(1, 'line_too_long')]" and kept == "1"
    assert int(peak_mb) < 400, f"{peak_mb} MB to read a file of one 200 MB line"
