import json
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpt.config import ConfigError
from tasks.corpus.settings import rules_for
from tasks.corpus.stage2_ingest import SCHEMA
from tasks.corpus.stage3_filter import check_where, filter_parts
from tasks.corpus.text.rules import apply_rules, tidy
from tasks.corpus.text.stats import scan_raw, text_stats

ANSWER = "强化学习的思路是通用的，围棋只是一个容易评估的试验场。同样的方法可以用在蛋白质结构预测上。"


def table(texts: list[str], metas: list[dict] | None = None) -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            "doc_id": [f"d{i}" for i in range(n)],
            "corpus": ["c"] * n,
            "text": texts,
            "title": [None] * n,
            "source_file": ["f.json"] * n,
            "source_line": list(range(1, n + 1)),
            "meta": [json.dumps(m, ensure_ascii=False) for m in metas] if metas else [None] * n,
        },
        schema=SCHEMA,
    )


def test_tidy_folds_markup_line_breaks_and_indentation():
    rules = rules_for("qa")
    raw = "　　第一段<br>第二段<BR/>&nbsp;第三段 &amp; <b>粗体</b>\r\n\r\n\r\n\r\n  第四段\x07  "
    assert tidy(raw, rules) == "第一段\n第二段\n第三段 & 粗体\n\n第四段"
    assert tidy("漢字簡體", rules_for("qa", {"to_simplified": True})) == "汉字简体"


def random_texts(count: int, seed: int) -> list[str]:
    """Short texts over the characters tidying cares about, so that every pattern turns up somewhere."""
    alphabet = [*"中文ab <&>;\n\n\r\t\u3000\xa0\u2028\x07\x0b\x1f\x7f\ufffd", "<br>", "&amp;", "😀"]
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))) for _ in range(count)]


@pytest.mark.parametrize("strip_markup", [True, False])
def test_raw_scan_flags_exactly_what_tidying_would_change(strip_markup):
    rules = rules_for("qa", {"strip_markup": strip_markup})
    texts = random_texts(5_000, seed=int(strip_markup))
    scan = scan_raw(pa.array(texts), strip_markup)
    control = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
    assert scan.controls.tolist() == [len(control.findall(t)) for t in texts]
    changed = [tidy(t, rules) != t for t in texts]
    assert all(
        flag for flag, change in zip(scan.untidy, changed, strict=True) if change
    )  # nothing that needs tidying is missed
    assert sum(scan.untidy) < 1.5 * sum(changed)  # and little that does not is flagged


def test_text_stats_match_per_document_references():
    texts = [ANSWER, ANSWER * 3, "第一行\n第二行\n第一行\n  \n第一行", "短", "", "😀" * 30 + "中文" * 20, "x\ny\n"]
    stats = text_stats(pa.array(texts), ngram=4)

    def ngram_share(text: str) -> float:
        grams = [text[i : i + 4] for i in range(len(text) - 3)]
        return sum(grams.count(g) > 1 for g in grams) / len(grams) if grams else 0.0

    def line_share(text: str) -> float:
        lines = [line for line in text.split("\n") if line.strip()]
        return 1 - len(set(lines)) / len(lines) if len(lines) > 1 else 0.0

    assert stats.chars.tolist() == [len(t) for t in texts]
    assert stats.cjk.tolist() == [sum("\u4e00" <= c <= "\u9fff" for c in t) for t in texts]
    assert stats.repeated_ngram_share.tolist() == pytest.approx([ngram_share(t) for t in texts])
    assert stats.repeated_line_share.tolist() == pytest.approx([line_share(t) for t in texts])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("好的", "too_short"),
        ("这是一段英文为主的回答 " + "mostly English words here " * 5, "low_cjk_share"),
        ("\n".join(["同一行重复出现了很多次"] * 5 + ["另一行"]), "repeated_lines"),
        ("重复的句子内容一遍又一遍。" * 12, "repeated_ngrams"),
        (ANSWER + "扫描二维码，关注公众号，加微信领取。", "spam"),
        ("坏字符\x00\x01\x02\x03\x04\x05\x06" + ANSWER, "control_chars"),
        ("长" * 20_001, "too_long"),
    ],
)
def test_each_rule_drops_with_its_reason(text, reason):
    kept, dropped = apply_rules(table([text, ANSWER]), rules_for("qa"))
    assert dropped.column("reason").to_pylist() == [reason]
    assert kept.column("doc_id").to_pylist() == ["d1"] and kept.column("chars").to_pylist() == [len(ANSWER)]


def test_kinds_have_their_own_defaults_and_overrides_win():
    assert rules_for("qa").min_chars < rules_for("article").min_chars
    assert rules_for("english").min_cjk_share == 0
    assert rules_for("qa", {"min_chars": 3}, {"min_chars": 4}).min_chars == 4
    with pytest.raises(ConfigError, match="datasets.zh.filter.webtext.min_char"):
        rules_for("qa", {"min_char": 3}, where="datasets.zh.filter.webtext")
    with pytest.raises(ConfigError, match="unknown kind 'poetry'"):
        rules_for("poetry")


def test_where_filter_counts_its_drops_and_rules_count_theirs(tmp_path):
    texts = [ANSWER, ANSWER + "二", "短", ANSWER + "三"]
    stars = [{"star": 3, "topic": "科技"}, {"star": 1, "topic": "科技"}, {"star": 9, "topic": "科技"}, {"star": 5}]
    part = tmp_path / "part-00000.parquet"
    pq.write_table(table(texts, stars), part)
    counts = filter_parts([part], "c", "star >= 3", ["star", "topic"], rules_for("qa"), tmp_path / "out", 1)
    assert (counts["rows_in"], counts["rows"], counts["dropped_where"], counts["dropped_too_short"]) == (4, 2, 1, 1)
    dropped = pq.read_table(tmp_path / "out" / "dropped" / "part-00000.parquet").to_pylist()
    assert {(d["doc_id"], d["reason"]) for d in dropped} == {("d1", "where"), ("d2", "too_short")}
    kept = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    assert kept.column("doc_id").to_pylist() == ["d0", "d3"] and "exact_key" in kept.column_names


def test_a_bad_where_names_the_key_and_the_columns():
    with pytest.raises(ConfigError, match=r"corpora.webtext.where: not a valid filter.*Columns you can use: .*star"):
        check_where("stars >= 3", ["star"], "corpora.webtext.where")
    check_where("star >= 3 AND chars > 10", ["star"], "corpora.webtext.where")


def test_bidi_controls_and_invisible_characters_are_removed_and_counted(tmp_path):
    tricked = "\u202e" + ANSWER + "\u202c\u200b" + "\u2066看\u2069" + "\ufeff"  # right-to-left override, isolates
    part = tmp_path / "part-00000.parquet"
    pq.write_table(table([tricked, ANSWER]), part)
    counts = filter_parts([part], "c", "", [], rules_for("qa"), tmp_path / "out", 1)
    kept = pq.read_table(tmp_path / "out" / "part-00000.parquet").column("text").to_pylist()
    assert kept == [ANSWER + "看", ANSWER] and counts["removed_invisible_chars"] == 6
    for char in INVISIBLE_CHARS:
        assert tidy(f"前{char}后", rules_for("qa")) == "前后"
    assert scan_raw(pa.array(["前\u200d后"]), True).invisible.tolist() == [0]  # a joiner inside emoji stays


INVISIBLE_CHARS = "\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
