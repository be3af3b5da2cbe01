"""A process killed while it prunes old checkpoints never breaks the run: readers skip a folder they cannot read
(and say so), the next save removes it, and the run resumes and finishes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO, train

from gpt.checkpoint import COMPLETE, best_checkpoint, list_checkpoints, prune_checkpoints, resolve_checkpoint
from gpt.config import TrainConfig, from_dict, to_dict
from gpt.sample import load_for_sampling

KILL_AT_REMOVAL = """
import os, signal, sys
from pathlib import Path
from gpt.checkpoint import prune_checkpoints
target, removals = int(sys.argv[2]), [0]
def hook(event, args):
    if event == "os.remove":
        removals[0] += 1
        if removals[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)   # kill -9, right after this removal's audit event
sys.addaudithook(hook)
prune_checkpoints(Path(sys.argv[1]), keep_last=1)
"""
"""Prunes a run folder and is killed with SIGKILL at its N-th file removal: a real kill at a chosen point."""


def run_folder(tiny, tmp_path, name: str):
    cfg, _ = tiny(out_dir=tmp_path / name, max_iters=20, eval_interval=10, ckpt_interval=5, keep_last=10)
    train(cfg)
    return cfg, tmp_path / name


def assert_readers_work(out_dir) -> None:
    ckpts = list_checkpoints(out_dir)
    assert ckpts and all((p / "meta.json").is_file() and (p / "model.safetensors").is_file() for p in ckpts)
    assert best_checkpoint(out_dir) in ckpts and resolve_checkpoint(out_dir) in ckpts


@pytest.mark.slow
@pytest.mark.parametrize("removal", [1, 2, 3, 4, 5, 7])
def test_a_kill_during_pruning_leaves_a_run_that_reads_resumes_and_finishes(tiny, tmp_path, removal):
    cfg, out_dir = run_folder(tiny, tmp_path, "run")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_REMOVAL, str(out_dir), str(removal)], cwd=REPO)
    assert killed.returncode == -9
    assert_readers_work(out_dir)
    train(from_dict(TrainConfig, {**to_dict(cfg), "init_from": "resume", "max_iters": 30}))
    assert_readers_work(out_dir)
    steps = {p.name for p in out_dir.iterdir() if p.name.startswith("step-")}
    assert {p.name for p in list_checkpoints(out_dir)} == steps  # nothing half-removed is left behind


def test_a_folder_holding_only_its_marker_is_skipped_said_and_cleared(tiny, tmp_path, capsys):
    cfg, out_dir = run_folder(tiny, tmp_path, "run")
    broken = out_dir / "step-20"
    for path in broken.iterdir():
        if path.name != COMPLETE:
            path.unlink()
    assert [p.name for p in list_checkpoints(out_dir)] == ["step-5", "step-10", "step-15"]
    assert f"skipping {broken}: marked COMPLETE but its meta.json or weights cannot be read" in capsys.readouterr().err
    assert load_for_sampling(resolve_checkpoint(out_dir))  # sampling the run reads a checkpoint it can
    train(from_dict(TrainConfig, {**to_dict(cfg), "init_from": "resume", "max_iters": 25}))
    assert [p.name for p in list_checkpoints(out_dir)][-1] == "step-25"
    prune_checkpoints(out_dir, keep_last=1)
    assert not broken.exists()
