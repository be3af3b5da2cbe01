"""The bpe stage: a byte-level BPE trained on a dataset's train documents only, encoded at tiktoken's speed, the same
as its Hugging Face tokenizer.json, reused by fingerprint or by path, and trained on by the engine."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import SHARED_DATA, exact_keys, tiny_settings, train, write_pipelines

from gpt.config import TrainConfig, from_dict
from gpt.sample import SampleOptions, generate_texts, load_for_sampling
from gpt.shards import TokenDataset
from gpt.tokenizer import TiktokenTokenizer, load_tokenizer, tokenizer_from_spec
from tasks.config import load_pipelines
from tasks.corpus.settings import TokenizeConfig
from tasks.corpus.stage1_raw import fetch_sources
from tasks.corpus.stage2_ingest import ingest_corpus
from tasks.corpus.stage3_filter import filter_corpus
from tasks.corpus.stage4_dedupe import dedupe_dataset
from tasks.corpus.stage5_bpe import bpe_dataset, train_bpe, train_texts, trained_tokenizer
from tasks.corpus.stage6_tokenize import tokenize_dataset
from tasks.corpus.text.split import split_plan
from tasks.registry import tokenizer_file

POEMS = SHARED_DATA / "chinese-poetry"


def poems(folder: str, files: int) -> list[str]:
    texts = []
    for path in sorted((POEMS / folder).glob("*.json"))[:files]:
        texts += ["\n".join(p["paragraphs"]) for p in json.loads(path.read_text()) if p["paragraphs"]]
    return texts


@pytest.fixture(scope="module")
def tang_bpe():
    return train_bpe(poems("全唐诗", 10), vocab_size=2000, name="tang-2000")


def test_a_trained_bpe_encodes_chinese_in_fewer_tokens_and_round_trips(tang_bpe):
    held_out = "\n".join(poems("宋词", 1)) + "\nGPT-2 在 2019 年发布, with 1,558M parameters!  😀\n"
    ids = tang_bpe.encode(held_out)
    assert tang_bpe.decode(ids) == held_out and tang_bpe.n_vocab == 2000 and tang_bpe.eot_token == 1999
    assert max(ids) < 1999 and len(ids) < 0.75 * len(TiktokenTokenizer("gpt2").encode(held_out))
    again = tokenizer_from_spec(json.loads(json.dumps(tang_bpe.spec())))
    assert again.encode(held_out) == ids and (again.encode_to_numpy(held_out) == np.array(ids)).all()


def test_the_hugging_face_tokenizer_encodes_the_same(tang_bpe):
    from gpt.hf import hf_tokenizer

    hf = hf_tokenizer(tang_bpe)
    texts = [
        *poems("宋词", 1)[:500],
        "Hello, world!\n\n  two  spaces\tand a tab 123456789 ...!?",
        "中文English混排2024年",
    ]
    assert all(hf.encode(t).ids == tang_bpe.encode(t) for t in texts)
    assert hf.token_to_id("<|endoftext|>") == tang_bpe.eot_token


def deduped_part(path, rows: list[dict]):
    table = pa.table({key: [r[key] for r in rows] for key in ("doc_id", "corpus", "text", "chars")})
    table = table.append_column("exact_key", exact_keys([r["text"] for r in rows]))
    pq.write_table(table, path)
    return path


def test_training_text_is_the_train_split_or_a_uniform_sample_of_it(tmp_path):
    texts = list(dict.fromkeys(poems("全唐诗", 2)))  # distinct, as after dedupe
    rows = [{"doc_id": f"d{i}", "corpus": "tang", "text": t, "chars": len(t)} for i, t in enumerate(texts)]
    parts = [deduped_part(tmp_path / "part-00000.parquet", rows)]
    config = TokenizeConfig(val_fraction=0.1)
    plan = split_plan(parts, config, set())
    val = {t for t, v in zip(texts, plan.to_val(0), strict=True) if v}
    everything = list(train_texts(parts, config, set()))
    assert len(val) > 100 and not val & set(everything) and len(everything) == len(texts) - len(val)
    budget = sum(map(len, everything)) // 4
    sample = list(train_texts(parts, TokenizeConfig(val_fraction=0.1, bpe_train_chars=budget), set()))
    assert not val & set(sample) and 0.8 * budget < sum(map(len, sample)) < 1.2 * budget


def pipelines(tmp_path, tokenize: dict) -> str:
    data = {
        "data_root": str(tmp_path / "data"),
        "workers": 1,
        "corpora": {
            "tang": {
                "format": "chinese-poetry",
                "sources": [{"path": str(POEMS / "全唐诗"), "members": ["*.[01]*.json"]}],
            }
        },
        "datasets": {"poems": {"corpora": ["tang"], "tokenize": {"val_fraction": 0.05, **tokenize}}},
    }
    return write_pipelines(tmp_path, data)


def build(path: str):
    config = load_pipelines(path)
    corpus = ingest_corpus(config, "poems", "tang", fetch_sources(config, "tang"))
    deduped = dedupe_dataset(config, "poems", [filter_corpus(config, "poems", corpus)])
    reuse = config.datasets["poems"].tokenize.reuse_tokenizer
    vocabulary = None if reuse else bpe_dataset(config, "poems", deduped)
    tokenizer = tokenizer_file(config, reuse) if reuse else trained_tokenizer(config, vocabulary)
    return vocabulary, tokenize_dataset(config, "poems", deduped, tokenizer)


def test_a_dataset_trains_its_bpe_once_then_trains_a_model_that_samples_and_resumes(tmp_path):
    path = pipelines(tmp_path, {"tokenizer": "bpe", "vocab_size": 1500})
    vocabulary, tokens = build(path)
    dataset = TokenDataset.open(tokens.location, verify=True)
    tokenizer = dataset.tokenizer()
    assert tokenizer.n_vocab == 1500 and dataset.manifest["tokenizer"] == tokenizer.name
    assert tokenizer.name.startswith("poems-bpe1500-")
    assert (tmp_path / "data" / tokens.rel / "hf" / "tokenizer.json").is_file()
    assert vocabulary.counts["train_chars"] > 100_000
    again_vocabulary, again = build(path)
    assert again_vocabulary.cached and again.cached and again.location == tokens.location

    settings = tiny_settings(tokens.location, tmp_path / "run", max_iters=10)
    result = train(from_dict(TrainConfig, settings))
    assert result["step"] == 10 and np.isfinite(result["best_val_loss"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_bpc" in r]
    assert [r["step"] for r in evals] == [0, 10] and all(0 < r["val_bpc/tang"] == r["val_bpc"] for r in evals)
    assert evals[-1]["val_bpc"] < evals[0]["val_bpc"] and evals[0]["val_bits_per_byte"] < evals[0]["val_bpc"]
    model, sampler, _ = load_for_sampling(tmp_path / "run", device="cpu")
    assert sampler.spec() == tokenizer.spec()
    [text] = generate_texts(model, sampler, "白日", SampleOptions(max_new_tokens=8, seed=1, stop_at_eot=False))
    assert len(sampler.encode(text)) >= 4  # new tokens, decoded whole
    resumed = train(from_dict(TrainConfig, {**settings, "max_iters": 14, "init_from": "resume"}))
    assert resumed["step"] == 14


def test_a_dataset_can_reuse_the_tokenizer_of_another(tmp_path):
    first = pipelines(tmp_path / "a", {"tokenizer": "bpe", "vocab_size": 1200})
    _, tokens = build(first)
    second = pipelines(tmp_path / "b", {"tokenizer": "bpe", "reuse_tokenizer": tokens.location, "val_fraction": 0.2})
    vocabulary, reused = build(second)
    assert vocabulary is None
    assert (
        load_tokenizer(f"{reused.location}/tokenizer.json").spec()
        == load_tokenizer(f"{tokens.location}/tokenizer.json").spec()
    )
