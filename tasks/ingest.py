"""Ingest JSON-lines corpora into one Parquet schema, quarantining every record that cannot be used.

    counts = ingest_jsonl(Path("web_text_zh_valid.json"), "webtext2019zh", out=Path("part-0.parquet"),
                          quarantine=Path("quarantine.jsonl"), source_name="web_text_zh_valid.json")

Schema of every corpus: doc_id (stable hash of corpus, file and line), corpus, text, title, source_file,
source_line, meta (JSON with the corpus' own fields). DuckDB's JSON functions shape each batch of numbered lines
(from tasks/lines.py); rows that fail go to the quarantine file with their reason, file and line, and are counted.

Corpus shaping: wiki2019zh drops the title line that opens `text`; news2016zh trains on `content` only (`desc`
repeats its opening, so it goes to meta); baike2018qa turns `\\r` into newlines; a webtext2019zh row is one answer,
its question's title and desc go to meta; translation2019zh takes the side written in Chinese characters, whichever
field holds it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.lines import LineStats, read_lines

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
ROW_GROUP_ROWS = 50_000
BATCH_LINES = 20_000  # lines shaped per DuckDB query: bounds memory whatever the file size


@dataclass(frozen=True)
class JsonFormat:
    """How one corpus' JSON object becomes a row: field types to check, and SQL over `j` for each column."""

    strings: tuple[str, ...]
    text: str
    title: str
    meta: str
    integers: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()  # an integer or a string, stored as a string


def _s(field: str) -> str:
    return f"(j->>'$.{field}')"


def _cjk_count(sql: str) -> str:
    return f"length(regexp_replace({sql}, '[^\\x{{4e00}}-\\x{{9fff}}\\x{{3400}}-\\x{{4dbf}}]', '', 'g'))"


# translation2019zh: some rows hold the Chinese sentence under `english`; tell the sides apart by script
_SWAPPED = f"({_cjk_count(_s('english'))} > {_cjk_count(_s('chinese'))})"

FORMATS = {
    "wiki2019zh": JsonFormat(
        strings=("title", "text", "url"),
        ids=("id",),
        text=f"CASE WHEN starts_with({_s('text')}, {_s('title')} || chr(10)) "
        f"THEN ltrim(substr({_s('text')}, length({_s('title')}) + 2), chr(10)) ELSE {_s('text')} END",
        title=_s("title"),
        meta=f"json_object('id', {_s('id')}, 'url', {_s('url')})",
    ),
    "news2016zh": JsonFormat(
        strings=("title", "content", "desc", "keywords", "source", "time"),
        ids=("news_id",),
        text=_s("content"),
        title=_s("title"),
        meta=f"json_object('news_id', {_s('news_id')}, 'keywords', {_s('keywords')}, 'source', {_s('source')}, "
        f"'time', {_s('time')}, 'desc', {_s('desc')})",
    ),
    "baike2018qa": JsonFormat(
        strings=("title", "desc", "answer", "category"),
        ids=("qid",),
        text=f"replace(replace({_s('answer')}, chr(13) || chr(10), chr(10)), chr(13), chr(10))",
        title=_s("title"),
        meta=f"json_object('qid', {_s('qid')}, 'category', {_s('category')}, "
        f"'desc', CASE WHEN {_s('desc')} IN ('', {_s('title')}) THEN NULL ELSE {_s('desc')} END)",
    ),
    "webtext2019zh": JsonFormat(
        strings=("title", "desc", "topic", "content", "answerer_tags"),
        integers=("star",),
        ids=("qid", "answer_id"),
        text=_s("content"),
        title="NULL",
        meta=f"json_object('qid', {_s('qid')}, 'title', {_s('title')}, 'desc', {_s('desc')}, "
        f"'topic', {_s('topic')}, 'star', (j->'$.star')::BIGINT, 'answer_id', {_s('answer_id')}, "
        f"'answerer_tags', {_s('answerer_tags')})",
    ),
    "translation2019zh": JsonFormat(
        strings=("english", "chinese"),
        text=f"CASE WHEN {_SWAPPED} THEN {_s('english')} ELSE {_s('chinese')} END",
        title="NULL",
        meta=f"json_object('swapped', {_SWAPPED}, "
        f"'english', CASE WHEN {_SWAPPED} THEN {_s('chinese')} ELSE {_s('english')} END)",
    ),
}


def _shape_sql(fmt: JsonFormat, corpus: str, source: str) -> str:
    """One row per input line: the unified columns, or a reason why the line is quarantined."""
    checks = [
        f"WHEN json_type(j->'$.{f}') NOT IN ('VARCHAR', 'NULL') THEN 'wrong_type:{f}'" for f in fmt.strings
    ] + [
        f"WHEN json_type(j->'$.{f}') NOT IN ('UBIGINT', 'BIGINT', 'NULL') THEN 'wrong_type:{f}'"
        for f in fmt.integers
    ] + [
        f"WHEN json_type(j->'$.{f}') NOT IN ('UBIGINT', 'BIGINT', 'VARCHAR', 'NULL') THEN 'wrong_type:{f}'"
        for f in fmt.ids
    ]  # fmt: skip
    quoted_corpus, quoted_source = corpus.replace("'", "''"), source.replace("'", "''")
    return f"""
    WITH parsed AS (
        SELECT line_no, line, CASE WHEN json_valid(line) THEN line::JSON END AS j FROM numbered
    ), shaped AS (
        SELECT line_no, line, j,
            CASE WHEN j IS NULL THEN CASE WHEN line_no = $last THEN 'truncated_last_line' ELSE 'broken_json' END
                 WHEN json_type(j) <> 'OBJECT' THEN 'not_an_object'
                 {" ".join(checks)}
            END AS reason
        FROM parsed
    ), projected AS (
        SELECT line_no, line, reason,
            CASE WHEN reason IS NULL THEN {fmt.text} END AS text,
            CASE WHEN reason IS NULL THEN {fmt.title} END AS title,
            CASE WHEN reason IS NULL THEN {fmt.meta} END AS meta
        FROM shaped
    )
    SELECT
        left(md5('{quoted_corpus}' || chr(31) || '{quoted_source}' || chr(31) || line_no::VARCHAR), 16) AS doc_id,
        '{quoted_corpus}' AS corpus, text, title, '{quoted_source}' AS source_file, line_no AS source_line,
        meta::VARCHAR AS meta,
        coalesce(reason, CASE WHEN text IS NULL OR trim(text) = '' THEN 'empty_text' END) AS reason,
        line
    FROM projected ORDER BY line_no
    """


def ingest_jsonl(
    path: Path, corpus_format: str, out: Path, quarantine: Path, source_name: str, corpus: str | None = None
) -> Counter:
    """Read one JSON-lines file into `out` (Parquet, zstd); returns counts: rows, lines, and one per reason."""
    if corpus_format not in FORMATS:
        raise ValueError(f"unknown JSON-lines format {corpus_format!r}; known: {', '.join(FORMATS)}")
    corpus = corpus or corpus_format
    sql = _shape_sql(FORMATS[corpus_format], corpus, source_name)
    stats, counts = LineStats(), Counter()
    con = duckdb.connect()
    with pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer, open(quarantine, "a", encoding="utf-8") as bad:
        for batch in read_lines(path, stats, batch_lines=BATCH_LINES):
            for line_no, reason, raw in batch.rejected:
                _quarantine(bad, counts, reason, source_name, line_no, raw.decode("utf-8", errors="replace"))
            numbered = batch.table  # noqa: F841 - read by name in the SQL
            last = stats.unterminated_last_line or -1
            rows = con.sql(sql, params={"last": last}).to_arrow_table()
            failed = rows.filter(rows.column("reason").is_valid())
            columns = (failed.column(c).to_pylist() for c in ("source_line", "reason", "line"))
            for line_no, reason, line in zip(*columns, strict=True):
                _quarantine(bad, counts, reason, source_name, line_no, line)
            good = rows.filter(rows.column("reason").is_null()).select(SCHEMA.names).cast(SCHEMA)
            writer.write_table(good, row_group_size=ROW_GROUP_ROWS)
            counts["rows"] += good.num_rows
    counts["lines"] += stats.lines
    counts["blank_lines"] += stats.blank
    counts["bom"] += stats.bom
    return counts


def _quarantine(fh, counts: Counter, reason: str, source: str, line_no: int, raw: str) -> None:
    counts[f"dropped_{reason}"] += 1
    fh.write(json.dumps({"reason": reason, "file": source, "line": line_no, "raw": raw[:1000]}, ensure_ascii=False))
    fh.write("\n")
