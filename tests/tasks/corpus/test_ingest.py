import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import SHARED_DATA

from tasks.corpus.stage2_ingest import SCHEMA, IngestOptions, ingest_files, max_line_bytes

FIXTURES = Path(__file__).with_name("fixtures")
TRANSLATION_SAMPLE = SHARED_DATA / "samples" / "translation2019zh" / "translation2019zh_valid.json"


def read_output(out):
    rows = [r for part in sorted(out.glob("part-*.parquet")) for r in pq.read_table(part).to_pylist()]
    lines = [line for q in sorted(out.glob("quarantine/*.jsonl")) for line in q.read_text("utf-8").splitlines()]
    return rows, [json.loads(line) for line in lines]


def run(tmp_path, path, corpus_format, **options):
    counts = ingest_files([(path, path.name)], corpus_format, IngestOptions(corpus_format, **options), tmp_path)
    return counts, *read_output(tmp_path)


def test_corrupt_webtext_gives_exact_counts_and_a_quarantine(tmp_path):
    counts, rows, bad = run(tmp_path, FIXTURES / "webtext2019zh.json", "webtext2019zh")
    assert pq.read_schema(tmp_path / "part-00000.parquet").names == SCHEMA.names
    assert [r["text"] for r in rows] == [
        "不只是围棋。同样的方法可以用在蛋白质结构预测和芯片设计上。",
        "强化学习的思路是通用的，围棋只是一个容易评估的试验场。",
    ]
    meta = json.loads(rows[0]["meta"])
    assert rows[0]["title"] is None and meta["question_title"] == "AlphaGo只会下围棋吗？" and meta["star"] == 3
    assert meta["qid"] == "65618973" and rows[0]["source_line"] == 1 and len(rows[0]["doc_id"]) == 16
    reasons = {(b["line"], b["reason"]) for b in bad}
    assert reasons == {
        (3, "wrong_type:star"),
        (4, "empty_text"),
        (5, "broken_json"),
        (6, "not_an_object"),
        (7, "invalid_utf8"),
        (8, "truncated_last_line"),
    }
    assert all(b["file"] == "webtext2019zh.json" for b in bad)
    assert counts["rows"] == 2 and counts["lines"] == 8 and counts["bom"] == 1
    assert counts["dropped_broken_json"] == 1 and counts["dropped_truncated_last_line"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("dropped_")) == 6


def test_values_a_column_cannot_hold_are_quarantined_not_fatal(tmp_path):
    good = {"qid": 1, "title": "问", "desc": "", "topic": "t", "star": 3, "content": "答案", "answer_id": 2}
    lines = [
        json.dumps(good, ensure_ascii=False),
        json.dumps(good | {"star": 18446744073709551615}),  # fits unsigned 64-bit, not the signed column
        json.dumps(good | {"star": 9223372036854775807}),  # the largest that fits
        json.dumps(good).replace('"star": 3', '"star": NaN'),
        json.dumps(good | {"star": 10**30}),
        json.dumps(good | {"content": {"text": "答案"}}),
        "[" * 5000 + "]" * 5000,
    ]
    path = tmp_path / "web_text_zh_valid.json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts, rows, bad = run(tmp_path / "out", path, "webtext2019zh")
    assert [json.loads(r["meta"])["star"] for r in rows] == [3, 9223372036854775807]
    assert sorted((b["line"], b["reason"]) for b in bad) == [
        (2, "out_of_range:star"),
        (4, "wrong_type:star"),
        (5, "wrong_type:star"),
        (6, "wrong_type:content"),
        (7, "not_an_object"),
    ]
    assert counts["rows"] == 2 and counts["dropped_out_of_range:star"] == 1


def test_doc_ids_are_stable_across_runs(tmp_path):
    ids = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ids.append([r["doc_id"] for r in run(tmp_path / name, FIXTURES / "wiki2019zh.json", "wiki2019zh")[1]])
    assert ids[0] == ids[1] and len(set(ids[0])) == 2


def test_wiki_title_line_is_dropped(tmp_path):
    _, rows, bad = run(tmp_path, FIXTURES / "wiki2019zh.json", "wiki2019zh")
    assert rows[0]["title"] == "数学" and rows[0]["text"].startswith("数学是利用符号语言")
    assert rows[1]["text"] == "哲学是研究普遍的、基本问题的学科。" and bad == []


def test_news_desc_is_not_trained_twice(tmp_path):
    _, rows, _ = run(tmp_path, FIXTURES / "news2016zh.json", "news2016zh")
    assert rows[0]["text"].startswith("新华社北京电") and rows[0]["text"].count("保利集团今天宣布") == 1
    assert json.loads(rows[0]["meta"])["desc"] == "新华社北京电　保利集团今天宣布"


def test_baike_carriage_returns_become_newlines_and_echoed_desc_is_dropped(tmp_path):
    _, rows, _ = run(tmp_path, FIXTURES / "baike2018qa.json", "baike2018qa")
    assert rows[0]["text"] == "多运动，促进血液循环。\n晚上用热水泡脚。\n注意保暖。"
    assert json.loads(rows[1]["meta"])["desc"] is None and json.loads(rows[0]["meta"])["category"] == "生活-生活常识"


def test_translation_takes_the_chinese_side_even_when_swapped(tmp_path):
    _, rows, _ = run(tmp_path, FIXTURES / "translation2019zh.json", "translation2019zh")
    assert [r["text"] for r in rows] == ["今天天气很好。", "我们明天去北京。"]
    assert [json.loads(r["meta"])["swapped"] for r in rows] == [False, True]


def test_real_translation_sample(tmp_path):
    counts, rows, bad = run(tmp_path, TRANSLATION_SAMPLE, "translation2019zh")
    assert counts["lines"] == 500 and len(rows) + len(bad) == 500
    swapped = [r for r in rows if json.loads(r["meta"])["swapped"]]
    assert len(swapped) == 1
    assert all(any("\u4e00" <= c <= "\u9fff" for c in r["text"]) for r in rows)


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        run(tmp_path, FIXTURES / "wiki2019zh.json", "csv")


def test_a_line_too_long_for_the_corpus_is_counted_and_quarantined_unparsed(tmp_path):
    answer = {"qid": 1, "title": "问", "desc": "", "topic": "t", "star": 5, "answer_id": 2, "answerer_tags": ""}
    lines = [dict(answer, content="好" * 20), dict(answer, content="长" * 30_000), dict(answer, content="也好" * 10)]
    path = tmp_path / "web_text_zh_valid.json"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    counts, rows, bad = run(tmp_path / "out", path, "webtext2019zh", max_line_bytes=26_000)  # the 2nd: 90 kB
    assert [r["source_line"] for r in rows] == [1, 3]
    assert counts["dropped_line_too_long"] == 1 and counts["lines"] == 3
    assert [(b["line"], b["reason"]) for b in bad] == [(2, "line_too_long")] and len(bad[0]["raw"]) < 300
    assert max_line_bytes(20_000) == 160_000 + (1 << 20) and max_line_bytes(0) == 0
