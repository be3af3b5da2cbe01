"""SIGTERM, SIGINT or SIGKILL to an in-process flow (`gptflow pretrain` without a Prefect server) leaves no process
behind: not torchrun, not its worker, not the temporary Prefect server the flow started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import SHAKESPEARE, tiny_settings


def pipelines(folder: Path) -> Path:
    settings = tiny_settings(folder / "unused", folder / "unused", max_iters=100_000, eval_interval=1_000)
    settings = {k: v for k, v in settings.items() if k not in ("data", "out_dir")}
    data = {
        "corpora": {"plays": {"format": "text", "kind": "english", "sources": [{"path": str(SHAKESPEARE)}]}},
        "datasets": {"plays": {"corpora": ["plays"], "dedupe": {"near": False}, "tokenize": {"tokenizer": "char"}}},
        "tracking": {"uri": "sqlite:///mlflow.db"},
        "training": {"tiny": {"dataset": "plays", "settings": settings}},
    }
    path = folder / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def wait_for(found, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := found():
            return result
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_to_an_in_process_flow_leaves_no_process_behind(tmp_path, signum):
    config = pipelines(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    cmd = [str(Path(sys.executable).parent / "gptflow"), "pretrain", "--preset", "tiny", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        flow = psutil.Process(proc.pid)
        training = wait_for(lambda: list((tmp_path / "runs" / "tiny").glob("*/step-*/COMPLETE")), 240, "checkpoint")
        started = flow.children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        assert any("gpt.train" in c for c in commands) and any("prefect" in c and "server" in c for c in commands)
        proc.send_signal(signum)
        assert proc.wait(timeout=120) != 0
        _, alive = psutil.wait_procs(started, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
        assert training
    finally:
        if proc.poll() is None:
            proc.kill()
