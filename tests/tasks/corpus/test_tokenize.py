import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import exact_keys, tiny_settings, train

from gpt.bpc import EvalText
from gpt.config import TrainConfig, from_dict
from gpt.shards import TokenDataset, read_header
from gpt.tokenizer import UNK
from tasks.corpus.settings import TokenizeConfig
from tasks.corpus.stage6_tokenize import tokenize_parts

CHINESE = [
    "强化学习的思路是通用的，围棋只是一个容易评估的试验场。",
    "新华社北京电，记者从有关部门获悉，今年以来全国各地积极推进数字经济发展。",
    "专家表示，未来五年将是关键时期。数据安全与隐私保护仍是需要重点关注的问题。",
]
ENGLISH = [
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "All:\nSpeak, speak.",
    "You are all resolved?",
]


def write_parts(folder: Path, rows: list[dict], parts: int = 2, row_group: int = 7) -> list[Path]:
    """Parquet parts of the deduped stage's columns that tokenization reads, several row groups each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(parts):
        chunk = rows[k::parts]
        table = pa.table({key: [r[key] for r in chunk] for key in ("doc_id", "corpus", "text")})
        table = table.append_column("exact_key", exact_keys([r.get("key", r["text"]) for r in chunk]))
        paths.append(folder / f"part-{k:05d}.parquet")
        pq.write_table(table, paths[-1], row_group_size=row_group)
    return paths


def documents(count: int, clusters: int | None = None) -> list[dict]:
    texts = [f"{(CHINESE + ENGLISH)[i % 6]} 第{i}号 doc {i}" for i in range(count)]
    return [
        {
            "doc_id": f"d{i:05d}",
            "corpus": "zh" if i % 2 else "en",
            "text": t,
            "key": f"c{i % (clusters or count)}",
        }
        for i, t in enumerate(texts)
    ]


def decoded_docs(folder: Path, split: str) -> list[str]:
    """The split's documents; a document may run on from one shard into the next."""
    ds = TokenDataset.open(folder, verify=True)
    tokenizer = ds.tokenizer()
    paths = ds.shard_paths(split)
    tokens = np.concatenate([ds.tokens(split, i) for i in range(len(paths))])
    ends = np.flatnonzero(tokens == tokenizer.eot_token) + 1  # one past each document's end-of-text
    assert ends[-1] == len(tokens) and (tokens[ends - 1] == tokenizer.eot_token).all()
    return [tokenizer.decode(tokens[start : end - 1]) for start, end in zip([0, *ends[:-1]], ends, strict=True)]


@pytest.mark.parametrize("tokenizer", ["gpt2", "char", "cl100k_base"])
def test_text_to_shards_to_text_is_the_identity(tmp_path, tokenizer):
    rows = documents(60)
    out = tmp_path / "tokens"
    config = TokenizeConfig(tokenizer=tokenizer, val_fraction=0.2, shard_tokens=500)
    tokenize_parts(write_parts(tmp_path / "deduped", rows), config, out, 1, "rebuild", set())
    train_docs, val_docs = decoded_docs(out, "train"), decoded_docs(out, "val")
    assert Counter(train_docs + val_docs) == Counter(r["text"] for r in rows)
    assert val_docs and train_docs
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == ("uint32" if tokenizer == "cl100k_base" else "uint16")
    assert read_header(out / "train-00000.bin").dtype == np.dtype(manifest["dtype"])


def test_the_eval_index_lists_the_same_val_documents_whatever_the_tokenizer(tmp_path):
    rows = documents(60)
    parts = write_parts(tmp_path / "deduped", rows)
    indexes = {}
    for tokenizer in ("gpt2", "char"):
        out = tmp_path / tokenizer
        tokenize_parts(
            parts, TokenizeConfig(tokenizer=tokenizer, val_fraction=0.2, shard_tokens=500), out, 1, "", set()
        )
        dataset = TokenDataset.open(out)
        tokens = np.concatenate([dataset.tokens("val", i) for i in range(len(dataset.shard_paths("val")))])
        with np.load(out / "eval.npz") as index:
            indexes[tokenizer] = {k: index[k] for k in ("start", "tokens", "chars", "bytes", "corpus")}
        index, texts = indexes[tokenizer], decoded_docs(out, "val")
        spans = zip(index["start"], index["tokens"], strict=True)
        decoded = [dataset.tokenizer().decode(tokens[a : a + n]) for a, n in spans]
        assert decoded == texts and (tokens[index["start"] + index["tokens"]] == dataset.manifest["eot_token"]).all()
        assert index["chars"].tolist() == [len(t) for t in texts]
        assert index["bytes"].tolist() == [len(t.encode()) for t in texts]
        entry = dataset.manifest["eval"]
        assert entry["docs"] == len(texts) and entry["corpora"] == ["en", "zh"]
    for key in ("chars", "bytes", "corpus"):
        assert (indexes["gpt2"][key] == indexes["char"][key]).all()
    # the same evaluation text: the char dataset's documents re-encoded from the gpt2 dataset's are its own tokens
    texts = {name: EvalText.of_dataset(TokenDataset.open(tmp_path / name), 300) for name in ("gpt2", "char")}
    assert texts["gpt2"].id == texts["char"].id
    chars = TokenDataset.open(tmp_path / "char").tokenizer()
    own, other = (texts[name].documents(chars, 16) for name in ("char", "gpt2"))
    assert own.stream.tolist() == other.stream.tolist() and (own.corpus_of_target == other.corpus_of_target).all()
    assert own.chars.tolist() == other.chars.tolist() and own.bytes.tolist() == other.bytes.tolist()


def test_documents_of_one_content_key_sit_on_one_side_and_val_has_its_minimum(tmp_path):
    rows = documents(400, clusters=50)
    out = tmp_path / "tokens"
    stats = tokenize_parts(
        write_parts(tmp_path / "deduped", rows), TokenizeConfig(val_fraction=0.001, min_val_docs=30), out, 2, "", set()
    )
    val = set(decoded_docs(out, "val"))
    side = {}
    for r in rows:
        assert side.setdefault(r["key"], r["text"] in val) == (r["text"] in val)
    assert stats["total"]["val_docs"] >= 30 and stats["total"]["train_docs"] > 0
    assert stats["total"]["val_docs"] == len(val)

    few = tokenize_parts(
        write_parts(tmp_path / "few", rows[:5]), TokenizeConfig(), tmp_path / "few-tokens", 1, "", set()
    )
    assert few["total"]["val_docs"] >= 1 and few["total"]["train_docs"] >= 1  # a tiny dataset still gets a val split


def test_manifest_and_statistics_agree_with_the_files(tmp_path):
    rows = documents(120)
    out = tmp_path / "tokens"
    stats = tokenize_parts(write_parts(tmp_path / "deduped", rows), TokenizeConfig(shard_tokens=700), out, 1, "", set())
    manifest = json.loads((out / "manifest.json").read_text())
    for split, entries in manifest["splits"].items():
        headers = [read_header(out / e["file"]) for e in entries]
        assert [h.num_tokens for h in headers] == [e["tokens"] for e in entries]
        assert all(e["tokens"] == 700 for e in entries[:-1]) and 0 < entries[-1]["tokens"] <= 700
        assert sum(e["tokens"] for e in entries) == sum(v[split] for v in manifest["tokens_per_corpus"].values())
        assert sum(e["tokens"] for e in entries) == stats["total"][f"{split}_tokens"]
    assert len(list(out.glob("train-*.bin"))) == len(manifest["splits"]["train"]) > 1
    assert json.loads((out / "stats.json").read_text()) == stats
    assert sum(r["train_docs"] + r["val_docs"] for r in stats["corpora"].values()) == 120
    assert sum(r["share"] for r in stats["corpora"].values()) == pytest.approx(1, abs=1e-3)
    assert sum(sum(h.values()) for h in stats["doc_tokens_histogram"].values()) == 120
    assert not (out / "pieces").exists()


def test_a_char_vocabulary_is_saved_with_the_dataset_and_rare_characters_become_unknown(tmp_path):
    rows = documents(30)
    rows[0]["text"] += "龘"  # seen once
    out = tmp_path / "tokens"
    config = TokenizeConfig(tokenizer="char", char_min_count=2, val_fraction=0.5)
    tokenize_parts(write_parts(tmp_path / "deduped", rows), config, out, 1, "", set())
    tokenizer = TokenDataset.open(out).tokenizer()
    assert "龘" not in tokenizer.chars and "强" in tokenizer.chars
    assert rows[0]["text"].replace("龘", UNK) in decoded_docs(out, "train") + decoded_docs(out, "val")


def test_a_single_document_corpus_is_split_by_position_and_trains(tmp_path, shakespeare_text):
    text = shakespeare_text[:50_000]
    rows = [{"doc_id": "s", "corpus": "shakespeare", "text": text}]
    out = tmp_path / "tokens"
    config = TokenizeConfig(tokenizer="char")
    tokenize_parts(write_parts(tmp_path / "deduped", rows, parts=1), config, out, 1, "", {"shakespeare"})
    assert decoded_docs(out, "train") == [text[:45_000]] and decoded_docs(out, "val") == [text[45_000:]]

    settings = tiny_settings(out, tmp_path / "run", max_iters=20, eval_interval=20)
    train(from_dict(TrainConfig, settings))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 20 and losses[-1] < losses[0]
    assert any("val_loss" in r for r in rows)


def test_adding_documents_never_moves_one_from_val_to_train_and_the_train_index_finds_each(tmp_path):
    rows = documents(400)
    config = TokenizeConfig(tokenizer="char", val_fraction=0.2, min_val_docs=5, shard_tokens=3000)
    sides = {}
    for name, subset in (("before", rows[:250]), ("after", rows[::-1])):  # more documents, in another order
        out = tmp_path / name
        tokenize_parts(write_parts(tmp_path / f"{name}-deduped", subset), config, out, 1, "", set())
        sides[name] = set(decoded_docs(out, "val"))
        dataset = TokenDataset.open(out)
        tokens = np.concatenate([dataset.tokens("train", i) for i in range(len(dataset.shard_paths("train")))])
        with np.load(out / "train.npz") as index:
            spans = zip(index["start"].tolist(), index["tokens"].tolist(), strict=True)
            texts = [dataset.tokenizer().decode(tokens[a : a + n]) for a, n in spans]
            keys = index["key"]
        assert texts == decoded_docs(out, "train") and len(set(keys.tolist())) == len(texts)
    assert sides["before"] <= sides["after"] and sides["after"] - sides["before"]
