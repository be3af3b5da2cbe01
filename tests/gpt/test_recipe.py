"""Today's recipe in the engine: the qwen3 family trained with Muon and a warmup-stable-decay schedule, resumed
exactly, carried on, and started from a Hugging Face Qwen3 folder."""

import json
from pathlib import Path

import pytest
import torch
from helpers import train

from gpt.checkpoint import read_meta
from gpt.config import ConfigError, TrainConfig
from gpt.hf import export_checkpoint
from gpt.model import ModelConfig, create_model
from gpt.optim import build_optimizers, learning_rate

MODERN = {"model": {"arch": "qwen3", "n_kv_head": 1}, "optimizer": "muon", "muon_lr": 0.02, "lr_schedule": "wsd"}


def metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def losses(out_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in metrics(out_dir) if "loss" in m}


def test_warmup_stable_decay():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110, lr_schedule="wsd", wsd_decay=0.2)
    assert learning_rate(cfg, 0) == pytest.approx(1 / 11)
    assert learning_rate(cfg, 10) == learning_rate(cfg, 88) == 1.0  # held until the last 22 steps
    assert learning_rate(cfg, 99) == pytest.approx(0.1 + 0.9 * 11 / 22)
    assert learning_rate(cfg, 110) == pytest.approx(0.1)


@pytest.mark.parametrize("arch", ["gpt2", "qwen3"])
def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(arch):
    model = create_model(ModelConfig(arch=arch, n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64))
    adamw, muon = build_optimizers(model, TrainConfig(optimizer="muon", lr=3e-3, muon_lr=0.05), "cpu")
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for group in muon.param_groups for p in group["params"]}
    in_adamw = {names[id(p)] for group in adamw.param_groups for p in group["params"]}
    assert in_muon | in_adamw == set(names.values()) and not in_muon & in_adamw
    assert all(".h." in n or ".layers." in n for n in in_muon) and all(
        model.get_parameter(n).dim() == 2 for n in in_muon
    )
    outer = {names[id(p)] for p in model.embedding_and_output()}
    assert outer <= in_adamw and all(model.get_parameter(n).dim() == 1 for n in in_adamw - outer)
    assert [g["lr"] for g in muon.param_groups] == [0.05] and {g["lr"] for g in adamw.param_groups} == {3e-3}
    [single] = build_optimizers(model, TrainConfig(), "cpu")
    assert sum(len(g["params"]) for g in single.param_groups) == len(names)


def test_qwen3_with_muon_learns_and_resumes_exactly(tiny, tmp_path):
    plan = MODERN | {"lr_schedule": "cosine", "lr_decay_iters": 20}  # a schedule that does not depend on max_iters
    full, _ = tiny(out_dir=tmp_path / "full", max_iters=20, **plan)
    train(full)
    rows = metrics(tmp_path / "full")
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.1 and "val_bpc" in rows[-1]
    part, _ = tiny(out_dir=tmp_path / "part", max_iters=10, **plan)
    train(part)
    rest, _ = tiny(out_dir=tmp_path / "part", max_iters=20, init_from="resume", **plan)
    train(rest)
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    assert len(torch.load(tmp_path / "full" / "step-20" / "state.pt")["optimizer"]) == 2  # AdamW's and Muon's


def test_a_resume_with_another_optimizer_is_refused(tiny, tmp_path):
    cfg, _ = tiny(max_iters=5, **MODERN)
    train(cfg)
    other, _ = tiny(max_iters=10, init_from="resume", **(MODERN | {"optimizer": "adamw"}))
    with pytest.raises(ConfigError, match="holds the state of optimizer=muon; this run uses optimizer=adamw"):
        train(other)


def test_training_starts_from_a_hugging_face_qwen3_folder(tiny, tmp_path):
    cfg, _ = tiny(out_dir=tmp_path / "source", max_iters=20, eval_interval=20, **MODERN)
    train(cfg)
    export_checkpoint(tmp_path / "source", tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    started, _ = tiny(out_dir=tmp_path / "next", init_from=str(tmp_path / "hf"), max_iters=5, **MODERN)
    train(started)
    first = metrics(tmp_path / "next")[0]["val_loss"]
    assert first == pytest.approx(read_meta(tmp_path / "source" / "step-20")["val_loss"], rel=0.02)
    assert read_meta(tmp_path / "next" / "step-5")["model"]["arch"] == "qwen3"
