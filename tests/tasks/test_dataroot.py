import sys
import uuid

import fsspec
import pytest
import yaml
from helpers import REPO, SHAKESPEARE, on_small_disk

from gpt.config import ConfigError
from tasks.config import load_pipelines
from tasks.corpus.stage1_raw import fetch_sources
from tasks.corpus.stage2_ingest import ingest_corpus
from tasks.corpus.stage3_filter import filter_corpus
from tasks.corpus.stage4_dedupe import dedupe_dataset

FIXTURES = REPO / "tests" / "tasks" / "corpus" / "fixtures"


def config_for(tmp_path, data_root: str, work: str, overrides=None):
    data = {
        "data_root": data_root,
        "work_dir": str(tmp_path / work),
        "workers": 1,
        "corpora": {
            "webtext": {"format": "webtext2019zh", "sources": [{"path": str(FIXTURES / "webtext2019zh.json")}]},
            "news": {"format": "news2016zh", "sources": [{"path": str(FIXTURES / "news2016zh.json")}]},
        },
        "datasets": {"mix": {"corpora": ["webtext", "news"]}},
    }
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_pipelines(path, overrides)


def build(config):
    filtered = []
    for corpus in config.datasets["mix"].corpora:
        raw = fetch_sources(config, corpus)
        filtered.append(filter_corpus(config, "mix", ingest_corpus(config, "mix", corpus, raw)))
    return filtered, dedupe_dataset(config, "mix", filtered)


@pytest.fixture
def bucket():
    url = f"memory://gptflow-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def test_a_url_data_root_is_built_locally_uploaded_and_reused_from_a_fresh_working_copy(tmp_path, bucket):
    fs = fsspec.filesystem("memory")
    _, clean = build(config_for(tmp_path, f"{bucket}/data", "work-a"))
    assert clean.location == f"{bucket}/data/{clean.rel}" and not clean.cached
    uploaded = {f.split(f"{clean.rel}/", 1)[-1] for f in fs.find(clean.location)}
    assert {"info.json", "duplicates/part-00000.parquet", "part-00000.parquet", "_SUCCESS"} <= uploaded
    assert len(fs.glob(f"{bucket}/data/*/*/_SUCCESS")) == 5  # two corpus, two filtered, one deduped

    filtered, again = build(config_for(tmp_path, f"{bucket}/data", "work-b"))  # another machine, empty working copy
    assert again.cached and all(f.cached for f in filtered) and again.counts == clean.counts
    assert not [p for p in (tmp_path / "work-b").glob("*/*") if p.parent.name != "raw"]  # nothing downloaded

    filtered, changed = build(config_for(tmp_path, f"{bucket}/data", "work-b", ["--corpora.webtext.where=star >= 5"]))
    assert not changed.cached and changed.rel != clean.rel
    assert [f.cached for f in filtered] == [False, True]
    assert len(list((tmp_path / "work-b" / "corpus").glob("webtext-*/_SUCCESS"))) == 1  # fetched to rebuild from
    assert not list((tmp_path / "work-b" / "corpus").glob("news-*"))  # news' filtered stage was reused as it was
    assert fs.exists(f"{changed.location}/_SUCCESS")


def test_a_data_root_with_an_unknown_protocol_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data_root: cannot open 'nosuch://bucket/data'"):
        config_for(tmp_path, "nosuch://bucket/data", "work")


BUILD = """
import sys
from tasks.config import load_pipelines
from tasks.corpus import stage1_raw, stage2_ingest, stage3_filter, stage4_dedupe, stage6_tokenize
config = load_pipelines(sys.argv[1])
corpus = stage2_ingest.ingest_corpus(config, "plays", "plays", stage1_raw.fetch_sources(config, "plays"))
deduped = stage4_dedupe.dedupe_dataset(config, "plays", [stage3_filter.filter_corpus(config, "plays", corpus)])
stage6_tokenize.tokenize_dataset(config, "plays", deduped)
"""


@pytest.mark.slow
def test_a_full_data_root_is_one_line_naming_it(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    data = {
        "data_root": str(disk),
        "workers": 1,
        "corpora": {"plays": {"format": "text", "kind": "english", "sources": [{"path": str(SHAKESPEARE)}]}},
        "datasets": {"plays": {"corpora": ["plays"], "tokenize": {"tokenizer": "char"}}},
    }
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    ((rc, _, err),) = on_small_disk(disk, "2m", [[sys.executable, "-c", BUILD, str(config)]])
    last = err.splitlines()[-1]
    assert rc == "1" and last.startswith(f"gpt.errors.WriteError: disk full at {disk}/tokens/plays-char-")
    assert last.endswith("was not built (its partial output is removed)")
