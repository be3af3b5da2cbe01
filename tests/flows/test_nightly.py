"""Nights of continue-training in this process (Prefect's test server, an MLflow registry in a sqlite file, torchrun):
new documents first, a worse night left out of `champion`, a night stopped midway resumed to the same weights."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import SHAKESPEARE
from prefect.testing.utilities import prefect_test_harness
from safetensors.torch import load_file

from flows.continue_training import continue_training
from flows.pretrain import pretrain_gpt2
from gpt.checkpoint import list_checkpoints, read_meta, resolve_checkpoint
from gpt.shards import TokenDataset
from gpt.tokenizer import load_tokenizer
from tasks.config import load_pipelines
from tasks.registry import client_for, find_version
from tasks.training.nightly import NIGHT_FILE

pytestmark = pytest.mark.slow
MODEL = "gptflow-tiny"
SETTINGS = {
    "device": "cpu", "cpu_threads": 1, "batch_size": 8, "max_iters": 60, "lr": 1e-3, "lr_schedule": "constant",
    "eval_interval": 30, "eval_iters": 2, "eval_chars": 3000, "log_interval": 1, "ckpt_interval": 30,
    "model": {"arch": "qwen3", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.0},
    "optimizer": "muon", "muon_lr": 0.02,
}  # fmt: skip
"""The qwen3 family with Muon: the nights carry both optimizers' state on."""


def speeches(text: str) -> list[str]:
    return [block.strip() for block in text.split("\n\n") if block.strip()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """pipelines.yaml over a folder of JSON-lines files, pretrained once: (its path, the folder of the files)."""
    folder = tmp_path_factory.mktemp("nightly")
    plays = folder / "plays"
    plays.mkdir()
    write_docs(plays / "day-0.jsonl", speeches(SHAKESPEARE.read_text(encoding="utf-8")[:120_000]))
    data = {
        "data_root": "data",
        "workers": 1,
        "corpora": {"plays": {"format": "jsonl", "kind": "english", "sources": [{"path": "plays"}]}},
        "datasets": {
            "plays": {
                "corpora": ["plays"],
                "dedupe": {"near": False},
                "tokenize": {"tokenizer": "char", "val_fraction": 0.1},
            }
        },
        "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "nights"},
        "training": {name: preset(lr) for name, lr in (("tiny", 1e-3), ("tiny-hot", 1.0))},
    }
    path = folder / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with prefect_test_harness(server_startup_timeout=60):
        pretrain_gpt2("tiny", config_path=str(path))
        yield str(path), plays


def preset(lr: float) -> dict:
    """A tiny preset whose nights run at `lr`, registered under MODEL."""
    sample = {"max_new_tokens": 10, "num_samples": 1}
    continued = {"steps": 30, "lr": lr}
    return {
        "dataset": "plays",
        "settings": SETTINGS,
        "registered_model": MODEL,
        "sample": sample,
        "continued": continued,
    }


def write_docs(path: Path, docs: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


def version(config_path: str, alias: str):
    return find_version(client_for(load_pipelines(Path(config_path))), MODEL, alias)


def night_folder(result: dict) -> Path:
    return Path(result["out_dir"])


def test_a_night_trains_first_on_the_documents_added_since_its_parent(stack):
    config_path, plays = stack
    parent = version(config_path, "champion")
    added = [*speeches(SHAKESPEARE.read_text(encoding="utf-8")[200_000:204_000]), "床前明月光，疑是地上霜。"]
    write_docs(plays / "day-1.jsonl", added)
    result = continue_training("tiny", config_path=config_path)
    night = night_folder(result)
    newest = version(config_path, "latest")
    assert newest.tags["parent_version"] == str(parent.version) and int(newest.tags["new_documents"]) > 0
    last, parent_ckpt = read_meta(list_checkpoints(night)[-1]), resolve_checkpoint(night / "parent")  # an MLflow model
    assert last["step"] == read_meta(parent_ckpt)["step"] + 30
    assert last["model"]["arch"] == "qwen3" and last["config"]["optimizer"] == "muon"
    assert last["fresh"]["cursor"] >= last["fresh"]["windows"]  # every new window trained on
    tokenizer = TokenDataset.open(night / "fresh").tokenizer()
    assert tokenizer.spec() == load_tokenizer(parent_ckpt / "tokenizer.json").spec()  # the vocabulary stayed
    fresh = set(documents(night / "fresh", tokenizer))
    now = set(documents(Path(newest.tags["known_dataset"]), tokenizer))
    before = set(documents(Path(read_meta(parent_ckpt)["dataset"]["path"]), tokenizer))
    as_read = {tokenizer.decode(tokenizer.encode(doc)) for doc in added}  # unseen characters become unknown
    new_in_train = (as_read & now) - before
    assert len(new_in_train) == int(newest.tags["new_documents"]) >= len(added) // 2  # the rest went to val
    assert new_in_train <= fresh


def documents(dataset: Path, tokenizer) -> list[str]:
    """The train documents of a token dataset (or of a night's new documents, wrapped at both ends)."""
    tokens = TokenDataset.open(dataset).tokens("train", 0)
    return tokenizer.decode(tokens.tolist()).split("<|endoftext|>")


def test_a_worse_night_does_not_move_the_champion_and_the_next_starts_from_the_champion(stack):
    config_path, _ = stack
    champion = version(config_path, "champion")
    hot = continue_training("tiny-hot", config_path=config_path)  # a thousand times the learning rate
    assert float(hot["val_bpc"]) > float(champion.tags["val_bpc"])
    hot_config = read_meta(list_checkpoints(Path(hot["out_dir"]))[-1])["config"]
    assert hot_config["muon_lr"] == pytest.approx(0.02 * 1.0 / 1e-3)  # Muon's rate scaled as AdamW's was
    assert version(config_path, "champion").version == champion.version
    assert str(version(config_path, "latest").version) == str(hot["version"])
    continue_training("tiny", config_path=config_path)
    assert version(config_path, "latest").tags["parent_version"] == str(champion.version)


def stop_after_a_checkpoint(runs: Path) -> threading.Thread:
    """SIGTERM to the torchrun of the first new run folder under `runs` once it holds a checkpoint."""
    before = set(runs.iterdir())

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for marker in runs.glob("*/step-*/COMPLETE"):
                night = marker.parent.parent
                if night not in before:
                    for process in psutil.process_iter(["cmdline"]):
                        if str(night / "config.json") in (process.info["cmdline"] or []):
                            process.send_signal(signal.SIGTERM)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_night_stopped_midway_and_run_again_ends_with_the_weights_of_an_uninterrupted_one(stack):
    config_path, _ = stack
    client = client_for(load_pipelines(Path(config_path)))
    client.set_registered_model_alias(MODEL, "parent", version(config_path, "champion").version)
    night = {"steps": 600, "alias": "parent", "overrides": ["--ckpt_interval=20"], "config_path": config_path}
    runs = Path(config_path).parent / "runs" / "tiny"
    watcher = stop_after_a_checkpoint(runs)
    with pytest.raises(Exception, match="exited with code"):
        continue_training.with_options(retries=0)("tiny", **night)
    watcher.join()
    stopped = max(runs.glob(f"*/{NIGHT_FILE}"), key=lambda p: p.stat().st_mtime).parent
    steps = [read_meta(c)["step"] for c in list_checkpoints(stopped)]
    again = continue_training("tiny", **night)
    assert night_folder(again) == stopped  # the same night, resumed from its checkpoints
    first = json.loads((stopped / "metrics.jsonl").read_text().splitlines()[0])["step"]
    assert steps and first < max(steps) < read_meta(list_checkpoints(stopped)[-1])["step"]
    whole = continue_training("tiny", **night)
    assert night_folder(whole) != stopped
    weights = [load_file(list_checkpoints(night_folder(r))[-1] / "model.safetensors") for r in (again, whole)]
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
