"""Real processes: torchrun with gloo, kill -9 and resume, torchrun --max-restarts, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before the test could interrupt it"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.005)


def test_torchrun_two_processes_then_restart_after_a_crashed_worker(tiny, tmp_path):
    settings = dict(max_iters=40, grad_accum=2, lr_decay_iters=40, ckpt_interval=5)
    _, ref_cfg = tiny(out_dir=tmp_path / "ref", **settings)
    out = run([*TORCHRUN, *TRAIN, str(ref_cfg)])
    assert "on 2 x cpu" in out.stdout
    reference = losses(tmp_path / "ref")
    assert sorted(reference) == list(range(1, 41))
    assert [p.name for p in list_checkpoints(tmp_path / "ref")][-1] == "step-40"

    _, cfg = tiny(out_dir=tmp_path / "crash", **settings)
    proc = subprocess.Popen(
        [*TORCHRUN, "--max-restarts=1", *TRAIN, str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    wait_for(lambda: last_step(tmp_path / "crash") >= 12, proc)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[1]), signal.SIGKILL)  # a worker dies without warning
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output[-3000:]
    assert "resuming from" in output
    assert losses(tmp_path / "crash") == reference


def test_kill_9_then_resume_equals_the_uninterrupted_run(tiny, tmp_path):
    settings = dict(max_iters=60, lr_decay_iters=60, ckpt_interval=5)
    _, ref_cfg = tiny(out_dir=tmp_path / "ref", **settings)
    run([sys.executable, *TRAIN, str(ref_cfg)])
    reference = losses(tmp_path / "ref")

    _, cfg = tiny(out_dir=tmp_path / "run", **settings)
    proc = subprocess.Popen([sys.executable, *TRAIN, str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    proc = subprocess.Popen([sys.executable, *TRAIN, str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: last_step(tmp_path / "run") >= 5, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    ckpts = list_checkpoints(tmp_path / "run")
    assert len(ckpts) == 1 and ckpts[0].name == f"step-{last_step(tmp_path / 'run')}"
