"""Nothing a gptflow command started outlives it, even when the command is killed outright (SIGKILL): a watchdog
process waits for the command to end, then kills every process that carries the command's marker in its
environment (the temporary Prefect server a flow run in this process starts, and whatever that started).

    guard_children()                     # in the command, before it starts anything
    python -m cli.watchdog PID MARKER    # what guard_children starts: waits for PID, then kills the marked

The watchdog runs in a session of its own without the marker, so neither a signal to the command's process group
nor its own sweep reaches it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import psutil

from tasks.training.launch import kill_marked

MARKER_VAR = "GPTFLOW_COMMAND"


def guard_children() -> None:
    """Mark this process's environment (inherited by all it starts) and start its watchdog."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}
    os.environ[MARKER_VAR] = marker
    subprocess.Popen(
        [sys.executable, "-m", "cli.watchdog", str(os.getpid()), marker], env=env, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main(argv: list[str]) -> int:
    pid, marker = int(argv[0]), argv[1]
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait()
    kill_marked(marker, MARKER_VAR)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
