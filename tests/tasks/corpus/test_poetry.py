"""The chinese-poetry reader, and the labeled real test of the dedupe stage: every poem of 唐诗三百首 is also in
全唐诗, in another edition (traditional and variant characters, other line breaks, other readings)."""

import json

import duckdb
import pytest
from helpers import REPO, SHARED_DATA

from tasks.config import load_pipelines
from tasks.corpus.formats.poetry import read_poetry
from tasks.corpus.stage1_raw import fetch_sources
from tasks.corpus.stage2_ingest import ingest_corpus
from tasks.corpus.stage3_filter import filter_corpus
from tasks.corpus.stage4_dedupe import dedupe_dataset
from tasks.corpus.text.stats import fold_text


def read(tmp_path, value) -> tuple[list, list]:
    path = tmp_path / "poems.json"
    path.write_text(json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value)
    rejected = []
    docs = [d for batch in read_poetry([(path, "poems.json")], lambda *r: rejected.append(r[:3])) for d in batch]
    return docs, rejected


def test_arrays_of_poems_with_notes_removed(tmp_path):
    docs, rejected = read(
        tmp_path,
        [
            {"author": "王維", "title": "相思",
             "paragraphs": ["紅豆生南國，春來發幾枝。", "願君多采擷（一作：采），此物最相思。"]},
            {"author": "蘇軾", "rhythmic": "水調歌頭", "paragraphs": ["明月幾時有？(京本作「何」)"]},
            {"author": "佚名", "title": "空", "paragraphs": []},
            ["not", "a", "poem"],
        ],
    )  # fmt: skip
    assert [(d.text, d.title, d.line, d.meta) for d in docs] == [
        ("紅豆生南國，春來發幾枝。\n願君多采擷，此物最相思。", "相思", 1, {"author": "王維"}),
        ("明月幾時有？", "水調歌頭", 2, {"author": "蘇軾"}),
    ]
    assert rejected == [("empty_text", "poems.json", 3), ("not_an_object", "poems.json", 4)]


def test_the_nested_anthology(tmp_path):
    anthology = {
        "title": "唐詩三百首",
        "content": [
            {"type": "五言絕句", "content": [{"chapter": "雜詩", "subchapter": "雜詩三首·其二", "author": "王維",
                                          "paragraphs": ["君自故鄉來，應知故鄉事。"]}]},
            {"type": "樂府", "content": [{"chapter": "長干行", "subchapter": None, "author": "崔顥",
                                        "paragraphs": ["君家何處住，妾住在橫塘。"]}]},
        ],
    }  # fmt: skip
    docs, rejected = read(tmp_path, anthology)
    assert [(d.title, d.line, d.meta) for d in docs] == [
        ("雜詩三首·其二", 1, {"author": "王維", "type": "五言絕句"}),
        ("長干行", 2, {"author": "崔顥", "type": "樂府"}),
    ]
    assert read(tmp_path, "[{")[1][0][0] == "broken_json" and not rejected


@pytest.fixture(scope="module")
def poetry_dedupe(tmp_path_factory):
    """The shipped `poetry` dataset's settings on 全唐诗 and the anthology, read from the mirror folder."""
    root = tmp_path_factory.mktemp("poetry")
    config = load_pipelines(REPO / "pipelines.yaml", {"data_root": str(root), "mirror": str(SHARED_DATA)})
    filtered = []
    for corpus in ("poetry-tang", "poetry-tang300"):
        corpus_result = ingest_corpus(config, "poetry", corpus, fetch_sources(config, corpus))
        filtered.append(filter_corpus(config, "poetry", corpus_result))
    return root / dedupe_dataset(config, "poetry", filtered).rel


def test_the_anthology_is_found_in_the_complete_tang_poems(poetry_dedupe):
    rows = duckdb.sql(f"""
        SELECT d.corpus, d.duplicate_corpus, d.kind, d.similarity, json_extract_string(d_meta.meta, '$.author') AS a,
               json_extract_string(k.meta, '$.author') AS b, d.text AS dropped, k.text AS kept
        FROM read_parquet('{poetry_dedupe}/duplicates/*.parquet') d
        JOIN read_parquet('{poetry_dedupe}/part-*.parquet') k ON k.doc_id = d.duplicate_of
        JOIN (SELECT doc_id, meta FROM read_parquet('{poetry_dedupe.parent.parent}/filtered/*/part-*.parquet')) d_meta
          ON d_meta.doc_id = d.doc_id
        WHERE d.corpus = 'poetry-tang300'
    """).fetchall()
    assert {(r[0], r[1]) for r in rows} == {("poetry-tang300", "poetry-tang")}
    assert len(rows) >= 300, f"{len(rows)} of 320 found"
    assert min(r[3] for r in rows) >= 0.7
    same_author = sum(fold_text(r[4] or "") == fold_text(r[5] or "") for r in rows)
    assert same_author >= 0.95 * len(rows)  # the others: 唐玄宗 / 李隆基, and poems 全唐诗 gives two poets
