"""Stage 3, filter: per corpus, its SQL `where` filter (`corpora.<name>.where`), then the quality rules of
text/rules.py (`datasets.<name>.filter`), from corpus/ into filtered/.

    filtered = filter_corpus(config, "zh", corpus)    # StageResult of filtered/webtext2019zh-<fp>/
    counts = filter_parts(parts, "webtext2019zh", where="star >= 3", meta_keys=["star"], rules=rules_for("qa"),
                          out_dir=out, workers=2)
    # out/part-00000.parquet ...    kept documents: the corpus schema with tidied text, plus chars and exact_key
    # out/dropped/part-00000.parquet  doc_id, source_file, source_line, reason of every dropped document
    # counts: rows_in, rows, dropped_where, dropped_too_short, ...

The filter runs in DuckDB over each Parquet part, with the corpus' metadata fields as columns (webtext's `star`,
baike's `category`, ...), so `where` reads like `star >= 3 AND topic <> '广告'`: one expression, checked and
rewritten by text/where.py, run on a connection that reads that part and nothing else. Parts are filtered in worker
threads (the work happens in DuckDB, Arrow and compiled kernels, outside the GIL); memory stays bounded by one
batch per thread.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task

from gpt.config import ConfigError
from tasks.corpus.formats.jsonl import META_TYPES
from tasks.corpus.settings import QualityRules
from tasks.corpus.stage2_ingest import SCHEMA
from tasks.corpus.text.rules import apply_rules
from tasks.corpus.text.where import where_expression
from tasks.parallel import DuckDBLimits, Progress, run_jobs
from tasks.stage import PARQUET, StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

DROPPED_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("source_file", pa.string()), ("source_line", pa.int64()), ("reason", pa.string())]
)
BATCH_ROWS = 10_000


def filter_sql(source: str, where: str, meta_keys: list[str]) -> str:
    """SQL over `source` adding the meta keys as columns and a `kept` flag for the `where` condition."""
    columns = ", ".join(
        f"TRY_CAST(json_extract_string(meta, '$.{key}') AS {META_TYPES.get(key, 'VARCHAR')}) AS \"{key}\""
        for key in meta_keys
        if key not in SCHEMA.names
    )
    condition = f"coalesce(({where}), false)" if where.strip() else "true"
    return f"""
    SELECT {", ".join(SCHEMA.names)}, {condition} AS kept
    FROM (SELECT *{", " + columns if columns else ""}, length(text) AS chars FROM {source})
    """


def check_where(where: str, meta_keys: list[str], key_path: str) -> str:
    """`where` as the filter runs it (text/where.py); a ConfigError naming `key_path` when it is not one allowed
    expression over the corpus' columns. Touches no file."""
    expression = where_expression(where, key_path)
    empty = "(SELECT * FROM (VALUES ('', '', '', '', '', 0::BIGINT, '{}')) t(" + ", ".join(SCHEMA.names) + "))"
    try:
        DuckDBLimits().connect(reads=[]).sql(f"EXPLAIN {filter_sql(empty, expression, meta_keys)}")
    except duckdb.Error as e:
        columns = ", ".join([*SCHEMA.names, "chars", *meta_keys])
        first = str(e).splitlines()[0]
        raise ConfigError(f"{key_path}: not a valid filter: {first}. Columns you can use: {columns}") from e
    return expression


def check_filters(config: PipelinesConfig, corpora: list[str]) -> None:
    """Each corpus' `where` parsed by DuckDB, before a build downloads anything (loading pipelines.yaml checked its
    words only: settings.check_where_words)."""
    for name in corpora:
        corpus = config.corpora[name]
        if corpus.where.strip():
            check_where(corpus.where, corpus.meta_keys, f"corpora.{name}.where")


def filter_part(
    index: int, part: Path, where: str, meta_keys: list[str], rules: QualityRules, out_dir: Path, limits: DuckDBLimits
) -> Counter:
    counts: Counter = Counter()
    con = limits.connect(reads=[part])
    query = filter_sql("read_parquet($part)", where, meta_keys)
    out, lost = out_dir / f"part-{index:05d}.parquet", out_dir / "dropped" / f"part-{index:05d}.parquet"
    lost.parent.mkdir(parents=True, exist_ok=True)
    writer = dropped_writer = None
    try:
        for batch in con.sql(query, params={"part": part.as_posix()}).to_arrow_reader(BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            counts["rows_in"] += table.num_rows
            flag = table.column("kept")
            filtered = table.filter(pc.invert(flag)).select(DROPPED_SCHEMA.names[:3])
            counts["dropped_where"] += filtered.num_rows
            kept, dropped = apply_rules(table.filter(flag).drop_columns(["kept"]), rules, counts)
            filtered = filtered.append_column("reason", pa.array(["where"] * len(filtered), pa.string()))
            dropped = pa.concat_tables([filtered, dropped])
            for reason in dropped.column("reason").to_pylist():
                if reason != "where":
                    counts[f"dropped_{reason}"] += 1
            if writer is None:
                writer = pq.ParquetWriter(out, kept.schema, **PARQUET)
                dropped_writer = pq.ParquetWriter(lost, DROPPED_SCHEMA, compression="zstd")
            writer.write_table(kept)
            dropped_writer.write_table(dropped.cast(DROPPED_SCHEMA))
            counts["rows"] += kept.num_rows
            counts["chars"] += pc.sum(kept.column("chars")).as_py() or 0
    finally:
        for w in (writer, dropped_writer):
            if w is not None:
                w.close()
    return counts


def filter_parts(
    parts: list[Path],
    corpus: str,
    where: str,
    meta_keys: list[str],
    rules: QualityRules,
    out_dir: Path,
    workers: int,
    limits: DuckDBLimits | None = None,
) -> Counter:
    """Filter and tidy every part of a corpus into out_dir; returns the summed counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    progress = Progress(f"filter {corpus}")
    jobs = [(i, part, where, meta_keys, rules, out_dir, limits or DuckDBLimits()) for i, part in enumerate(parts)]
    for done, (_, part_counts) in enumerate(run_jobs(filter_part, jobs, workers, "threads"), 1):
        counts += part_counts
        progress.report(
            f"{done}/{len(parts)} parts, {counts['rows']:,} of {counts['rows_in']:,} kept, "
            f"{progress.rate(counts['rows_in']):,.0f} docs/s"
        )
    return counts


def filter_corpus(config: PipelinesConfig, dataset: str, corpus: StageResult) -> StageResult:
    """The corpus' where filter and quality rules (as the dataset sets them): filtered/<corpus>-<fp>/."""
    cfg = config.corpora[corpus.name]
    rules = config.quality_rules(dataset, corpus.name)
    settings = {"where": cfg.where, "rules": dataclasses.asdict(rules), "kind": cfg.resolved_kind}
    fp = fingerprint("filtered", settings, [corpus.fingerprint])

    def build(tmp: Path):
        inputs = input_parts(config.root, corpus)
        where = check_where(cfg.where, cfg.meta_keys, f"corpora.{corpus.name}.where") if cfg.where.strip() else ""
        counts = filter_parts(
            inputs, corpus.name, where, cfg.meta_keys, rules, tmp, config.worker_count, config.duckdb_limits
        )
        return dict(counts), {"settings": settings, "inputs": [corpus.fingerprint]}

    return reuse_or_build(config.root, "filtered", corpus.name, fp, build)


filter_task = task(filter_corpus, name="filter", task_run_name="filter-{corpus.name}")
