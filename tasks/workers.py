"""What the stages share to run in parallel: a pool of worker processes, and DuckDB connections with limits.

    for index, result in run_jobs(clean_part, jobs, workers=2, in_processes=big_enough):
        ...                                   # results in the order they finish, with their job's index
    con = DuckDBLimits("2GB", "data/tmp/duckdb").connect()

Workers are started with `spawn` (never `fork`: the flow runs tasks in threads), which costs about a second each,
so small inputs run in this process. Each worker's DuckDB gets one thread: the processes are the parallelism.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import duckdb


def run_jobs(fn: Callable, jobs: list[tuple], workers: int, in_processes: bool = True) -> Iterator[tuple[int, Any]]:
    """(index, fn(*jobs[index])) for every job, in worker processes when asked and worth it."""
    if workers <= 1 or len(jobs) <= 1 or not in_processes:
        for index, job in enumerate(jobs):
            yield index, fn(*job)
        return
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *job): index for index, job in enumerate(jobs)}
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
