"""gptflow up/status/down without servers: records, ports, and what `down` may stop (tests/e2e runs the real one)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from cli.stack import STACK_VAR, Stack, StackError, down, launch, read_record, status, up
from cli.stack import main as stack_main
from gpt.config import ConfigError

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


@pytest.fixture
def stack(tmp_path):
    config = tmp_path / "pipelines.yaml"
    config.write_text("deployments: []\n")
    return Stack(home=tmp_path / ".gptflow", config=config)


def test_status_and_down_of_a_stack_never_started(stack, capsys):
    assert stack_main(["--config", str(stack.config), "--home", str(stack.home)], "status") == 1
    assert capsys.readouterr().out.split() == ["prefect", "stopped", "mlflow", "stopped", "serve", "stopped"]
    assert down(stack) == 0
    assert "nothing of" in capsys.readouterr().out


def test_a_record_whose_pid_was_reused_is_not_ours(stack):
    """A record naming a live process that started at another time (the pid was reused) is dropped, never stopped."""
    path = stack.record_path("mlflow")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": os.getpid(), "create_time": 1.0, "address": "http://127.0.0.1:1"}))
    assert read_record(stack, "mlflow") is None
    assert not path.exists()
    path.write_text(json.dumps({"pid": os.getpid(), "create_time": 1.0, "address": "http://127.0.0.1:1"}))
    assert down(stack) == 0
    assert not status(stack)


def test_up_refuses_a_port_another_program_holds_and_starts_nothing(stack):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        busy = Stack(home=stack.home, config=stack.config, prefect_port=taken)
        with pytest.raises(StackError, match=f"port {taken} on 127.0.0.1 is taken by another program"):
            up(busy, timeout=5)
    assert not (stack.home / "run").exists() and not (stack.home / "logs").exists()


def test_up_checks_pipelines_yaml_before_starting_anything(stack):
    stack.config.write_text("deployments: []\nworkerz: 2\n")
    with pytest.raises(ConfigError, match="workerz"):
        up(stack, timeout=5)
    assert not stack.home.exists()


def test_down_stops_what_up_started_and_its_children_but_nothing_else(stack, tmp_path):
    """A part that ignores SIGTERM is killed after the grace period, as is a child in a session of its own that
    carries the marker (a training process); a process without the marker is left alone."""
    started = launch(stack, "serve", [sys.executable, "-c", IGNORES_SIGTERM], {}, address="")
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env={**os.environ, STACK_VAR: stack.marker},
        start_new_session=True,
    )  # fmt: skip
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        time.sleep(0.5)  # let the interpreter install its signal handler
        assert read_record(stack, "serve")["pid"] == started["pid"]
        began = time.monotonic()
        assert down(stack, grace=1) == 1
        assert time.monotonic() - began < 15
        for pid in (started["pid"], child.pid):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert bystander.poll() is None
        assert not stack.record_path("serve").exists()
    finally:
        for proc in (child, bystander):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
