"""Run torchrun (or any command) as a child: output streamed by line, a deadline, and no process left behind.

    cmd = torchrun_command("runs/x/config.json", nproc_per_node=2)
    cmd = torchrun_command(cfg_file, 8, nnodes=2, rdzv_endpoint="10.0.0.1:29400", rdzv_id="<mlflow run id>")
    launch = run_process(cmd, on_line=print, timeout=3600)     # Launch(returncode, timed_out, seconds)

The child starts in its own session and carries a marker in its environment, inherited by every process below it
(torchrun starts each worker in a session of its own). Stopping it, on a deadline or when the caller is
interrupted (a cancelled flow run gets SIGTERM), sends SIGTERM to torchrun, which passes it to the workers: they
save a checkpoint and exit. After `grace` seconds whatever still carries the marker is killed. On Linux the child
also dies with its parent, should the parent itself be killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import psutil

MARKER_VAR = "GPTFLOW_LAUNCH_ID"
CANCEL_GRACE = 20.0  # seconds for torchrun's workers to save a checkpoint when the caller is interrupted


@dataclass(frozen=True)
class Launch:
    returncode: int
    timed_out: bool
    seconds: float


def default_nproc_per_node() -> int:
    """Every GPU of this machine, or one process on a machine without one. torch counts the GPUs through NVML first
    and, when NVML does not start (NVIDIA's libraries on a machine without a GPU), warns and asks the CUDA runtime:
    the count is right either way, so that warning is not passed on."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Can't (initialize NVML|get nvml device count)")
        return torch.cuda.device_count() or 1


def torchrun_command(
    config_file: str,
    nproc_per_node: int,
    nnodes: int = 1,
    rdzv_endpoint: str = "",
    rdzv_id: str = "",
    max_restarts: int = 0,
) -> list[str]:
    """`torchrun -m gpt.train CONFIG` on one node (standalone) or as one of `nnodes` joined by c10d."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        if not rdzv_endpoint or not rdzv_id:
            raise ValueError("several nodes need a rendezvous endpoint (HOST:PORT reachable from every node) and id")
        cmd += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}", f"--rdzv_id={rdzv_id}"]
    cmd += [f"--max_restarts={max_restarts}", "-m", "gpt.train", config_file]
    return cmd


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_process(
    cmd: list[str],
    on_line: Callable[[str], None],
    timeout: float = 0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    grace: float = 60,
) -> Launch:
    """Run `cmd` to its end (or to the deadline `timeout` seconds away, 0: none), passing each output line."""
    marker = uuid.uuid4().hex
    child_env = {**(env if env is not None else os.environ), MARKER_VAR: marker, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env, cwd=cwd,
        start_new_session=True, preexec_fn=_die_with_parent, text=True, errors="replace", bufsize=1,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    timed_out = False
    try:
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                on_line(line.rstrip("\n"))
            if timeout and not timed_out and time.monotonic() - started > timeout:
                timed_out = True
                on_line(f"deadline of {timeout:.0f} s reached: stopping (a checkpoint is saved first)")
                threading.Thread(target=stop, args=(proc, marker, grace), daemon=True).start()
        proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: a cancelled flow run is killed outright 30 s after its SIGTERM
            stop(proc, marker, min(grace, CANCEL_GRACE))
        kill_marked(marker)  # a worker that outlived torchrun
        reader.join(timeout=5)
        if not reader.is_alive():
            proc.stdout.close()
    return Launch(proc.returncode, timed_out, time.monotonic() - started)


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def stop(proc: subprocess.Popen, marker: str, grace: float) -> None:
    """SIGTERM to the child's process group, then after `grace` seconds SIGKILL to everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    kill_marked(marker)
    proc.wait()


def marked(marker: str, var: str = MARKER_VAR) -> list[psutil.Process]:
    """Every other process whose environment holds `var=marker` (set where it was started, inherited below)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(var) == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def kill_marked(marker: str, var: str = MARKER_VAR) -> int:
    """SIGKILL every process whose environment holds `var=marker`; returns how many there were."""
    killed = []
    for p in marked(marker, var):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
            killed.append(p)
    psutil.wait_procs(killed, timeout=10)
    return len(killed)
