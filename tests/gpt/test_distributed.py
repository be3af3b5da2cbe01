"""Real processes: torchrun with gloo, kill -9 and resume, torchrun --max-restarts, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from gpt.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TRAIN = ["-m", "gpt.train"]


def losses(out_dir: Path) -> dict[int, float]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def last_step(out_dir: Path) -> int:
    try:
        return max(losses(out_dir), default=0)
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@contextmanager
def spawn(cmd: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    """Start `cmd` in its own process group; whatever happens in the test, no process outlives it."""
    proc = subprocess.Popen(cmd, start_new_session=True, text=True, **kwargs)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(cmd: list[str], timeout: float = 240) -> str:
    with spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-5000:]
    return output


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before the test could interrupt it"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.005)


MODERN = {"model": {"arch": "qwen3"}, "optimizer": "muon", "lr_schedule": "wsd"}
RECIPES = pytest.mark.parametrize("recipe", [{}, MODERN], ids=["gpt2-adamw", "qwen3-muon-wsd"])


@RECIPES
def test_torchrun_two_processes_then_restart_after_a_crashed_worker(tiny, tmp_path, recipe):
    settings = dict(max_iters=40, grad_accum=2, lr_decay_iters=40, ckpt_interval=5, **recipe)
    _, ref_cfg = tiny(out_dir=tmp_path / "ref", **settings)
    assert "on 2 x cpu" in run([*TORCHRUN, *TRAIN, str(ref_cfg)])
    reference = losses(tmp_path / "ref")
    assert sorted(reference) == list(range(1, 41))
    assert [p.name for p in list_checkpoints(tmp_path / "ref")][-1] == "step-40"

    _, cfg = tiny(out_dir=tmp_path / "crash", **settings)
    cmd = [*TORCHRUN, "--max-restarts=1", *TRAIN, str(cfg)]
    with spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        wait_for(lambda: last_step(tmp_path / "crash") >= 12, proc)
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, timeout=30
        ).stdout.split()
        assert len(workers) == 2
        os.kill(int(workers[1]), signal.SIGKILL)  # a worker dies without warning
        output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output[-3000:]
    assert "resuming from" in output
    assert losses(tmp_path / "crash") == reference


@RECIPES
def test_kill_9_then_resume_equals_the_uninterrupted_run(tiny, tmp_path, recipe):
    settings = dict(max_iters=60, lr_decay_iters=60, ckpt_interval=5, **recipe)
    _, ref_cfg = tiny(out_dir=tmp_path / "ref", **settings)
    run([sys.executable, *TRAIN, str(ref_cfg)])
    reference = losses(tmp_path / "ref")

    _, cfg = tiny(out_dir=tmp_path / "run", **settings)
    with spawn([sys.executable, *TRAIN, str(cfg)], stdout=subprocess.DEVNULL) as proc:
        wait_for(lambda: last_step(tmp_path / "run") >= 23, proc)
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = last_step(tmp_path / "run")
    assert killed_at < 60
    run([sys.executable, *TRAIN, str(cfg), "--init_from=resume"])
    assert losses(tmp_path / "run") == reference  # bitwise: same floats, same steps, nothing duplicated


def test_sigterm_saves_a_checkpoint_then_exits(tiny, tmp_path):
    _, cfg = tiny(max_iters=100_000, ckpt_interval=10_000, eval_interval=10_000)
    with spawn([sys.executable, *TRAIN, str(cfg)], stdout=subprocess.DEVNULL) as proc:
        wait_for(lambda: last_step(tmp_path / "run") >= 5, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    ckpts = list_checkpoints(tmp_path / "run")
    assert len(ckpts) == 1 and ckpts[0].name == f"step-{last_step(tmp_path / 'run')}"
