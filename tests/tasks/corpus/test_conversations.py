"""Conversation datasets: the bundled real documents of the question-answer, news and translation corpora made into
conversations by the shipped templates (the best answer of each question), stored as Parquet messages, split as the
same documents are split for pretraining, and refused when a template names what the corpus lacks."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import REPO, write_pipelines

from gpt.chat import ChatFormat
from gpt.config import ConfigError
from gpt.shards import TokenDataset
from tasks.config import load_pipelines
from tasks.corpus.chat_tokens import tokenize_chat_dataset
from tasks.corpus.conversations import conversations_dataset
from tasks.corpus.stage1_raw import fetch_sources
from tasks.corpus.stage2_ingest import ingest_corpus
from tasks.corpus.stage3_filter import filter_corpus
from tasks.corpus.stage4_dedupe import dedupe_dataset
from tasks.corpus.stage6_tokenize import tokenize_dataset
from tasks.corpus.text.split import content_hashes, content_keys

DEMO = REPO / "demo"
FORMATS = {"baike2018qa": "baike2018qa", "webtext2019zh": "webtext2019zh", "news2016zh": "news2016zh",
           "translation2019zh": "translation2019zh"}  # fmt: skip
SPLIT = {"tokenizer": "gpt2", "val_fraction": 0.3, "min_val_docs": 1}


def pipelines(tmp_path, **changes) -> str:
    """The shipped zh-chat conversations over the bundled documents of its corpora, and a pretraining dataset of the
    same documents."""
    shipped = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))["datasets"]["zh-chat"]
    corpora = {name: {"format": fmt, "sources": [{"path": str(DEMO / fmt)}]} for name, fmt in FORMATS.items()}
    corpora["webtext2019zh"]["where"] = "star >= 3"
    chat = {"corpora": list(FORMATS), "tokenize": SPLIT,
            "conversations": {name: shipped["conversations"][name] for name in FORMATS}} | changes  # fmt: skip
    data = {"data_root": str(tmp_path / "data"), "workers": 1, "corpora": corpora,
            "datasets": {"chat": chat, "text": {"corpora": list(FORMATS), "tokenize": SPLIT}}}  # fmt: skip
    return write_pipelines(tmp_path, data)


def deduped_documents(config, dataset: str):
    ingested = [ingest_corpus(config, dataset, name, fetch_sources(config, name)) for name in FORMATS]
    return dedupe_dataset(config, dataset, [filter_corpus(config, dataset, corpus) for corpus in ingested])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("conversations")
    config = load_pipelines(pipelines(tmp_path))
    deduped = deduped_documents(config, "chat")
    conversations = conversations_dataset(config, "chat", deduped)
    return config, conversations, tokenize_chat_dataset(config, "chat", conversations)


def rows(config, result) -> list[dict]:
    parts = sorted(config.root.local(result.rel).glob("part-*.parquet"))
    return [row for part in parts for row in pq.read_table(part).to_pylist()]


def jsonl(*names: str) -> list[dict]:
    """The rows of bundled JSON-lines files that are whole JSON objects (the bundle also holds broken ones)."""
    out = []
    for line in (line for name in names for line in (DEMO / name).read_text(encoding="utf-8").splitlines()):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def test_each_task_is_asked_and_answered_from_its_documents_fields(built):
    config, conversations, _ = built
    by_task = {}
    for row in rows(config, conversations):
        by_task.setdefault(row["task"], []).append([(m["role"], m["content"]) for m in row["messages"]])
    assert set(by_task) == {"qa", "community-qa", "headline", "en-zh", "zh-en"}
    scale = next(answer for (_, asked), (_, answer) in by_task["qa"] if asked == "烧水壶里的水垢怎么去除？")
    assert scale.startswith("可以用白醋")  # the question alone: its desc repeats its title
    news = jsonl("news2016zh/news2016zh_train.json", "news2016zh/news2016zh_valid.json")
    asked = {f"给这篇新闻写一个标题：\n{row['content'].strip()}": row["title"] for row in news}
    assert by_task["headline"] and all(asked[q] == answer for (_, q), (_, answer) in by_task["headline"])
    pairs = jsonl("translation2019zh/translation2019zh_train.json", "translation2019zh/translation2019zh_valid.json")
    sides = [(p["english"], p["chinese"]) for p in pairs] + [(p["chinese"], p["english"]) for p in pairs]  # swapped
    english = {(f"翻译成中文：\n{en}", zh) for en, zh in sides}
    assert {(asked, answer) for (_, asked), (_, answer) in by_task["en-zh"]} <= english
    assert len(by_task["en-zh"]) == len(by_task["zh-en"]) >= 0.9 * len(pairs)


def test_a_question_is_answered_by_its_answer_with_the_most_likes(built):
    config, conversations, _ = built
    answers = jsonl("webtext2019zh/web_text_zh_train.json", "webtext2019zh/web_text_zh_valid.json")
    best = {}
    for answer in answers:
        if answer["star"] >= 3 and answer["star"] > best.get(answer["qid"], {"star": -1})["star"]:
            best[answer["qid"]] = answer
    got = [row["messages"] for row in rows(config, conversations) if row["task"] == "community-qa"]
    assert len(got) == len(best) < len(answers)  # one conversation per question
    assert {m[1]["content"] for m in got} == {a["content"] for a in best.values()}
    fog = next(m for m in got if m[0]["content"] == "为什么冬天室内的玻璃窗上会起雾？")  # its desc is empty: left out
    assert fog[1]["content"].startswith("因为室内空气比较暖和")  # 126 likes, over 37 and fewer


def test_tokens_carry_the_chat_template_and_a_conversation_is_held_out_with_its_document(built, tmp_path):
    config, conversations, tokens = built
    dataset = TokenDataset.open(config.root.local(tokens.rel), verify=True)
    chat = ChatFormat.of(dataset.tokenizer())
    assert dataset.chat["template"] == "markers" and dataset.vocab_size == 50261
    with np.load(dataset.folder / dataset.chat["index"]["val"]) as index:
        start, n = int(index["start"][0]), int(index["tokens"][0])
    ids, mask = np.asarray(dataset.tokens("val", 0)[start : start + n]), dataset.mask("val", 0)[start : start + n] == 1
    assert ids[0] == chat.opens["user"][0] and ids[mask][-1] == chat.end and not mask[0]
    text = load_pipelines(pipelines(tmp_path))  # the same documents as a pretraining dataset, the same split settings
    pretraining = TokenDataset.open(tokenize_dataset(text, "text", deduped_documents(text, "text")).location)
    with np.load(pretraining.folder / "eval.npz") as held_out:
        pretraining_val = set(held_out["key"].tolist())
    parts = sorted(config.root.local(conversations.rel).glob("part-*.parquet"))
    keys = np.concatenate([content_keys(pq.read_table(p, columns=["exact_key"]).column("exact_key").combine_chunks())
                           for p in parts])  # fmt: skip
    val = content_hashes(keys, 0) < dataset.chat["val_threshold"]
    assert val.any() and set(keys[val].tolist()) <= pretraining_val  # never trained on by the base
    assert not set(keys[~val].tolist()) & pretraining_val


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webtext2019zh": [{"task": "qa", "user": "{question}", "assistant": "{text}"}]}, "question is not a field"),
        (
            {"webtext2019zh": [{"task": "qa", "user": "{title}", "assistant": "{text}", "best_of": "qid"}]},
            "best_of and rank_by go together",
        ),
        ({"webtext2019zh": [{"task": "Q A", "user": "{text}", "assistant": "{text}"}]}, "task must be a short"),
        ({"thucnews": [{"task": "qa", "user": "{title}", "assistant": "{text}"}]}, "not a corpus of this dataset"),
    ],
)
def test_a_conversation_naming_what_its_corpus_lacks_is_refused_at_load(tmp_path, change, message):
    shipped = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))["datasets"]["zh-chat"]
    conversations = {name: shipped["conversations"][name] for name in FORMATS} | change
    with pytest.raises(ConfigError, match=message):
        load_pipelines(pipelines(tmp_path, conversations=conversations))


def test_a_dataset_of_conversations_has_them_for_every_corpus_and_no_mixture(tmp_path):
    shipped = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))["datasets"]["zh-chat"]
    some = {name: shipped["conversations"][name] for name in FORMATS if name != "news2016zh"}
    with pytest.raises(ConfigError, match="no conversations for news2016zh"):
        load_pipelines(pipelines(tmp_path, conversations=some))
    every = {name: shipped["conversations"][name] for name in FORMATS}
    with pytest.raises(ConfigError, match="trained on every conversation alike"):
        load_pipelines(pipelines(tmp_path, conversations=every, mixture={"shares": {"news2016zh": 0.5}}))
