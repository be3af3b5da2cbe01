import json

import pytest
from helpers import train

from gpt.evaluate import evaluate_checkpoint, validation_set_id


def test_evaluation_repeats_the_training_loops_own_val_loss(tiny, tmp_path, char_dataset):
    cfg, _ = tiny(max_iters=10, eval_interval=10, eval_iters=3)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = next(r["val_loss"] for r in rows if r["step"] == 10 and "val_loss" in r)
    loss = evaluate_checkpoint(tmp_path / "run" / "step-10", char_dataset, cfg.batch_size, 3, device="cpu")
    assert loss == pytest.approx(logged, rel=1e-5)


def test_validation_set_id_changes_with_the_windows(char_dataset):
    ids = {validation_set_id(char_dataset, 32, b, n) for b, n in ((4, 3), (4, 3), (8, 3), (4, 5))}
    assert len(ids) == 3
