"""Real Prefect and MLflow servers on 127.0.0.1 for the flow tests, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli.stack import Stack, server_command

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process started with `start()` (waits for its health URL) and stopped with `stop()`."""

    def __init__(self, name: str, cmd: list[str], health: str, env: dict[str, str], log: Path):
        self.name, self.cmd, self.health, self.env, self.log = name, cmd, health, env, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.health, timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                time.sleep(0.5)  # let the group's other members go too
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


def stack_server(part: str, folder: Path, port: int, env: dict[str, str]) -> Server:
    """The Prefect or MLflow server `gptflow up` would start, with its state in `folder`."""
    stack = Stack(home=folder, config=folder / "pipelines.yaml", prefect_port=port, mlflow_port=port)
    cmd, extra, address = server_command(stack, part)
    (folder / part).mkdir(exist_ok=True)
    health = address + ("/api/health" if part == "prefect" else "/health")
    extra |= {"PREFECT_UI_ENABLED": "false"} if part == "prefect" else {}  # starts faster
    return Server(f"{part} server", cmd, health, {**env, **extra}, folder / f"{part}-server.log")


def model_server(model_uri: str, tracking_uri: str, folder: Path, env: dict[str, str]) -> Server:
    """`mlflow models serve` of a registered model on a free port, in this environment (its uvicorn on PATH)."""
    port = free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1",
           "-p", str(port), "--workers", "1"]  # fmt: skip
    env = {**env, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    return Server("model server", cmd, f"http://127.0.0.1:{port}/ping", env, folder / "model-server.log")


def prefect_worker(folder: Path, pool: str, name: str, env: dict[str, str]) -> subprocess.Popen:
    log = open(folder / f"worker-{name}.log", "ab")  # noqa: SIM115 - the worker writes to it until stopped
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name, "--type", "process"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
