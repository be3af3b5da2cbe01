"""How the flows end on an error whose message says the fix (gpt/errors.py's FixableError: an unknown dataset or
preset, no registered version to carry on, a wrong checksum, a training that crashed): Failed, with that one line as
the run's state message and in its logs at ERROR, and no traceback.

    @flow(name="continue-training", retries=1, retry_delay_seconds=60)
    @fails_in_one_line
    def continue_training(preset: str, ...) -> dict: ...

Called in a process (the `gptflow` flow commands, a parent flow calling a subflow), the flow still raises the error
itself, so the command prints it as `error: ...` and a parent run fails with the same line. Run from a deployment
(a worker or `gptflow serve` runs `python -m prefect.engine`), the engine logs the error of a failed run once more
with its traceback; that record is dropped for an error already logged here. A ConfigError is never retried: the
next attempt would read the same pipelines.yaml and find the same registry, so the run fails at once whatever the
flow's retries. Any other FixableError keeps the flow's retries (the next attempt of a crashed night resumes it),
and any other exception keeps Prefect's own handling, traceback included.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.states import Failed

from gpt.config import ConfigError
from gpt.errors import FixableError

P = ParamSpec("P")
ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.engine")
"""Where Prefect's engine logs the error a deployment's run ended with: in the run's log, and in the process's."""
REPORTED: weakref.WeakSet[BaseException] = weakref.WeakSet()
"""Errors this module has logged as one line and made a run's Failed state."""


class ReportedOnce(logging.Filter):
    """Drops a record of an error in REPORTED: its one line is in the log already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] in REPORTED)


REPORTED_ONCE = ReportedOnce()


def fails_in_one_line(fn: Callable[P, Any]) -> Callable[P, Any]:
    """`fn`, a flow function, returning a Failed state with the message of the FixableError it raises."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except FixableError as e:
            if FlowRunContext.get() is None:  # called through `.fn`, outside a flow run
                raise
            get_run_logger().error(str(e))
            if isinstance(e, ConfigError):
                stop_retries()
            REPORTED.add(e)
            for name in ENGINE_LOGGERS:  # after Prefect has set its logging up; adding it again changes nothing
                logging.getLogger(name).addFilter(REPORTED_ONCE)
            return Failed(message=str(e), data=e)

    return run


def stop_retries() -> None:
    """Let the current flow run fail now, whatever retries its flow has: the server decides whether a failed run is
    retried by the run's own policy, so that policy is set to no retries first."""
    context = FlowRunContext.get()
    policy = context.flow_run.empirical_policy.model_copy(update={"retries": 0})
    context.client.update_flow_run(context.flow_run.id, empirical_policy=policy)
