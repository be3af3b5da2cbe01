"""What the stages share to run in parallel: a pool of workers, and DuckDB connections with limits.

    for index, result in run_jobs(clean_part, jobs, workers=2, pool="threads"):
        ...                                   # results in the order they finish, with their job's index
    con = DuckDBLimits("2GB", "data/tmp/duckdb").connect()

Jobs whose work happens outside the GIL (DuckDB, Arrow, Parquet and the compiled kernels) run in threads. Jobs with
Python work per row run in processes started with `spawn` (never `fork`: the flow runs tasks in threads), which
costs about a second each, so small inputs run in this process (pool="inline"). Each DuckDB connection gets one
thread: the workers are the parallelism.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Literal

import duckdb


def run_jobs(
    fn: Callable, jobs: list[tuple], workers: int, pool: Literal["processes", "threads", "inline"]
) -> Iterator[tuple[int, Any]]:
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


@dataclass(frozen=True)
class DuckDBLimits:
    memory_limit: str = "2GB"
    """Memory one connection may use before it spills to temp_directory."""
    temp_directory: str = ""
    """Where DuckDB spills (empty: its default, beside the database or in memory only)."""

    def connect(self) -> duckdb.DuckDBPyConnection:
        config = {"threads": 1, "memory_limit": self.memory_limit}
        if self.temp_directory:
            config["temp_directory"] = self.temp_directory
        con = duckdb.connect(config=config)
        con.execute("SET enable_progress_bar = false")  # worker output goes to logs, not a terminal
        return con
