"""A training's progress in the Prefect UI: a progress artifact of the flow run (the share of its steps done) whose
description tells the step, the loss, tokens per second and the time left, updated while it trains.

    progress = TrainingProgress.start("demo-20261207-0200-ab12", last_step=1200)
    progress.update({"step": 300, "loss": 5.1, "tokens_per_s": 10500.0})   # at most every `interval` seconds
    progress.finish()

The rows are metrics.jsonl's (tasks/training/tracking.py reads them); the first step seen is where the run started
(0, or the step a continued run resumes from), and the time left is measured from there. Updates come from the flow's
own thread, so they use its Prefect client settings. A progress artifact needs a flow or task run; without one (a
training started outside Prefect) nothing is recorded.
"""

from __future__ import annotations

import re
import time
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext

UPDATE_SECONDS = 5.0


def artifact_key(run_name: str, kind: str = "training") -> str:
    """The key of a run's `kind` of artifact: Prefect artifact keys hold lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")


def clock(seconds: float) -> str:
    """1:02:03, 4:05 or 0:06."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainingProgress:
    def __init__(self, artifact_id: UUID | None, last_step: int, interval: float = UPDATE_SECONDS):
        self.artifact_id, self.last_step, self.interval = artifact_id, last_step, interval
        self.first_step: int | None = None
        self.started, self.shown = time.monotonic(), 0.0
        self.seen: dict[str, float] = {}  # the latest value of each metric

    @classmethod
    def start(cls, run_name: str, last_step: int, interval: float = UPDATE_SECONDS) -> TrainingProgress:
        artifact_id = None
        if FlowRunContext.get() or TaskRunContext.get():
            artifact_id = create_progress_artifact(0.0, key=artifact_key(run_name), description=f"{run_name}: starting")
        return cls(artifact_id, last_step, interval)

    def describe(self, now: float) -> tuple[float, str]:
        """The share done (0 to 100) and one line: step, loss, tokens per second, elapsed and remaining time."""
        if self.first_step is None:
            return 0.0, f"starting, {self.last_step:,} steps to go"
        step = int(self.seen["step"])
        done, total = step - self.first_step, max(1, self.last_step - self.first_step)
        elapsed = now - self.started
        parts = [f"step {step:,} of {self.last_step:,}"]
        if "loss" in self.seen:
            parts.append(f"loss {self.seen['loss']:.4f}")
        if "val_loss" in self.seen:
            parts.append(f"val loss {self.seen['val_loss']:.4f}")
        if "tokens_per_s" in self.seen:
            parts.append(f"{self.seen['tokens_per_s']:,.0f} tokens/s")
        parts.append(f"elapsed {clock(elapsed)}")
        if done > 0:
            parts.append(f"about {clock(elapsed / done * (total - done))} left")
        return min(100.0, 100.0 * done / total), ", ".join(parts)

    def update(self, row: dict[str, float], force: bool = False) -> None:
        """Take a metrics row; send the artifact when `interval` seconds have passed since the last send."""
        self.seen |= {key: value for key, value in row.items() if isinstance(value, (int, float))}
        now = time.monotonic()
        if self.first_step is None and "step" in self.seen:
            self.first_step, self.started = int(self.seen["step"]), now
        if self.artifact_id is None or (not force and now - self.shown < self.interval):
            return
        self.shown = now
        share, line = self.describe(now)
        update_progress_artifact(self.artifact_id, share, line)

    def finish(self) -> None:
        self.update({}, force=True)
