"""The training's progress line: the share of its steps done, the newest metrics and the time left."""

from __future__ import annotations

import pytest

from tasks.training.progress import TrainingProgress, artifact_key, clock


def test_the_line_tells_step_loss_speed_and_time_left_from_the_first_step_seen():
    progress = TrainingProgress(None, last_step=1200)
    assert progress.describe(0.0) == (0.0, "starting, 1,200 steps to go")
    progress.update({"step": 200, "train_loss": 5.0, "val_loss": 5.25})  # a continued run resumes at 200
    started = progress.started
    progress.update({"step": 450, "loss": 4.12345, "tokens_per_s": 10432.6, "lr": 0.004})
    share, line = progress.describe(started + 50.0)
    assert share == pytest.approx(25.0)  # 250 of the 1,000 steps this run trains
    assert line == "step 450 of 1,200, loss 4.1235, val loss 5.2500, 10,433 tokens/s, elapsed 0:50, about 2:30 left"


def test_the_share_never_passes_the_whole():
    progress = TrainingProgress(None, last_step=10)
    progress.update({"step": 0})
    progress.update({"step": 12})
    assert progress.describe(progress.started + 1)[0] == 100.0


def test_clock_and_key():
    assert [clock(6), clock(245), clock(3723)] == ["0:06", "4:05", "1:02:03"]
    assert artifact_key("Chinese_GPT2-20261207-0200-ab12") == "training-chinese-gpt2-20261207-0200-ab12"
