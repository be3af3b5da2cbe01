import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.corpus.settings import DedupeConfig
from tasks.corpus.stage4_dedupe import dedupe_parts
from tasks.corpus.text.stats import fold_text, text_stats

BASE = (
    "人工智能正在改变我们的生活。新华社北京电，记者从有关部门获悉，今年以来全国各地积极推进数字经济发展，"
    "多个城市出台支持政策，鼓励企业加大研发投入，推动产业升级。专家表示，未来五年将是关键时期。"
    "据统计，上半年全国软件业务收入同比增长百分之十四，信息技术服务收入占比超过六成。与此同时，"
    "各地高校纷纷开设相关专业，培养复合型人才，为产业发展提供支撑。业内人士指出，数据安全与隐私保护"
    "仍是需要重点关注的问题，相关法规正在逐步完善。一些中小企业则面临转型成本高、人才短缺等困难，"
    "需要政府和社会各界共同帮助。"
)


def edited(text: str, share: float, seed: int, spans: int = 3) -> str:
    """A copy with `share` of its characters replaced, in a few runs (a changed date, name or phrase)."""
    rng = random.Random(seed)
    chars = list(text)
    run = max(1, int(len(chars) * share) // spans)
    for start in rng.sample(range(0, len(chars) - run, run), spans):
        chars[start : start + run] = [chr(0x4E00 + rng.randrange(20000)) for _ in range(run)]
    return "".join(chars)


def distinct_doc(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(len(BASE)))


def exact_keys(texts: list[str]) -> np.ndarray:
    return text_stats(pa.array(texts)).exact_keys


def test_exact_key_folds_whitespace_punctuation_width_and_case():
    variants = [BASE, BASE.replace("，", ","), " ".join(BASE), BASE.replace("。", "．\n"), BASE + "　"]
    others = ["ﬁ" + BASE, "fi" + BASE, "FI" + BASE, BASE[1:], BASE + "号", ""]
    keys = [tuple(k) for k in exact_keys(variants + others)]
    assert len(set(keys[:5])) == 1
    assert keys[5] == keys[6] == keys[7] != keys[0]  # ligature, plain and upper case fold alike
    assert len({keys[0], keys[8], keys[9], keys[10]}) == 4
    assert fold_text("ＡＢＣ，abc！") == "abcabc"


def test_exact_key_folds_traditional_and_variant_characters():
    editions = ["早鴈拂金河，緜緜思遠道。", "早雁拂金河，绵绵思远道。", "早鴈拂金河，綿綿思遠道"]
    keys = [tuple(k) for k in exact_keys([*editions, "早雁拂银河，绵绵思远道。"])]
    assert keys[0] == keys[1] == keys[2] != keys[3]
    assert fold_text("劒劍剑") == "剑剑剑"


def test_exact_keys_match_the_reference_folding():
    texts = [BASE, "Ｈｅｌｌｏ， Ｗｏｒｌｄ！", "①②③ ⅫⅢ", "㈠项目", "ǅemal Ǆ", "Straße STRASSE", "", "㊙劒鴈 ⺠"]
    keys = exact_keys(texts)
    reference = exact_keys([fold_text(t) for t in texts])
    assert (keys == reference).all()


def filtered_part(path, corpus: str, texts: list[str]):
    from test_filter import table

    from tasks.corpus.settings import rules_for
    from tasks.corpus.text.rules import apply_rules

    kept, _ = apply_rules(table(texts).set_column(1, "corpus", pa.array([corpus] * len(texts))), rules_for("qa"))
    ids = pa.array([f"{corpus}-{i}" for i in range(kept.num_rows)])
    pq.write_table(kept.set_column(0, "doc_id", ids), path)
    return path


def test_dedupe_stage_keeps_one_per_cluster_across_corpora(tmp_path):
    article = BASE + distinct_doc(100) + BASE[::-1]
    news = [article, distinct_doc(1), distinct_doc(2), " ".join(distinct_doc(1))]  # 3 copies 0 after folding spaces
    answers = [
        article.replace("，", ",").replace("。", "．"),  # exact after folding: a copy of news-0
        edited(article, 0.05, 7),  # near: about 5% of the characters changed, in runs
        distinct_doc(3),
        edited(distinct_doc(2), 0.04, 8),  # near copy of news-2
    ]
    inputs = [
        ("news", [filtered_part(tmp_path / "news.parquet", "news", news)]),
        ("answers", [filtered_part(tmp_path / "answers.parquet", "answers", answers)]),
    ]
    out = tmp_path / "out"
    result = dedupe_parts(inputs, DedupeConfig(), out)
    kept = [r for p in sorted(out.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["doc_id"] for r in kept] == ["news-0", "news-1", "news-2", "answers-2"]
    assert all(len(r["exact_key"]) == 16 for r in kept) and len({r["exact_key"] for r in kept}) == len(kept)
    dropped = {r["doc_id"]: r for r in pq.read_table(out / "duplicates").to_pylist()}
    assert {i: (r["kind"], r["duplicate_of"], r["duplicate_corpus"]) for i, r in dropped.items()} == {
        "news-3": ("exact", "news-1", "news"),
        "answers-0": ("exact", "news-0", "news"),
        "answers-1": ("near", "news-0", "news"),
        "answers-3": ("near", "news-2", "news"),
    }
    assert dropped["answers-1"]["text"] == answers[1] and dropped["news-3"]["similarity"] == 1.0
    assert 0.7 <= dropped["answers-1"]["similarity"] < 1 and dropped["answers-1"]["source_file"]
    counts = result.per_corpus
    assert counts["answers"]["dropped_exact_duplicate"] == 1 and counts["answers"]["dropped_near_duplicate"] == 2
    assert counts["news"]["rows"] == 3 and counts["answers"]["rows"] == 1
    assert result.pairs == {"news": {"news": 1}, "answers": {"news": 3}}
    assert not (out / "_near").exists()


def test_dedupe_can_be_switched_off(tmp_path):
    part = filtered_part(tmp_path / "a.parquet", "a", [BASE, BASE + "　", edited(BASE, 0.05, 1)])
    counts = dedupe_parts([("a", [part])], DedupeConfig(exact=True, near=False), tmp_path / "out").per_corpus
    assert counts["a"]["rows"] == 2 and counts["a"]["dropped_exact_duplicate"] == 1


def test_an_exact_copy_of_a_near_duplicate_names_the_document_kept(tmp_path):
    near = edited(BASE, 0.05, 3)
    texts = [BASE, near, near.replace("，", ", "), distinct_doc(5)]
    part = filtered_part(tmp_path / "a.parquet", "a", texts)
    result = dedupe_parts([("a", [part])], DedupeConfig(), tmp_path / "out")
    dropped = {r["doc_id"]: r for r in pq.read_table(tmp_path / "out" / "duplicates").to_pylist()}
    assert set(dropped) == {"a-1", "a-2"}
    assert dropped["a-1"]["kind"] == "near" and dropped["a-2"]["kind"] == "exact"
    assert dropped["a-1"]["duplicate_of"] == dropped["a-2"]["duplicate_of"] == "a-0"
    assert dropped["a-2"]["similarity"] == dropped["a-1"]["similarity"] < 1
    assert result.per_corpus["a"]["rows"] == 2
