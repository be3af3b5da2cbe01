import json
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SHAKESPEARE, SHARED_DATA, run_logs, tiny_settings, train
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from cli.main import main
from flows.build_corpus import build_corpus
from gpt.config import TrainConfig, from_dict
from gpt.errors import FixableError
from gpt.shards import HEADER_BYTES, ShardError, TokenDataset
from tasks.corpus.sources.download import DownloadError
from tasks.stage import read_info


@pytest.fixture(scope="module")
def prefect():
    with prefect_test_harness(server_startup_timeout=60):
        yield


def pipelines(tmp_path, url: str, sha256: str = "") -> str:
    fixtures = REPO / "tests" / "tasks" / "corpus" / "fixtures"
    data = {
        "data_root": "data",
        "workers": 1,
        "corpora": {
            "thucnews": {
                "format": "thucnews",
                "sources": [{"path": str(SHARED_DATA / "samples" / "thucnews" / "THUCNews.zip")}],
            },
            "webtext": {
                "format": "webtext2019zh",
                "sources": [{"path": str(fixtures / "webtext2019zh.json")}],
                "where": "star >= 5",
            },
            "shakespeare": {"format": "text", "kind": "english", "sources": [{"url": url, "sha256": sha256}]},
        },
        "datasets": {"mix": {"corpora": ["thucnews", "webtext", "shakespeare"]}},
    }
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_flow_builds_then_a_second_run_is_all_cache_hits(prefect, tmp_path, file_server, monkeypatch):
    monkeypatch.delenv("GPTFLOW_MIRROR", raising=False)
    file_server.files["/input.txt"] = SHAKESPEARE.read_bytes()
    config = pipelines(tmp_path, f"{file_server.url}/input.txt")
    first = build_corpus("mix", config_path=config)
    tokens = TokenDataset.open(first.location, verify=True)
    stats = read_info(tokens.folder)["extra"]["stats"]
    assert tokens.manifest["tokenizer"] == "gpt2" and set(stats["corpora"]) == {"thucnews", "webtext", "shakespeare"}
    assert stats["corpora"]["shakespeare"]["val_docs"] == 1  # one document: split by position
    deduped = read_info(next((tmp_path / "data" / "deduped").iterdir()))
    per_corpus = deduped["extra"]["per_corpus"]
    assert per_corpus["webtext"]["rows"] == 1  # star >= 5 keeps one of the two good answers
    assert per_corpus["shakespeare"]["rows"] == 1 and per_corpus["thucnews"]["rows"] > 60
    downloads = len(file_server.requests)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("info.json")}
    assert len(stamps) == 8  # three corpus, three filtered, one deduped, one tokens
    report = Artifact.get("build-corpus-mix").data
    assert f"- shakespeare: {file_server.url}/input.txt has no sha256 in pipelines.yaml: got 1,115,394 bytes" in report

    state = build_corpus("mix", config_path=config, return_state=True)
    second = state.result()
    assert second.location == first.location and second.cached and len(file_server.requests) == downloads + 1
    logged = [log.message for log in run_logs(state.state_details.flow_run_id)]  # the report stays an artifact
    assert f"build-corpus mix: every stage reused, {second.location}; its report is artifact build-corpus-mix" in logged
    assert not any("| corpus | read |" in line for line in logged)
    assert "if-none-match" in file_server.requests[-1]  # the unpinned URL is asked whether it changed: 304
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("info.json")} == stamps

    changed = build_corpus("mix", overrides=["--corpora.webtext.where=star >= 3"], config_path=config)
    assert changed.location != first.location
    infos = sorted((tmp_path / "data" / "filtered").glob("webtext-*/info.json"))
    assert len(infos) == 2 and len(list((tmp_path / "data" / "corpus").glob("webtext-*"))) == 1
    assert json.loads(infos[0].read_text())["counts"]["rows"] + json.loads(infos[1].read_text())["counts"]["rows"] == 3


def test_a_wrong_checksum_is_fetched_once_and_ends_the_run_with_its_own_error(
    prefect, tmp_path, file_server, monkeypatch
):
    monkeypatch.delenv("GPTFLOW_MIRROR", raising=False)
    file_server.files["/input.txt"] = SHAKESPEARE.read_bytes()
    config = pipelines(tmp_path, f"{file_server.url}/input.txt", sha256="0" * 64)
    with pytest.raises(DownloadError, match="expected 0000.*update sha256 in pipelines.yaml"):
        build_corpus("mix", config_path=config)
    assert len(file_server.requests) == 1


def test_cli_reports_config_errors_before_starting(tmp_path, capsys):
    path = tmp_path / "pipelines.yaml"
    path.write_text("corpora: {a: {format: csv, sources: [{path: x}]}}\n", encoding="utf-8")
    assert main(["build-corpus", "--dataset", "a", "--config", str(path)]) == 2
    assert "corpora.a.format must be one of" in capsys.readouterr().err


def test_a_damaged_shard_stops_training_and_the_printed_command_rebuilds_it(prefect, tmp_path):
    shakespeare = {"format": "text", "kind": "english", "sources": [{"path": str(SHAKESPEARE)}]}
    data = {"corpora": {"shakespeare": shakespeare}, "datasets": {"plays": {"corpora": ["shakespeare"]}}}
    data["datasets"]["plays"] |= {"dedupe": {"near": False}, "tokenize": {"tokenizer": "char"}}
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    elsewhere = f"--data_root={tmp_path / 'data root'}"  # built with an override: the repair needs it too
    folder = Path(build_corpus("plays", [elsewhere], config_path=str(tmp_path / "pipelines.yaml")).location)
    assert folder.is_relative_to(tmp_path / "data root")
    shard = folder / "train-00000.bin"
    for damage, error in ((flip_a_byte, "does not match its sha256"), (cut_short, "is truncated")):
        cfg = from_dict(TrainConfig, tiny_settings(folder, tmp_path / damage.__name__, max_iters=2, eval_interval=2))
        damage(shard)
        with pytest.raises(ShardError, match=f"shard {shard} {error}") as failed:
            train(cfg)
        command = shlex.split(str(failed.value).split("Rebuild the dataset: ")[1])
        assert command[:4] == ["gptflow", "build-corpus", "--dataset", "plays"] and command[-1] == elsewhere
        assert main(command[1:]) == 0
        assert train(cfg)["step"] == 2


def flip_a_byte(shard):
    data = bytearray(shard.read_bytes())
    data[HEADER_BYTES + 1000] ^= 0x01
    shard.write_bytes(bytes(data))


def cut_short(shard):
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size - 10)


def test_a_build_that_keeps_no_document_fails_with_the_counts_that_say_why(prefect, tmp_path, file_server):
    file_server.files["/input.txt"] = SHAKESPEARE.read_bytes()
    path = pipelines(tmp_path, f"{file_server.url}/input.txt")
    with pytest.raises(FixableError) as failed:
        build_corpus("mix", ["--datasets.mix.filter.all.min_chars=10000000"], config_path=path)
    message = str(failed.value)
    assert message.startswith("dataset 'mix' keeps no document: thucnews: 70 records read, 70 usable, none kept")
    assert "(dropped: too_short 70)" in message and "webtext: 8 records read, 2 usable (quarantined: " in message
    assert "broken_json 1" in message and "shakespeare: 1 records read, 1 usable" in message and "\n" not in message
    assert not (tmp_path / "data" / "tokens").exists()
