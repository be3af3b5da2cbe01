"""`gptflow run`: start a flow run of a deployment on the Prefect server and print its log lines until it ends.

    gptflow run build-corpus/demo
    gptflow run pretrain-gpt2/demo -p overrides='["--max_iters=200"]' -p nproc_per_node=2
    gptflow run continue-training/nightly --all       # Prefect's own lines too (each run's start and end)

The server is the profile's PREFECT_API_URL (after `gptflow up`: `source .gptflow/env`); something must pick the run
up: `gptflow up` or `gptflow serve`, or a worker of the deployment's work pool. A value of -p is read as JSON where it
parses and as a string otherwise, as `prefect deployment run` reads it. The lines of the flow run, of its tasks and
of its subflow runs (build-corpus inside pretrain-gpt2, the per-node runs of a training on several nodes) are
printed as they reach the server: time, level when not INFO, message. Exit status 0 when the run completes; 1, with
one line naming the state and its message, when it fails, crashes or is cancelled. Ctrl-C stops following, not the
run. Prefect's state events as well: `prefect deployment run FLOW/DEPLOYMENT --watch`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTimestamp,
)
from prefect.client.schemas.objects import FlowRun, Log, StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import LogSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import get_current_settings
from prefect.utilities.urls import url_for

from gpt.config import ConfigError
from gpt.errors import FixableError

POLL_SECONDS = 1.0
"""How often the server is asked for new lines and the run's state."""
SETTLE_SECONDS = 3.0
"""After the run ends, how long to wait for its last lines (a flow process ships its logs every 2 s)."""
UNCLAIMED_SECONDS = 30.0
"""After how long a run nothing has picked up earns a hint about what should."""
LATE_SECONDS = 10.0
"""Lines are asked for from this far before the newest one printed, so that a batch that reaches the server late
(another process of the run) is still printed; each line is printed once."""
PAGE = 200
PREFECT_LINE = re.compile(r"Beginning (sub)?flow run '|Finished in state (Completed|Cached)\(")
"""Prefect's own lines for every flow and task run that starts and every one that ends well (a failed end stays)."""


class RunError(FixableError, RuntimeError):
    """A flow run that did not complete, or a Prefect server that does not answer; the message says which."""


def parse_parameters(specs: list[str]) -> dict:
    """`key=value` options as flow parameters: the value as JSON where it parses, otherwise as a string (unless it
    holds a double quote, which marks it as JSON that is broken), as Prefect's own CLI reads them."""
    parameters = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise ConfigError(f"-p {spec!r}: give key=value, e.g. -p overrides='[\"--max_iters=200\"]'")
        try:
            parameters[key] = json.loads(value)
        except ValueError as e:
            if '"' in value:
                raise ConfigError(f"-p {key}: {value!r} is not valid JSON ({e})") from None
            parameters[key] = value
    return parameters


def format_log(log: Log) -> str:
    """One log line as printed: local time, the level when not INFO, the message (further lines indented)."""
    level = "" if log.level == logging.INFO else f"{logging.getLevelName(log.level)} "
    prefix = f"{log.timestamp.astimezone():%H:%M:%S} {level}"
    return prefix + log.message.replace("\n", "\n" + " " * len(prefix))


def prefect_line(log: Log) -> bool:
    """Whether `log` is one of Prefect's own lines for a run's start or successful end."""
    return log.level == logging.INFO and PREFECT_LINE.match(log.message) is not None


class RunLines:
    """The log lines of a flow run and of its subflow runs (found as they start), each returned once."""

    def __init__(self, client: SyncPrefectClient, flow_run_id: UUID):
        self.client, self.runs = client, {flow_run_id}
        self.seen: dict[UUID, datetime] = {}  # the lines returned that are newer than `since`
        self.newest: datetime | None = None
        self.since: datetime | None = None

    def fetch(self) -> list[Log]:
        """The lines that reached the server since the last call, oldest first."""
        children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=sorted(self.runs)))
        self.runs |= {run.id for run in self.client.read_flow_runs(flow_run_filter=children)}
        where = LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=sorted(self.runs)), timestamp=LogFilterTimestamp(after_=self.since)
        )
        new, offset = [], 0
        while True:
            page = self.client.read_logs(where, limit=PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC)
            new += [log for log in page if log.id not in self.seen]
            if len(page) < PAGE:
                break
            offset += PAGE
        self.seen |= {log.id: log.timestamp for log in new}
        if new:
            self.newest = max(self.newest or new[-1].timestamp, new[-1].timestamp)
            self.since = self.newest - timedelta(seconds=LATE_SECONDS)
            self.seen = {key: stamp for key, stamp in self.seen.items() if stamp >= self.since}
        return new


def follow(
    client: SyncPrefectClient, flow_run_id: UUID, echo: Callable[[str], None], everything: bool = False,
    hint: str = "", unclaimed_after: float = UNCLAIMED_SECONDS,
) -> FlowRun:  # fmt: skip
    """Print the run's lines through `echo` until it reaches a final state and its last lines are in; returns the
    flow run as it ended. `everything`: Prefect's own lines too. `hint` is printed once should nothing pick the run
    up within `unclaimed_after` seconds."""
    lines, started, ended = RunLines(client, flow_run_id), time.monotonic(), None
    while True:
        run = client.read_flow_run(flow_run_id)  # before the lines: every line of a run seen ending is in by now
        if ended is None and run.state.is_final():
            ended = time.monotonic()
        new = lines.fetch()
        for log in new:
            if everything or not prefect_line(log):
                echo(format_log(log))
        if ended is not None and not new and time.monotonic() - ended >= SETTLE_SECONDS:
            return run
        waiting = run.state.type == StateType.SCHEDULED and run.run_count == 0  # not a retry's wait
        if hint and waiting and time.monotonic() - started > unclaimed_after:
            echo(f"flow run {run.name!r} is still {run.state.name} after {unclaimed_after:.0f} s: {hint}")
            hint = ""
        time.sleep(POLL_SECONDS)


def start(client: SyncPrefectClient, name: str, parameters: dict) -> tuple[DeploymentResponse, FlowRun]:
    """Create a flow run of deployment `name` (flow/deployment) to start now; returns (deployment, flow run)."""
    if name.count("/") != 1:
        raise ConfigError(f"{name!r}: name a deployment as FLOW/DEPLOYMENT, e.g. build-corpus/demo")
    try:
        deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise ConfigError(
            f"no deployment {name} on the Prefect server {client.api_url}: `prefect deployment ls` lists them; "
            "`gptflow up` serves (and `gptflow deploy` registers) those of pipelines.yaml"
        ) from None
    allowed = list((deployment.parameter_openapi_schema or {}).get("properties", {}))
    unknown = [key for key in parameters if key not in allowed]
    if unknown:
        raise ConfigError(f"{name}: unknown parameter {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    try:
        return deployment, client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    except PrefectHTTPStatusError as e:
        if e.response.status_code >= 500:
            raise
        raise ConfigError(f"{name}: the server refused the flow run: {e.response.json().get('detail')}") from None


def unclaimed_hint(deployment: DeploymentResponse) -> str:
    pool = deployment.work_pool_name
    worker = f", or a worker of work pool {pool!r} (prefect worker start --pool {pool})" if pool else ""
    return f"is `gptflow up` (or `gptflow serve`) running for this server{worker}?"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gptflow run", description=__doc__.splitlines()[0])
    parser.add_argument("deployment", help="FLOW/DEPLOYMENT, e.g. build-corpus/demo")
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a flow parameter (repeatable)"
    )
    parser.add_argument("--all", action="store_true", help="Prefect's own lines too: each run's start and end")
    args = parser.parse_args(argv)
    parameters = parse_parameters(args.param)
    api_url = get_current_settings().api.url
    if not api_url:
        raise ConfigError("PREFECT_API_URL is not set: after `gptflow up`, `source .gptflow/env` (or set it)")
    run = None
    try:
        with get_client(sync_client=True) as client:
            deployment, run = start(client, args.deployment, parameters)
            print(f"{args.deployment}: flow run {run.name!r} {url_for(run) or run.id}", flush=True)
            ended = follow(client, run.id, lambda line: print(line, flush=True), args.all, unclaimed_hint(deployment))
    except KeyboardInterrupt:
        if run is None:
            return 130
        print(
            f"\nstopped following; flow run {run.name!r} goes on (cancel it with: prefect flow-run cancel {run.id})",
            file=sys.stderr,
        )
        return 130
    except httpx.TransportError as e:
        raise RunError(
            f"the Prefect server at {api_url} does not answer ({e}): start it (`gptflow up` for the local stack) or "
            "point PREFECT_API_URL at yours"
        ) from None
    took = f" in {ended.total_run_time.total_seconds():.1f} s" if ended.total_run_time else ""
    if ended.state.is_completed():
        print(f"{args.deployment}: flow run {ended.name!r} {ended.state.name}{took}")
        return 0
    message = " ".join((ended.state.message or "").split())
    raise RunError(f"{args.deployment}: flow run {ended.name!r} ended {ended.state.name}{took}: {message}")
