"""A dataset in an open base's own tokens (`tokenize: {tokenizer: hf, hf_tokenizer: ...}`): every document as the
base's tokenizer encodes it and ended with its <|endoftext|>, the tokenizer kept with the dataset, and the folder
found again by the tokenizer's content wherever it is read from."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import SHARED_DATA, write_pipelines
from hf_base import SPECIALS

from gpt.config import ConfigError
from gpt.shards import TokenDataset
from gpt.tokenizer import HFTokenizer
from tasks.config import load_pipelines
from tasks.corpus.stage1_raw import fetch_sources
from tasks.corpus.stage2_ingest import ingest_corpus
from tasks.corpus.stage3_filter import filter_corpus
from tasks.corpus.stage4_dedupe import dedupe_dataset
from tasks.corpus.stage6_tokenize import tokenize_dataset
from tasks.registry import tokenizer_file


def build(tmp_path, hf_tokenizer: str):
    data = {
        "data_root": str(tmp_path / "data"),
        "workers": 2,
        "corpora": {
            "tang": {
                "format": "chinese-poetry",
                "sources": [{"path": str(SHARED_DATA / "chinese-poetry" / "全唐诗"), "members": ["*.[01]000.json"]}],
            }
        },
        "datasets": {"poems": {"corpora": ["tang"], "tokenize": {"tokenizer": "hf", "hf_tokenizer": hf_tokenizer}}},
    }
    config = load_pipelines(write_pipelines(tmp_path, data))
    corpus = ingest_corpus(config, "poems", "tang", fetch_sources(config, "tang"))
    deduped = dedupe_dataset(config, "poems", [filter_corpus(config, "poems", corpus)])
    return tokenize_dataset(config, "poems", deduped, tokenizer_file(config, hf_tokenizer, "hf_tokenizer"))


def test_every_document_is_in_the_bases_tokens_and_ends_with_its_end_of_text(tmp_path, base):
    from tokenizers import Tokenizer

    tokens = build(tmp_path, str(base))
    dataset = TokenDataset.open(tokens.location, verify=True)
    tokenizer = dataset.tokenizer()
    theirs = Tokenizer.from_file(str(base / "tokenizer.json"))
    assert tokens.rel.startswith("tokens/poems-hf-") and isinstance(tokenizer, HFTokenizer)
    assert dataset.manifest["tokenizer"] == tokenizer.name and dataset.manifest["dtype"] == "uint16"
    assert tokenizer.definition == json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    ids = np.asarray(dataset.tokens("val", 0))
    eot = theirs.token_to_id(SPECIALS[0])
    documents = np.split(ids, np.flatnonzero(ids == eot) + 1)[:-1]
    assert len(documents) == dataset.manifest["eval"]["docs"] > 10 and all(d[-1] == eot for d in documents)
    for document in documents[:20]:
        text = theirs.decode(document[:-1].tolist(), skip_special_tokens=False)
        assert theirs.encode(text, add_special_tokens=False).ids == document[:-1].tolist()


def test_the_tokenizer_is_part_of_the_fingerprint_by_content(tmp_path, base):
    first = build(tmp_path / "a", str(base))
    copy = shutil.copytree(base, tmp_path / "elsewhere")
    again = build(tmp_path / "a", str(copy))
    assert again.cached and again.rel == first.rel
    config = json.loads((copy / "tokenizer_config.json").read_text(encoding="utf-8"))
    (copy / "tokenizer_config.json").write_text(json.dumps(config | {"eos_token": "<|im_end|>"}), encoding="utf-8")
    definition = json.loads((copy / "tokenizer.json").read_text(encoding="utf-8"))
    definition["model"]["merges"] = definition["model"]["merges"][:-50]  # another tokenizer
    (copy / "tokenizer.json").write_text(json.dumps(definition), encoding="utf-8")
    assert build(tmp_path / "a", str(copy)).rel != first.rel


def test_hf_and_hf_tokenizer_go_together(tmp_path):
    data = {"corpora": {"t": {"format": "text", "sources": [{"path": "x.txt"}]}}}
    for tokenize in ({"tokenizer": "hf"}, {"hf_tokenizer": "Qwen/Qwen3-0.6B-Base"}):
        data["datasets"] = {"d": {"corpora": ["t"], "tokenize": tokenize}}
        with pytest.raises(ConfigError, match="datasets.d.tokenize: tokenizer: hf and hf_tokenizer go together"):
            load_pipelines(write_pipelines(tmp_path, data))


def test_a_hub_id_offline_and_not_cached_is_one_line_naming_the_key(tmp_path):
    code = (
        "from gpt.hf import hub_folder, TOKENIZER_FILES\n"
        "try:\n    hub_folder('Qwen/Qwen3-0.6B-Base', TOKENIZER_FILES, 'hf_tokenizer')\n"
        "except Exception as e:\n    print(type(e).__name__, e)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # no network, an empty cache
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("ConfigError hf_tokenizer: could not get Qwen/Qwen3-0.6B-Base from the Hugging Face hub")
    assert out.strip().endswith("give that folder instead.") and out.count("\n") == 1
