"""What the stages share to run in parallel: a pool of workers, DuckDB connections with limits, and progress lines.

    for index, result in run_jobs(filter_part, jobs, workers=2, pool="threads"):
        ...                                   # results in the order they finish, with their job's index
    pool = pool_for(total_bytes)              # "processes" for big inputs, "inline" for small ones
    con = DuckDBLimits("2GB", "data/tmp/duckdb").connect()
    con = DuckDBLimits().connect(reads=[part])   # SQL holding a user's expression: reads that file, nothing else
    progress = Progress("ingest webtext2019zh")
    progress.report(f"3/8 units, {progress.rate(mb):.1f} MB/s")

Jobs whose work happens outside the GIL (DuckDB, Arrow, Parquet and the compiled kernels) run in threads. Jobs with
Python work per row run in processes started with `spawn` (never `fork`: the flow runs tasks in threads), which
costs about a second each, so small inputs run in this process (pool="inline"). Each DuckDB connection gets one
thread: the workers are the parallelism.

Progress lines go to stderr; inside a flow or task run Prefect's `log_prints` puts them in the run's log.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Pool = Literal["processes", "threads", "inline"]
POOL_MIN_BYTES = 16 << 20
"""Below this much input, starting worker processes costs more than it saves."""


def run_jobs(fn: Callable, jobs: list[tuple], workers: int, pool: Pool) -> Iterator[tuple[int, Any]]:
    """(index, fn(*jobs[index])) for every job, in a pool of `workers` processes or threads, or one after another."""
    if workers <= 1 or len(jobs) <= 1 or pool == "inline":
        for index, job in enumerate(jobs):
            yield index, fn(*job)
        return
    executor: Executor
    if pool == "processes":
        executor = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
    else:
        executor = ThreadPoolExecutor(min(workers, len(jobs)))
    with executor:
        futures = {executor.submit(fn, *job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def pool_for(input_bytes: int) -> Pool:
    """Worker processes for inputs of POOL_MIN_BYTES or more, this process for smaller ones."""
    return "processes" if input_bytes >= POOL_MIN_BYTES else "inline"


@dataclass(frozen=True)
class DuckDBLimits:
    memory_limit: str = "2GB"
    """Memory one connection may use before it spills to temp_directory."""
    temp_directory: str = ""
    """Where DuckDB spills (empty: its default, beside the database or in memory only)."""
    threads: int = 1
    """DuckDB's own threads (stages that run one connection per worker keep 1)."""

    def connect(self, reads: list[Path] | None = None):
        """A connection with these limits. With `reads` (SQL that holds a user's expression), it may read those
        files and spill to temp_directory, and nothing else: no other file, extension or URL, and its
        configuration locked so that no statement can lift that."""
        import duckdb  # here, so that reading the settings (pipelines.yaml's duckdb_memory_limit) does not load it

        config = {"threads": self.threads, "memory_limit": self.memory_limit}
        if self.temp_directory:
            config["temp_directory"] = self.temp_directory
        con = duckdb.connect(config=config)
        con.execute("SET enable_progress_bar = false")  # worker output goes to logs, not a terminal
        if reads is not None:
            con.execute("SET allowed_paths = $paths", {"paths": [Path(p).as_posix() for p in reads]})
            if self.temp_directory:
                con.execute("SET allowed_directories = $dirs", {"dirs": [self.temp_directory]})
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        return con


class Progress:
    """Lines `<label>: <message>` about one piece of work, at most one every `every` seconds (0: each one)."""

    def __init__(self, label: str, every: float = 0.0):
        self.label, self.every = label, every
        self.started = self.last = time.monotonic()

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def rate(self, amount: float) -> float:
        """`amount` per second since the work started."""
        return amount / self.elapsed

    def report(self, message: str, final: bool = False) -> None:
        """Print the line, unless the last one was printed less than `every` seconds ago (a final one always is)."""
        now = time.monotonic()
        if final or now - self.last >= self.every:
            self.last = now
            print(f"{self.label}: {message}", file=sys.stderr, flush=True)
