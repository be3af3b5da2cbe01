"""The text the model reads: each format's template over text, title and meta, an override per corpus, and the
quality rules and dedupe still looking at the text alone."""

import numpy as np
import pytest
from helpers import REPO, write_pipelines

from gpt.config import ConfigError
from gpt.shards import TokenDataset
from tasks.config import load_pipelines
from tasks.corpus.formats.templates import DEFAULT_TEMPLATES, Template
from tasks.corpus.stage1_raw import fetch_sources
from tasks.corpus.stage2_ingest import ingest_corpus
from tasks.corpus.stage3_filter import filter_corpus
from tasks.corpus.stage4_dedupe import dedupe_dataset
from tasks.corpus.stage6_tokenize import tokenize_dataset

DEMO = REPO / "demo"


def test_each_format_keeps_what_helps_a_language_model():
    webtext = Template(DEFAULT_TEMPLATES["webtext2019zh"])
    question = {"question_title": "为什么会起雾？", "question_desc": "为什么会起雾？"}
    assert webtext.render("因为水汽凝结。", None, question) == "为什么会起雾？\n因为水汽凝结。"  # a repeat left out
    question["question_desc"] = "冬天的窗户"
    assert webtext.render("因为水汽凝结。", None, question) == "为什么会起雾？\n冬天的窗户\n因为水汽凝结。"
    baike = Template(DEFAULT_TEMPLATES["baike2018qa"])
    assert baike.render("用白醋。", "水垢怎么去除？", {"desc": None}) == "水垢怎么去除？\n用白醋。"
    news = Template(DEFAULT_TEMPLATES["thucnews"])
    assert news.render("正文第一段。\n第二段。", "标题", {"category": "体育"}) == "标题\n正文第一段。\n第二段。"
    poem = Template(DEFAULT_TEMPLATES["chinese-poetry"])
    assert poem.render("床前明月光。", "静夜思", {"author": "李白"}) == "静夜思\n李白\n床前明月光。"
    assert poem.render("白日依山尽。", None, None) == "白日依山尽。"
    own = Template("问：{title}（{category}）\n答：{text}")
    assert own.render("用白醋。", "水垢？", {"category": None}) == "问：水垢？（）\n答：用白醋。"  # one field filled
    with pytest.raises(ValueError, match="leaves out"):
        Template("{title}")


def pipelines(tmp_path, template: str = "") -> str:
    baike = {"format": "baike2018qa", "sources": [{"path": str(DEMO / "baike2018qa")}]}
    data = {
        "data_root": str(tmp_path / "data"),
        "workers": 1,
        "corpora": {
            "answers": {"format": "webtext2019zh", "sources": [{"path": str(DEMO / "webtext2019zh")}]},
            "news": {"format": "thucnews", "sources": [{"path": str(DEMO / "thucnews")}]},
            "qa": baike | ({"template": template} if template else {}),
        },
        "datasets": {
            "mix": {
                "corpora": ["answers", "news", "qa"],
                "tokenize": {"tokenizer": "char", "val_fraction": 0.01, "min_val_docs": 1},
            }
        },
    }
    return write_pipelines(tmp_path, data)


def build(path: str):
    config = load_pipelines(path)
    ingested = [ingest_corpus(config, "mix", name, fetch_sources(config, name)) for name in config.corpora]
    filtered = [filter_corpus(config, "mix", corpus) for corpus in ingested]
    deduped = dedupe_dataset(config, "mix", filtered)
    return deduped, tokenize_dataset(config, "mix", deduped)


def documents(folder) -> list[str]:
    dataset = TokenDataset.open(folder)
    tokens = np.concatenate([dataset.tokens(s, 0) for s in ("train", "val")])
    return dataset.tokenizer().decode(tokens.tolist()).split("<|endoftext|>")[:-1]


def test_questions_and_headlines_reach_the_tokens_and_answers_to_one_question_stay_apart(tmp_path):
    deduped, tokens = build(pipelines(tmp_path))
    docs = documents(tokens.location)
    fog = [d for d in docs if d.startswith("为什么冬天室内的玻璃窗上会起雾？\n")]
    assert len(fog) >= 2 and len(set(fog)) == len(fog)  # answers sharing a question: all kept, each with it
    assert deduped.extra["per_corpus"]["answers"]["rows"] >= 2
    assert any(d.startswith("市民篮球联赛决赛落幕 桂溪队加时险胜夺冠\n") for d in docs)  # headline, then the body
    assert any(d.startswith("烧水壶里的水垢怎么去除？\n可以用白醋") for d in docs)
    assert any(d.startswith("秋天适合喝什么茶？\n秋季天气干燥") for d in docs)  # desc repeating the title: once
    examples = tokens.extra["stats"]["examples"]
    assert set(examples) == {"answers", "news", "qa"} and all(e in "".join(docs) for e in examples.values())


def test_a_corpus_template_overrides_its_formats_and_names_only_known_fields(tmp_path):
    _, tokens = build(pipelines(tmp_path, "问：{title}\n答：{text}"))
    assert any(d.startswith("问：烧水壶里的水垢怎么去除？\n答：可以用白醋") for d in documents(tokens.location))
    with pytest.raises(ConfigError, match=r"\{author\} is not a field of format baike2018qa"):
        load_pipelines(pipelines(tmp_path / "bad", "{author}\n{text}"))
