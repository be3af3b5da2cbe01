"""`gptflow run` against a real Prefect server (the one `gptflow up` starts) and a flow served from a process of its
own: the flow's lines, its task's and its subflow's, each printed once and without Prefect's own; the exit status
and the one line of a failed run; Ctrl-C leaving the run going, with a cancel command that works; a hint for a run
nothing picks up; wrong inputs named before anything starts. -p values and the line format, without a server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from servers import free_port, stack_server

from cli.run import RunError, follow, format_log, main, parse_parameters
from gpt.config import ConfigError

GPTFLOW = str(Path(sys.executable).parent / "gptflow")
PREFECT = str(Path(sys.executable).parent / "prefect")
FLOW = textwrap.dedent(
    """
    import time

    from prefect import flow, get_run_logger, task


    @task
    def count(words: list) -> int:
        print(f"{len(words)} words: {' | '.join(words)}")
        return len(words)


    @flow(log_prints=True)
    def inner(n: int) -> int:
        print(f"subflow got {n}")
        return n


    @flow(name="greet", log_prints=True)
    def greet(words: list, fail: bool = False, sleep: float = 0) -> int:
        get_run_logger().warning("first line\\nsecond line")
        n = inner(count(words))
        time.sleep(sleep)
        if fail:
            raise ValueError("boom")
        return n


    if __name__ == "__main__":
        greet.to_deployment(name="unserved").apply()  # registered, but nothing serves it
        greet.serve(name="test")
    """
)
RUN_LINE = r"greet/test: flow run '[\w-]+'"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A Prefect server and `greet/test` served from a process of its own: the environment that points at them."""
    folder = tmp_path_factory.mktemp("run")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server = stack_server("prefect", folder, free_port(), base | {"PREFECT_HOME": str(folder / "server")})
    server.start()
    env = base | {"PREFECT_API_URL": server.health.removesuffix("/health"), "PREFECT_HOME": str(folder / "client")}
    (folder / "greet.py").write_text(FLOW, encoding="utf-8")
    with open(folder / "serve.log", "ab") as log:
        serve = subprocess.Popen(
            [sys.executable, "greet.py"], cwd=folder, env=env | {"PREFECT_RUNNER_POLL_FREQUENCY": "1"}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_deployment(env, "greet/test", serve)
        yield env
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
        server.stop()


def client_for(env: dict):
    """A Prefect client of the server `env` points at."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(env["PREFECT_API_URL"])


def wait_for_deployment(env: dict, name: str, serve: subprocess.Popen, timeout: float = 60) -> None:
    """Until the serving process has registered deployment `name` (it registers both before it serves)."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with client_for(env) as client:
        while serve.poll() is None and time.monotonic() < deadline:
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                time.sleep(0.5)
    raise RuntimeError(f"{name} was not served within {timeout} s (serving process exit status {serve.poll()})")


@pytest.fixture(scope="module")
def finished(served):
    """Three runs at once: one that completes, the same with --all, one that fails; their finished processes."""
    words = ["-p", 'words=["a b", "c"]']
    commands = {
        "ok": [GPTFLOW, "run", "greet/test", *words],
        "all": [GPTFLOW, "run", "greet/test", *words, "--all"],
        "failed": [GPTFLOW, "run", "greet/test", *words, "-p", "fail=true"],
    }
    procs = {
        name: subprocess.Popen(cmd, env=served, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, cmd in commands.items()
    }
    return {name: (proc, *proc.communicate(timeout=120)) for name, proc in procs.items()}


@pytest.mark.slow
def test_a_completed_run_prints_its_flows_lines_once_and_exits_0(finished):
    proc, out, err = finished["ok"]
    assert proc.returncode == 0, out + err
    lines = out.splitlines()
    assert re.fullmatch(RUN_LINE + r" http://127\.0\.0\.1:\d+/runs/flow-run/[0-9a-f-]{36}", lines[0])
    assert re.fullmatch(RUN_LINE + r" Completed in \d+\.\d s", lines[-1])
    body = lines[1:-1]
    assert sum(re.match(r"\d\d:\d\d:\d\d \S", line) is not None for line in body) == 3
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in body] == [
        "WARNING first line",
        " " * len("00:00:00 WARNING ") + "second line",  # under the message's first line
        "2 words: a b | c",  # the task's line
        "subflow got 2",  # the subflow's line
    ]
    assert not err


@pytest.mark.slow
def test_all_adds_prefects_own_lines(finished):
    proc, out, _ = finished["all"]
    assert proc.returncode == 0
    assert "Beginning flow run '" in out and "Beginning subflow run '" in out
    assert out.count("Finished in state Completed()") == 3  # the task, the subflow, the flow
    assert out.count("subflow got 2") == 1


@pytest.mark.slow
def test_a_failed_run_exits_1_with_one_line_naming_its_state(finished):
    proc, out, err = finished["failed"]
    assert proc.returncode == 1
    assert re.fullmatch(
        r"error: " + RUN_LINE + r" ended Failed in \d+\.\d s: Flow run encountered an exception: ValueError: boom\n",
        err,
    )
    assert " ERROR Encountered exception during execution" in out and "ValueError: boom" in out
    assert "Finished in state Failed(" in out  # a failed end stays, a good one does not
    assert "Completed in" not in out


def hearing_ctrl_c() -> None:
    """In the child: SIGINT's default action, as a terminal gives it (a test suite started in the background, with
    `&`, ignores SIGINT, and its children would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_following_and_the_run_goes_on_until_cancelled(served):
    from prefect.client.schemas.objects import StateType

    cmd = [GPTFLOW, "run", "greet/test", "-p", 'words=["x"]', "-p", "sleep=60"]
    proc = subprocess.Popen(
        cmd, env=served, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=hearing_ctrl_c
    )
    watchdog = threading.Timer(90, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.endswith("subflow got 1\n"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130
    (run_id,) = re.findall(r"goes on \(cancel it with: prefect flow-run cancel ([0-9a-f-]{36})\)$", err.strip())
    with client_for(served) as client:
        assert client.read_flow_run(run_id).state.type == StateType.RUNNING
        cancel = subprocess.run([PREFECT, "flow-run", "cancel", run_id], env=served, capture_output=True, timeout=60)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        deadline = time.monotonic() + 30
        while not client.read_flow_run(run_id).state.is_final() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.read_flow_run(run_id).state.type == StateType.CANCELLED


@pytest.mark.slow
def test_a_run_nothing_picks_up_earns_a_hint_and_a_cancelled_run_ends_the_following(served):
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    lines = []
    with client_for(served) as client:
        deployment = client.read_deployment_by_name("greet/unserved")
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"words": []})

        def echo(line: str) -> None:
            lines.append(line)
            client.set_flow_run_state(run.id, Cancelled())

        ended = follow(client, run.id, echo, hint="serve it", unclaimed_after=1)
    assert lines == [f"flow run {run.name!r} is still Scheduled after 1 s: serve it"]
    assert ended.state.type == StateType.CANCELLED


@pytest.mark.slow
def test_wrong_inputs_are_named_before_anything_starts(served):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: served["PREFECT_API_URL"]}):
        with pytest.raises(ConfigError, match="name a deployment as FLOW/DEPLOYMENT"):
            main(["greet"])
        with pytest.raises(ConfigError, match="no deployment greet/nope on the Prefect server"):
            main(["greet/nope"])
        with pytest.raises(ConfigError, match="unknown parameter colour; allowed: words, fail, sleep"):
            main(["greet/test", "-p", 'words=["x"]', "-p", "colour=red"])
        with pytest.raises(ConfigError, match="'notabool' is not of type 'boolean'"):
            main(["greet/test", "-p", 'words=["x"]', "-p", "fail=notabool"])
    closed = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings({PREFECT_API_URL: closed}), pytest.raises(RunError, match="does not answer"):
        main(["greet/test"])


def test_parameters_are_json_where_they_parse_and_strings_otherwise():
    parsed = parse_parameters(['overrides=["--max_iters=200"]', "nproc_per_node=2", "preset=demo", "flag=true",
                               "empty=", "eq=a=b"])  # fmt: skip
    assert parsed == {"overrides": ["--max_iters=200"], "nproc_per_node": 2, "preset": "demo", "flag": True,
                      "empty": "", "eq": "a=b"}  # fmt: skip
    with pytest.raises(ConfigError, match="is not valid JSON"):
        parse_parameters(['overrides=["--max_iters=200"'])
    with pytest.raises(ConfigError, match="give key=value"):
        parse_parameters(["preset"])


def test_a_line_is_its_local_time_its_level_unless_info_and_its_message():
    from prefect.client.schemas.objects import Log

    stamp = datetime(2026, 12, 7, 18, 0, 5, tzinfo=UTC)
    local = stamp.astimezone().strftime("%H:%M:%S")
    info = Log(name="prefect.flow_runs", level=20, message="step 100: loss 2.1", timestamp=stamp, flow_run_id=uuid4())
    assert format_log(info) == f"{local} step 100: loss 2.1"
    error = info.model_copy(update={"level": 40, "message": "Traceback\n  File x"})
    assert format_log(error) == f"{local} ERROR Traceback\n{' ' * len(local + ' ERROR ')}  File x"
