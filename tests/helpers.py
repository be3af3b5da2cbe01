"""Paths and settings shared by the tests (importable as `helpers`, unlike conftest modules)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GPTFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"


def train(cfg) -> dict:
    """A training run in this process (the engine's `Trainer`, as `python -m gpt.train` runs it)."""
    from gpt.dist import init_distributed
    from gpt.train import Trainer

    return Trainer(cfg, init_distributed(cfg.device)).run()


def tiny_settings(data: Path, out_dir: Path, **extra) -> dict:
    """Training settings for a model whose steps take milliseconds on one CPU thread."""
    cfg = {
        "data": str(data), "out_dir": str(out_dir), "device": "cpu", "cpu_threads": 1,
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.1},
        "batch_size": 4, "max_iters": 20, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 5,
        "eval_interval": 10, "eval_iters": 2, "log_interval": 1, "ckpt_interval": 5, "keep_last": 10,
    }  # fmt: skip
    for key, value in extra.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    return cfg
