"""`gptflow up | status | down`: a local Prefect server, MLflow server and the served deployments of pipelines.yaml.

    gptflow up                    # start what is not running yet; returns once each part answers
    source .gptflow/env           # PREFECT_API_URL and MLFLOW_TRACKING_URI for this shell
    gptflow run build-corpus/demo
    gptflow status                # each part: running or not, address, pid, log; exit status 1 when one is down
    gptflow down                  # stop what `up` started, and nothing else

State lives in .gptflow/ beside pipelines.yaml (`--home` or GPTFLOW_HOME to move it): prefect/ (the Prefect
server's SQLite database), mlflow/ (mlflow.db and artifacts/), logs/, run/<part>.json (pid, start time, address)
and env. The servers listen on 127.0.0.1 (`--host`) at ports 4200 and 5000 (`--prefect-port`, `--mlflow-port`, or
GPTFLOW_PREFECT_PORT and GPTFLOW_MLFLOW_PORT). Every process `up` starts carries GPTFLOW_STACK=<home> in its
environment, and so does everything those processes start (flow runs, torchrun, its workers): `down` stops exactly
the processes that carry it.

`up` prints the two UIs' addresses: Prefect's server (its UI told its own API address, whatever the port), and the
MLflow UI's page of pipelines.yaml's experiment (made if missing) in the model-training view, which the server's own
address does not open in a fresh browser; the env file holds it as GPTFLOW_MLFLOW_UI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from gpt.atomic import write_text_atomic
from gpt.config import ConfigError
from gpt.errors import FixableError
from tasks.training.launch import kill_marked, marked

STACK_VAR = "GPTFLOW_STACK"
EXPERIMENT_PAGE_VAR = "GPTFLOW_MLFLOW_UI"
"""In the env file: the MLflow UI's page of the experiment, in its model-training view."""
BIN = Path(sys.executable).parent
PARTS = ("prefect", "mlflow", "serve")
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


class StackError(FixableError, RuntimeError):
    """A part of the local stack that cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Stack:
    home: Path
    config: Path
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5000

    @property
    def marker(self) -> str:
        return str(self.home)

    def log(self, part: str) -> Path:
        return self.home / "logs" / f"{part}.log"

    def record_path(self, part: str) -> Path:
        return self.home / "run" / f"{part}.json"


# --- records of what `up` started -------------------------------------------------------------------------------


def read_record(stack: Stack, part: str) -> dict | None:
    """The record of a part `up` started, when that very process still runs (a reused pid does not count)."""
    path = stack.record_path(part)
    try:
        record = json.loads(path.read_text())
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
            return record
    except (OSError, ValueError, KeyError, psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    path.unlink(missing_ok=True)
    return None


def launch(stack: Stack, part: str, cmd: list[str], env: dict[str, str], **fields) -> dict:
    """Start one part in a session of its own, output appended to its log, and write its record (with `fields`)."""
    stack.log(part).parent.mkdir(parents=True, exist_ok=True)
    with open(stack.log(part), "ab") as log:
        log.write(f"\n=== {datetime.now().isoformat(timespec='seconds')} {shlex.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, env={**os.environ, **TELEMETRY_OFF, **env, STACK_VAR: stack.marker}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=stack.config.parent,
        )  # fmt: skip
    record = {
        "pid": proc.pid,
        "create_time": psutil.Process(proc.pid).create_time(),
        "address": "",
        "config": str(stack.config),
        "log": str(stack.log(part)),
        "started": time.time(),
        **fields,
    }
    stack.record_path(part).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stack.record_path(part), json.dumps(record, indent=1))
    return record


# --- health --------------------------------------------------------------------------------------------------------


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def first_deployment(config: Path) -> str:
    from tasks.config import load_pipelines

    deployments = load_pipelines(config).deployments
    return f"{deployments[0].flow}/{deployments[0].name}" if deployments else ""


def polled_since(api_url: str, deployment: str, since: float) -> bool:
    """Whether the runner serving `deployment` has asked the Prefect server for work since `since`."""
    quoted = "/".join(urllib.parse.quote(p) for p in deployment.split("/"))
    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/{quoted}", timeout=3) as response:
            polled = json.load(response).get("last_polled")
    except (OSError, ValueError):
        return False
    return bool(polled) and datetime.fromisoformat(polled.replace("Z", "+00:00")).timestamp() >= since


def healthy(part: str, record: dict) -> bool:
    if part == "prefect":
        return answers(record["address"] + "/api/health")
    if part == "mlflow":
        return answers(record["address"] + "/health")
    # the runner polls every few seconds; a minute without a poll means it is stuck or its server is gone
    return polled_since(record["api_url"], record["deployment"], max(record["started"], time.time() - 60) - 1)


def wait_healthy(stack: Stack, part: str, record: dict, timeout: float) -> float:
    """Seconds from its start until the part answers; raises StackError (with the end of its log) when it exits or
    does not answer within `timeout` seconds."""
    while time.time() - record["started"] < timeout:
        if read_record(stack, part) is None:
            raise StackError(f"{part} exited while starting; the end of {stack.log(part)}:\n{log_tail(stack, part)}")
        if healthy(part, record):
            return time.time() - record["started"]
        time.sleep(0.5)
    raise StackError(
        f"{part} did not answer within {timeout:.0f} s; the end of {stack.log(part)}:\n{log_tail(stack, part)}"
    )


def log_tail(stack: Stack, part: str, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return stack.log(part).read_text(errors="replace")[-chars:]
    return ""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# --- up, status, down ---------------------------------------------------------------------------------------------


def server_command(stack: Stack, part: str) -> tuple[list[str], dict[str, str], str]:
    """The command, environment and address of a server. Each takes cross-origin requests from its own UI only, so
    a web page the user opens cannot start flow runs or change runs (both servers have no users of their own)."""
    if part == "prefect":
        address = f"http://{stack.host}:{stack.prefect_port}"
        cmd = [str(BIN / "prefect"), "server", "start", "--host", stack.host, "--port", str(stack.prefect_port)]
        # log streaming lets `prefect deployment run --watch` show the flow run's log lines, not only its states
        env = {"PREFECT_HOME": str(stack.home / "prefect"), "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true"}
        env["PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED"] = "true"
        env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] = address  # Prefect's default: any origin
        # a form or a text/plain POST from any page needs no preflight: a write must carry a CSRF token, which a
        # page of another origin cannot read (Prefect's clients and UI fetch and send it themselves)
        env["PREFECT_SERVER_CSRF_PROTECTION_ENABLED"] = "true"
        env["PREFECT_SERVER_UI_API_URL"] = f"{address}/api"  # the UI calls its own server, whatever the port
        return cmd, env, address
    store, address = stack.home / "mlflow", f"http://{stack.host}:{stack.mlflow_port}"
    cmd = [
        str(BIN / "mlflow"), "server", "--host", stack.host, "--port", str(stack.mlflow_port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", str(store / "artifacts"),
        "--cors-allowed-origins", address,
    ]  # fmt: skip
    return cmd, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, address


def check_port(stack: Stack, part: str) -> None:
    port = stack.prefect_port if part == "prefect" else stack.mlflow_port
    if port_in_use(stack.host, port):
        raise StackError(f"port {port} on {stack.host} is taken by another program: pass --{part}-port N for {part}")


def client_env(prefect: dict, mlflow: dict) -> dict[str, str]:
    return {"PREFECT_API_URL": prefect["address"] + "/api", "MLFLOW_TRACKING_URI": mlflow["address"]}


def up(stack: Stack, timeout: float = 300) -> dict[str, dict | None]:
    """Start the parts that do not run yet and wait until each answers; returns the record of every part."""
    deployment = first_deployment(stack.config)  # a broken pipelines.yaml stops here, before anything starts
    stack.home.mkdir(parents=True, exist_ok=True)
    records = start_servers(stack, timeout)
    records["mlflow"] = records["mlflow"] | {"page": experiment_page(stack, records["mlflow"]["address"])}
    env = client_env(records["prefect"], records["mlflow"]) | {EXPERIMENT_PAGE_VAR: records["mlflow"]["page"]}
    write_env_file(stack, env)
    records["serve"] = start_serve(stack, env, deployment, timeout)
    return records


def experiment_page(stack: Stack, mlflow: str) -> str:
    """The page of pipelines.yaml's experiment (made now when missing) on the stack's MLflow, in the UI's
    model-training view: the address a fresh browser should open (the server's own address opens the GenAI view)."""
    from mlflow.tracking import MlflowClient

    from tasks.config import load_pipelines
    from tasks.training.tracking import Tracker

    tracker = Tracker.connect(load_pipelines(stack.config), MlflowClient(tracking_uri=mlflow, registry_uri=mlflow))
    return tracker.experiment_url()


def start_servers(stack: Stack, timeout: float) -> dict[str, dict]:
    records = {part: read_record(stack, part) for part in ("prefect", "mlflow")}
    fresh = [part for part, record in records.items() if record is None]
    for part in fresh:
        check_port(stack, part)
    for part in fresh:
        cmd, env, address = server_command(stack, part)
        (stack.home / part).mkdir(parents=True, exist_ok=True)
        records[part] = launch(stack, part, cmd, env, address=address)
    for part, record in records.items():
        if part in fresh:
            seconds = wait_healthy(stack, part, record, timeout)
            print(f"{part:<8} started at {record['address']} in {seconds:.1f} s (pid {record['pid']})")
        else:
            print(f"{part:<8} already running at {record['address']} (pid {record['pid']})")
    return records


def start_serve(stack: Stack, env: dict[str, str], deployment: str, timeout: float) -> dict | None:
    """`gptflow serve` for the stack's pipelines.yaml, ready once it has polled for work."""
    record = read_record(stack, "serve")
    if record is not None:
        other = f" for {record['config']}" if record["config"] != str(stack.config) else ""
        print(f"serve    already running{other} (pid {record['pid']})")
        return record
    if not deployment:
        print(f"serve    not started: {stack.config} lists no deployments")
        return None
    cmd = [str(BIN / "gptflow"), "serve", "--config", str(stack.config)]
    serve_env = {**env, "PREFECT_HOME": str(stack.home / "prefect")}
    serve_env["PREFECT_RUNNER_POLL_FREQUENCY"] = os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    record = launch(stack, "serve", cmd, serve_env, api_url=env["PREFECT_API_URL"], deployment=deployment)
    seconds = wait_healthy(stack, "serve", record, timeout)
    print(f"serve    serving the deployments of {stack.config} in {seconds:.1f} s (pid {record['pid']})")
    return record


def write_env_file(stack: Stack, env: dict[str, str]) -> None:
    lines = ["# The local gptflow stack (written by `gptflow up`): source this file to use it from a shell."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    write_text_atomic(stack.home / "env", "\n".join(lines) + "\n")


def status(stack: Stack) -> bool:
    """Print each part's state; True when all run and answer."""
    all_up = True
    for part in PARTS:
        record = read_record(stack, part)
        if record is None:
            print(f"{part:<8} stopped")
            all_up = False
            continue
        ok = healthy(part, record)
        all_up &= ok
        where = record["address"] or f"serving {record['config']}"
        state = "running" if ok else "NOT ANSWERING"
        print(f"{part:<8} {state:<14} {where}  pid {record['pid']}  log {record['log']}")
    if all_up:
        print(f"env      source {stack.home / 'env'}")
    return all_up


def down(stack: Stack, grace: float = 30) -> int:
    """Stop what `up` started: SIGTERM to serve (its flow runs end first and report to the servers), then to the
    servers; after `grace` seconds SIGKILL to whatever still carries the stack's marker. Returns the parts stopped."""
    stopped = 0
    for parts in (("serve",), ("mlflow", "prefect")):
        waiting = []
        for part in parts:
            record = read_record(stack, part)
            if record is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record["pid"], signal.SIGTERM)
            with contextlib.suppress(psutil.NoSuchProcess):
                waiting.append(psutil.Process(record["pid"]))
            print(f"{part:<8} stopping (pid {record['pid']})")
            stack.record_path(part).unlink(missing_ok=True)
            stopped += 1
        psutil.wait_procs(waiting, timeout=grace)
    _, alive = psutil.wait_procs(marked(stack.marker, STACK_VAR), timeout=grace)
    if alive:
        print(f"killed {kill_marked(stack.marker, STACK_VAR)} processes that outlived SIGTERM by {grace:.0f} s")
    (stack.home / "env").unlink(missing_ok=True)
    print(f"stopped {stopped} parts of {stack.home}" if stopped else f"nothing of {stack.home} was running")
    return stopped


# --- command line --------------------------------------------------------------------------------------------------


def stack_from(args: argparse.Namespace) -> Stack:
    config = Path(args.config).resolve()
    if not config.is_file():
        raise ConfigError(f"{config} does not exist; pass --config PATH of pipelines.yaml")
    home = Path(args.home or os.environ.get("GPTFLOW_HOME") or config.parent / ".gptflow").resolve()
    ports = {}
    for part, default in (("prefect", 4200), ("mlflow", 5000)):
        value = getattr(args, f"{part}_port", None) or os.environ.get(f"GPTFLOW_{part.upper()}_PORT") or default
        try:
            ports[f"{part}_port"] = int(value)
        except ValueError:
            raise ConfigError(f"GPTFLOW_{part.upper()}_PORT must be a port number, got {value!r}") from None
    return Stack(home=home, config=config, host=getattr(args, "host", "127.0.0.1"), **ports)


def main(argv: list[str], command: str) -> int:
    parser = argparse.ArgumentParser(prog=f"gptflow {command}", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines.yaml", help="pipelines.yaml whose deployments are served")
    parser.add_argument("--home", default="", help="state folder (default: .gptflow beside pipelines.yaml)")
    if command == "up":
        parser.add_argument("--host", default="127.0.0.1", help="address the servers listen on")
        parser.add_argument("--prefect-port", type=int, help="Prefect server port (4200)")
        parser.add_argument("--mlflow-port", type=int, help="MLflow server port (5000)")
        parser.add_argument("--timeout", type=float, default=300, help="seconds each part may take to answer")
    args = parser.parse_args(argv)
    stack = stack_from(args)
    if command == "status":
        return 0 if status(stack) else 1
    if command == "down":
        down(stack)
        return 0
    records = up(stack, args.timeout)
    print(f"\nPrefect UI  {records['prefect']['address']}\nMLflow UI   {records['mlflow']['page']}")
    print(f"In a shell: source {stack.home / 'env'}   (then e.g. gptflow run build-corpus/demo)")
    return 0


def up_main(argv: list[str]) -> int:
    return main(argv, "up")


def status_main(argv: list[str]) -> int:
    return main(argv, "status")


def down_main(argv: list[str]) -> int:
    return main(argv, "down")
