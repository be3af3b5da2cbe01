"""README's "Start from an open Chinese base model", run as written against a base made here (tests/hf_base.py) in
place of the hub's: build-corpus in the base's own tokens, pretrain from its folder, the registered version served
as an MLflow model, exported back to the base's format for transformers, and one night carried on from it (Prefect's
test server in this process, an MLflow registry in a sqlite file, torchrun)."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import torch
import yaml
from helpers import REPO, SHARED_DATA
from hf_base import poems
from prefect.testing.utilities import prefect_test_harness

from cli import export
from cli.flow_commands import build_corpus_main, continue_main, pretrain_main
from gpt.checkpoint import load_model, resolve_checkpoint
from gpt.tokenizer import load_tokenizer
from tasks.config import load_pipelines
from tasks.registry import client_for, find_version, version_folder

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers")
MODEL = "gptflow-qwen3-0.6b-zh"
TINY = {
    "device": "cpu", "cpu_threads": 1, "model": {"block_size": 64, "dropout": 0.0}, "batch_size": 4, "grad_accum": 1,
    "max_iters": 8, "warmup_iters": 2, "eval_interval": 8, "eval_iters": 2, "eval_chars": 2000, "log_interval": 1,
    "ckpt_interval": 8, "compile": False, "dtype": "float32",
}  # fmt: skip
"""The preset's engine settings at a CPU test's size (the shipped preset trains a 0.6B model in bfloat16)."""


def readme_commands() -> list[list[str]]:
    """The commands of README's section, as a user types them."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Start from an open Chinese base model", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.startswith("gptflow ")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, base):
    """pipelines.yaml with the shipped dataset and preset of the section, their hub id swapped for a base made
    here, over two files of Tang poems."""
    folder = tmp_path_factory.mktemp("open-base")
    shipped = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))
    dataset, preset = shipped["datasets"]["zh-qwen3"], shipped["training"]["qwen3-0.6b-zh"]
    assert dataset["tokenize"]["hf_tokenizer"] == preset["settings"]["init_from"] == "Qwen/Qwen3-0.6B-Base"
    dataset |= {
        "corpora": ["tang"],
        "tokenize": dataset["tokenize"] | {"hf_tokenizer": str(base), "val_fraction": 0.05},
    }
    preset["settings"] = preset["settings"] | TINY | {"init_from": str(base)}
    preset["continued"] = preset.get("continued", {}) | {"steps": 4}
    tang = {"path": str(SHARED_DATA / "chinese-poetry" / "全唐诗"), "members": ["poet.tang.[01]000.json"]}
    data = {
        "data_root": "data", "workers": 1, "corpora": {"tang": {"format": "chinese-poetry", "sources": [tang]}},
        "datasets": {"zh-qwen3": dataset}, "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "open-base"},
        "training": {"qwen3-0.6b-zh": preset},
    }  # fmt: skip
    path = folder / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with prefect_test_harness(server_startup_timeout=60):
        yield path, base


def test_the_readme_commands_continue_the_base_register_serve_export_and_carry_it_on(stack, tmp_path, monkeypatch):
    import mlflow.pyfunc

    path, base = stack
    commands = {"build-corpus": build_corpus_main, "pretrain": pretrain_main}
    ran = readme_commands()
    assert [argv[1] for argv in ran] == ["build-corpus", "pretrain"]
    for argv in ran:
        assert commands[argv[1]]([*argv[2:], "--config", str(path)]) == 0
    client = client_for(load_pipelines(path))
    version = find_version(client, MODEL, "latest")
    assert version is not None and float(version.tags["val_bpc"]) > 0
    ckpt = version_folder(client, version)
    assert load_tokenizer(ckpt / "tokenizer.json").definition == json.loads((base / "tokenizer.json").read_text())

    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)  # served as MLflow serves it
    served = mlflow.pyfunc.load_model(f"models:/{MODEL}@latest")
    [reply] = served.predict(["床前明月光"], params={"max_new_tokens": 6, "seed": 1})
    assert isinstance(reply, str) and reply

    out = tmp_path / "export"
    assert export.main([f"models:/{MODEL}@latest", "--out", str(out), "--config", str(path)]) == 0
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert json.loads((out / name).read_text("utf-8")) == json.loads((base / name).read_text("utf-8"))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours, _ = load_model(resolve_checkpoint(ckpt))
    idx = torch.tensor([load_tokenizer(base / "tokenizer.json").encode(poems(1)[0])[:40]])
    with torch.no_grad():
        logits, _ = ours.eval()(idx, idx)
        assert (logits - theirs(idx).logits).abs().max().item() < 1e-4

    assert continue_main(["--preset", "qwen3-0.6b-zh", "--config", str(path)]) == 0
    night = find_version(client, MODEL, "latest")
    assert night.tags["parent_version"] == str(version.version) and night.version != version.version
