"""Stage 2, ingest: read a corpus' raw files, in any format, into Parquet parts of one schema in corpus/.

    corpus = ingest_corpus(config, "zh", "webtext2019zh", raw)  # StageResult of corpus/webtext2019zh-<fp>/
    counts = ingest_files(files, "webtext2019zh", IngestOptions(format="webtext2019zh"), out_dir, workers=2)
    # out_dir/part-00000.parquet ...          zstd, row groups of ROW_GROUP_ROWS rows
    # out_dir/quarantine/part-00000.jsonl     one line per unusable record: reason, file, line, raw text
    # counts: lines, rows, dropped_<reason>, bom, blank_lines, bytes

Schema: doc_id (stable: hash of corpus, file name and line), corpus, text, title, source_file, source_line
(NULL for one-document-per-file formats), meta (JSON with the corpus' own fields).

The work is cut into units of about UNIT_BYTES (a big JSON-lines file into line spans, small files into groups),
run in worker processes, one Parquet part per unit. JSON lines are numbered in Python (formats/lines.py) and shaped
by DuckDB in batches (formats/jsonl.py), so memory stays bounded whatever the file size; other formats come from
formats/readers.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task

from tasks.corpus.formats.jsonl import JSON_FORMATS, FieldsConfig, json_format, shape_sql
from tasks.corpus.formats.lines import LineSpan, LineStats, read_lines, split_lines
from tasks.corpus.formats.poetry import read_poetry
from tasks.corpus.formats.readers import Doc, meta_json, read_openwebtext, read_parquet, read_text, read_thucnews
from tasks.corpus.stage1_raw import RawFiles
from tasks.parallel import DuckDBLimits, Progress, pool_for, run_jobs
from tasks.stage import PARQUET, ROW_GROUP_ROWS, StageResult, fingerprint, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("corpus", pa.string()),
        ("text", pa.string()),
        ("title", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("meta", pa.string()),
    ]
)
UNIT_BYTES = 64 << 20


@dataclass(frozen=True)
class IngestOptions:
    format: str
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    split: str = "file"
    duckdb: DuckDBLimits = field(default_factory=DuckDBLimits)
    max_line_bytes: int = 0
    """A line (or a one-document file) longer than this is quarantined unread (0: no limit)."""


def max_line_bytes(max_chars: int) -> int:
    """The longest line (in bytes) that may hold a document of `max_chars` characters: 8 bytes a character (UTF-8
    takes at most 4, a JSON escape 6 for most, 12 for a pair) and a MiB for the record's other fields; 0 (no
    limit) for 0."""
    return 8 * max_chars + (1 << 20) if max_chars else 0


@dataclass(frozen=True)
class Piece:
    path: Path
    name: str
    span: LineSpan | None = None


def plan_units(files: list[tuple[Path, str]], fmt: str, unit_bytes: int = UNIT_BYTES) -> list[list[Piece]]:
    """Group files (and spans of big JSON-lines files) into units of about `unit_bytes`."""
    units: list[list[Piece]] = []
    group: list[Piece] = []
    size = 0
    for path, name in files:
        length = path.stat().st_size
        if fmt in JSON_FORMATS and length > unit_bytes:
            units.extend([Piece(path, name, span)] for span in split_lines(path, unit_bytes))
            continue
        group.append(Piece(path, name))
        size += length
        if size >= unit_bytes:
            units.append(group)
            group, size = [], 0
    if group:
        units.append(group)
    return units


class Quarantine:
    """Counts dropped records by reason and writes each, with where it came from, to a JSON-lines file."""

    def __init__(self, path: Path, counts: Counter):
        self.path, self.counts, self.fh = path, counts, None

    def __call__(self, reason: str, source: str, line: int | None, raw: str) -> None:
        self.counts[f"dropped_{reason}"] += 1
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        record = {"reason": reason, "file": source, "line": line, "raw": raw[:1000]}
        self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def doc_id(corpus: str, source: str, line: int | None) -> str:
    key = f"{corpus}\x1f{source}\x1f{'' if line is None else line}"
    return hashlib.md5(key.encode()).hexdigest()[:16]


def docs_table(docs: list[Doc], corpus: str) -> pa.Table:
    return pa.table(
        {
            "doc_id": [doc_id(corpus, d.source, d.line) for d in docs],
            "corpus": [corpus] * len(docs),
            "text": [d.text for d in docs],
            "title": [d.title for d in docs],
            "source_file": [d.source for d in docs],
            "source_line": pa.array([d.line for d in docs], pa.int64()),
            "meta": [meta_json(d.meta) for d in docs],
        },
        schema=SCHEMA,
    )


def _json_tables(pieces: list[Piece], corpus: str, opts: IngestOptions, bad: Quarantine) -> Iterator[pa.Table]:
    fmt = json_format(opts.format, opts.fields)
    con = opts.duckdb.connect()
    for piece in pieces:
        sql = shape_sql(fmt, corpus, piece.name)
        stats = LineStats()
        for batch in read_lines(piece.path, stats, piece.span, opts.max_line_bytes):
            for line_no, reason, raw in batch.rejected:
                bad(reason, piece.name, line_no, raw.decode("utf-8", errors="replace"))
            numbered = batch.table  # noqa: F841 - read by name in the SQL
            rows = con.sql(sql, params={"last": stats.unterminated_last_line or -1}).to_arrow_table()
            failed = rows.filter(rows.column("reason").is_valid())
            if failed.num_rows:
                raw = dict(zip(*(batch.table.column(c).to_pylist() for c in ("line_no", "line")), strict=True))
                reasons = failed.column("reason").to_pylist()
                for line_no, reason in zip(failed.column("source_line").to_pylist(), reasons, strict=True):
                    bad(reason, piece.name, line_no, raw[line_no])
            yield rows.filter(rows.column("reason").is_null()).select(SCHEMA.names).cast(SCHEMA)
        bad.counts["lines"] += stats.lines
        bad.counts["blank_lines"] += stats.blank
        bad.counts["bom"] += stats.bom


def _other_tables(pieces: list[Piece], corpus: str, opts: IngestOptions, bad: Quarantine) -> Iterator[pa.Table]:
    files = [(p.path, p.name) for p in pieces]
    if opts.format == "thucnews":
        batches = read_thucnews(files, bad, opts.max_line_bytes)
    elif opts.format == "chinese-poetry":
        batches = read_poetry(files, bad)
    elif opts.format == "text":
        batches = read_text(files, opts.split, bad, opts.max_line_bytes)
    elif opts.format == "parquet":
        batches = (b for path, name in files for b in read_parquet(path, name, opts.fields, bad))
    elif opts.format == "openwebtext":
        batches = read_openwebtext(files, bad)
    else:
        raise ValueError(f"unknown format {opts.format!r}")
    for docs in batches:
        yield docs_table(docs, corpus)


def ingest_unit(index: int, pieces: list[Piece], corpus: str, opts: IngestOptions, out_dir: Path) -> Counter:
    """Write one unit to out_dir/part-<index>.parquet (and its quarantine file); returns its counts."""
    counts: Counter = Counter()
    bad = Quarantine(out_dir / "quarantine" / f"part-{index:05d}.jsonl", counts)
    part = out_dir / f"part-{index:05d}.parquet"
    tables = _json_tables if opts.format in JSON_FORMATS else _other_tables
    try:
        with pq.ParquetWriter(part, SCHEMA, **PARQUET) as writer:
            for table in tables(pieces, corpus, opts, bad):
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                counts["rows"] += table.num_rows
    finally:
        bad.close()
    if not counts["rows"]:
        part.unlink()
    counts["bytes"] += sum((p.span.end - p.span.start) if p.span else p.path.stat().st_size for p in pieces)
    if opts.format not in JSON_FORMATS:
        counts["documents_read"] += counts["rows"] + sum(v for k, v in counts.items() if k.startswith("dropped_"))
    return counts


def ingest_files(
    files: list[tuple[Path, str]], corpus: str, opts: IngestOptions, out_dir: Path, workers: int = 1
) -> Counter:
    """Ingest every file of a corpus into out_dir, in `workers` processes; returns the summed counts."""
    units = plan_units(files, opts.format)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p, _ in files)
    counts: Counter = Counter()
    progress = Progress(f"ingest {corpus}")
    jobs = [(i, pieces, corpus, opts, out_dir) for i, pieces in enumerate(units)]
    for done, (_, unit_counts) in enumerate(run_jobs(ingest_unit, jobs, workers, pool_for(total)), 1):
        counts += unit_counts
        mb = counts["bytes"] / 1e6
        progress.report(
            f"{done}/{len(units)} units, {mb:.0f}/{total / 1e6:.0f} MB, {progress.rate(mb):.1f} MB/s, "
            f"{counts['rows']:,} rows"
        )
    return counts


def ingest_corpus(config: PipelinesConfig, dataset: str, corpus: str, raw: RawFiles) -> StageResult:
    """The corpus' raw files in Parquet parts of the one schema: corpus/<corpus>-<fp>/. A line too long for the
    dataset's `max_chars` of the corpus is quarantined unread."""
    cfg = config.corpora[corpus]
    line_bytes = max_line_bytes(config.quality_rules(dataset, corpus).max_chars)
    settings = {"format": cfg.format, "fields": dataclasses.asdict(cfg.fields), "split": cfg.split}
    settings |= {"max_line_bytes": line_bytes} if line_bytes else {}
    fp = fingerprint("corpus", settings, raw.fingerprints)
    options = IngestOptions(cfg.format, cfg.fields, cfg.split, config.duckdb_limits, line_bytes)

    def build(tmp: Path):
        counts = ingest_files(raw.files, corpus, options, tmp, config.worker_count)
        return dict(counts), {"settings": settings, "inputs": raw.fingerprints, "files": len(raw.files)}

    return reuse_or_build(config.root, "corpus", corpus, fp, build)


ingest_task = task(ingest_corpus, name="ingest", task_run_name="ingest-{corpus}")
