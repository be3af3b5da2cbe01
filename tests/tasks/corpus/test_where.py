"""A corpus' `where` is one condition over its columns: anything that reads, writes or runs more is refused with one
line naming the key, loading pipelines.yaml touches no file, and the filter's connection reads only its input."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_pipelines

from gpt.config import ConfigError
from tasks.config import load_pipelines
from tasks.corpus.settings import DOCUMENT_COLUMNS, check_where_words
from tasks.corpus.stage2_ingest import SCHEMA
from tasks.corpus.stage3_filter import check_filters, check_where
from tasks.corpus.text.where import where_expression
from tasks.parallel import DuckDBLimits

KEY = "corpora.webtext2019zh.where"
META = ["star", "topic"]


ACCEPTED = [
        ("star >= 3 AND topic <> '广告'", "((star >= 3) AND (topic != '广告'))"),
        ("star >= 3 -- likes", "(star >= 3)"),  # the comment cannot swallow the rest of the query
        ("text LIKE '%北京%' OR title ILIKE 'a%'", None),
        ("star IN (3, 4) AND star NOT BETWEEN 10 AND 20 AND title IS NOT NULL", None),
        ("CASE WHEN chars > 100 THEN star >= 5 ELSE star >= 3 END", None),
        ("length(regexp_replace(text, '[^一-龥]', '', 'g')) > 0.5 * chars AND star::INT >= 3", None),
        ("coalesce(topic, '') <> '' AND starts_with(lower(title), 'q')", None),
]  # fmt: skip


@pytest.mark.parametrize(("where", "runs_as"), ACCEPTED)
def test_conditions_over_the_columns_are_accepted(where, runs_as):
    expression = check_where(where, META, KEY)
    assert runs_as is None or expression == runs_as
    assert where_expression(expression, KEY) == expression  # DuckDB's own text of the parse tree


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "a subquery is not allowed"),
        ("CAST((FROM read_text('/etc/passwd')) AS INT) > 0", "a subquery is not allowed"),
        ("getenv('HOME') = ''", "the function getenv() is not allowed"),
        ("star >= 3; COPY (SELECT 1) TO 'x.csv'", "it holds a statement, not only an expression"),
        ("star >= 3 FROM read_csv('/etc/passwd')", "it is more than one expression"),
        ("star >= 3, topic = 'a'", "it is a list of expressions, not one condition"),
        ("count(*) > 1", "the function count_star() is not allowed"),
        ("sum(star) OVER () > 1", "window expressions are not allowed"),
        ("length(repeat(text, 1000000000)) > 0", "the function repeat() is not allowed"),
        ("list_contains(list_transform([1], x -> x), star)", "the function list_transform() is not allowed"),
        ("main.t.star > 1", "main.t.star is not a column of the corpus"),
        ("star > $1", "parameter expressions are not allowed"),
        ("star >= 3)", "syntax error"),
    ],
)
def test_anything_more_is_refused_in_one_line_naming_the_key(where, why):
    with pytest.raises(ConfigError) as refused:
        check_where(where, META, KEY)
    message = str(refused.value)
    assert message.startswith(f"{KEY}: not a valid filter: ") and why in message and "\n" not in message


def test_loading_a_file_with_an_injection_writes_nothing(tmp_path):
    written = tmp_path / "injected.csv"
    where = (
        "true), false) AS kept FROM (SELECT 1,2,3,4,5,6,7) t(doc_id, corpus, text, title, source_file, source_line, "
        f"meta); COPY (SELECT 42 AS x) TO '{written}'; SELECT coalesce((true"
    )
    path = write_pipelines(
        tmp_path,
        {
            "corpora": {"web": {"format": "webtext2019zh", "sources": [{"path": "web.json"}]}},
            "datasets": {"web": {"corpora": ["web"]}},
        },
    )
    with pytest.raises(ConfigError, match=r"^corpora.web.where: not a valid filter"):
        load_pipelines(path, [f"--corpora.web.where={where}"])
    assert not written.exists()
    with pytest.raises(ConfigError, match=r"^corpora.web.where: not a valid filter: a subquery"):
        load_pipelines(path, ["--corpora.web.where=(SELECT count(*) FROM read_csv('/etc/passwd')) > 0"])
    assert load_pipelines(path, ["--corpora.web.where=star >= 3"]).corpora["web"].where == "star >= 3"


def test_the_filter_connection_reads_its_input_and_nothing_else(tmp_path):
    part = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"text": ["春眠不觉晓"]}), part)
    con = DuckDBLimits(temp_directory=str(tmp_path / "spill")).connect(reads=[part])
    assert con.sql("SELECT text FROM read_parquet($p)", params={"p": part.as_posix()}).fetchall() == [("春眠不觉晓",)]
    for statement in (
        "SELECT * FROM read_csv('/etc/passwd')",
        f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
        "SET enable_external_access = true",
        "SET allowed_paths = ['/etc/passwd']",
        f"ATTACH '{tmp_path / 'other.db'}'",
    ):
        with pytest.raises(duckdb.Error, match="disabled by configuration|configuration has been locked"):
            con.sql(statement).fetchall()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "a subquery is not allowed"),
        ("getenv('HOME') = ''", "the function getenv() is not allowed"),
        ("star >= 3; COPY (SELECT 1) TO 'x.csv'", "it holds a statement, not only an expression"),
        ("star >= 3 FROM read_csv('/etc/passwd')", "FROM starts a statement"),
        ("stars > 1", "stars is not a column of the corpus"),
        ('"stars" > 1', "stars is not a column of the corpus"),
        ("main.t.star > 1", "main is not a column of the corpus"),
        ("star > 1 # x", "'#' is not allowed"),
        ("star > $1", "'$' is not allowed"),
        ("star >= 3)", "its parentheses do not match"),
        ("(star >= 3", "its parentheses do not match"),
    ],
)
def test_loading_refuses_a_filter_by_its_words_alone(where, why):
    with pytest.raises(ConfigError) as refused:
        check_where_words(where, META, KEY)
    message = str(refused.value)
    assert message.startswith(f"{KEY}: not a valid filter: {why}. ") and "\n" not in message
    assert "(doc_id, corpus, text, title, source_file, source_line, meta, chars, star, topic)" in message


@pytest.mark.parametrize(("where", "runs_as"), ACCEPTED)
def test_every_condition_the_filter_runs_passes_the_words_check(where, runs_as):
    check_where_words(where, META, KEY)
    check_where_words(check_where(where, META, KEY), META, KEY)  # DuckDB's rewriting too


def test_a_build_parses_its_filters_with_duckdb_before_it_downloads(tmp_path):
    """Words that pass at load but are no condition (a list) stop the build at its start, naming the key."""
    path = write_pipelines(
        tmp_path,
        {
            "corpora": {"web": {"format": "webtext2019zh", "sources": [{"url": "http://127.0.0.1:9/web.json"}]}},
            "datasets": {"web": {"corpora": ["web"]}},
        },
    )
    config = load_pipelines(path, ["--corpora.web.where=star >= 3, topic = 'a'"])
    with pytest.raises(ConfigError, match=r"^corpora.web.where: not a valid filter: it is a list of expressions"):
        check_filters(config, ["web"])
    check_filters(load_pipelines(path, ["--corpora.web.where=star >= 3"]), ["web"])


def test_the_columns_a_filter_may_name_are_the_documents_columns():
    assert (*SCHEMA.names, "chars") == DOCUMENT_COLUMNS
