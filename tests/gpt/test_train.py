import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_settings, train
from safetensors.torch import save_model

from gpt.checkpoint import list_checkpoints, read_meta
from gpt.optim import learning_rate
from gpt.train import NonFiniteLossError, main

GOLDEN = Path(__file__).with_name("golden_losses.json")


def metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def losses(out_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in metrics(out_dir) if "loss" in m}


def test_first_losses_equal_golden_values(tiny, tmp_path):
    cfg, _ = tiny(max_iters=10)
    train(cfg)
    got = [losses(tmp_path / "run")[s] for s in range(1, 11)]
    golden = json.loads(GOLDEN.read_text())
    assert got == pytest.approx(golden, rel=1e-5, abs=1e-6)
    assert got[-1] < got[0]


def test_metrics_and_checkpoints(tiny, tmp_path):
    cfg, _ = tiny(max_iters=20, keep_last=1)
    result = train(cfg)
    rows = metrics(tmp_path / "run")
    assert rows[0]["step"] == 0 and {"train_loss", "val_loss"} <= rows[0].keys()
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 21))
    assert {"lr", "tokens_per_s", "ms_per_iter"} <= steps[0].keys()
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 10, 20]
    kept = [p.name for p in list_checkpoints(tmp_path / "run")]
    best = min((r["val_loss"], r["step"]) for r in rows if "val_loss" in r and r["step"] > 0)[1]
    assert kept == sorted({f"step-{best}", "step-20"}, key=lambda n: int(n[5:]))
    meta = read_meta(tmp_path / "run" / "step-20")
    assert meta["val_loss"] == rows[-1]["val_loss"] and meta["versions"]["torch"].startswith("2.")
    assert result["step"] == 20


def test_resume_in_process_continues_exactly(tiny, tmp_path):
    full, _ = tiny(out_dir=tmp_path / "full", max_iters=20, lr_decay_iters=20)
    train(full)
    part, _ = tiny(out_dir=tmp_path / "part", max_iters=10, lr_decay_iters=20)  # stopped early, same schedule
    train(part)
    rest, _ = tiny(out_dir=tmp_path / "part", max_iters=20, lr_decay_iters=20, init_from="resume")
    train(rest)
    assert losses(tmp_path / "part") == losses(tmp_path / "full")


def test_only_resume_continues_in_a_folder_with_checkpoints(tiny, tmp_path):
    cfg, _ = tiny(max_iters=5)
    train(cfg)
    with pytest.raises(ValueError, match="already holds checkpoints of another run; pass --init_from=resume"):
        train(cfg)
    finetune, _ = tiny(max_iters=5, init_from=str(tmp_path / "run"))  # new weights into the old run's folder
    with pytest.raises(ValueError, match="already holds checkpoints of another run"):
        train(finetune)
    other_seed, _ = tiny(max_iters=10, init_from="resume", seed=7)
    with pytest.raises(ValueError, match="trained with seed 1337; resume with --seed=1337"):
        train(other_seed)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-5"]


def test_resume_refuses_other_data_of_the_same_size(tiny, tmp_path, char_dataset):
    import shutil

    from helpers import tiny_settings

    from gpt.config import TrainConfig, from_dict
    from gpt.prepare_text import prepare_text

    cfg, _ = tiny(max_iters=5)
    train(cfg)
    text = (char_dataset.parent / "input.txt").read_text(encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text(text[::-1], encoding="utf-8")  # the same characters and length, in another order
    prepare_text(other, tmp_path / "reversed", "char")
    shutil.copy(char_dataset / "tokenizer.json", tmp_path / "reversed" / "tokenizer.json")
    settings = tiny_settings(tmp_path / "reversed", tmp_path / "run", max_iters=10, init_from="resume")
    with pytest.raises(ValueError, match="the data changed, so its position cannot be resumed"):
        train(from_dict(TrainConfig, settings))


def test_config_values_are_checked():
    from gpt.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="eval_interval must be at least 1"):
        TrainConfig(eval_interval=0)
    with pytest.raises(ConfigError, match="seed must not be negative"):
        TrainConfig(seed=-1)


def test_nan_loss_stops_before_the_optimizer_step(tiny, tmp_path):
    cfg, _ = tiny(max_iters=5)
    train(cfg)
    ckpt = tmp_path / "run" / "step-5"
    from gpt.checkpoint import load_model

    model, _ = load_model(ckpt)
    with torch.no_grad():
        model.transformer.wpe.weight[3, 0] = float("nan")
    save_model(model, str(ckpt / "model.safetensors"))
    bad, _ = tiny(out_dir=tmp_path / "nan", init_from=str(ckpt), eval_interval=100)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1.*before the optimizer step"):
        train(bad)
    assert list_checkpoints(tmp_path / "nan") == []


def test_cli_rejects_unknown_keys_and_missing_data(capsys):
    assert main(["shakespeare-char-cpu", "--n_layer=4"]) == 2
    assert "unknown key 'n_layer'" in capsys.readouterr().err
    assert main(["--max_iters=3"]) == 2
    assert "no dataset" in capsys.readouterr().err


def test_learning_rate_schedule(tiny):
    cfg, _ = tiny(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    assert learning_rate(cfg, 0) == pytest.approx(1 / 11)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 60) == pytest.approx(0.55)
    assert learning_rate(cfg, 200) == pytest.approx(0.1)
    const, _ = tiny(lr=0.5, lr_schedule="constant", warmup_iters=0)
    assert learning_rate(const, 1000) == 0.5 and math.isfinite(learning_rate(const, 0))


def test_checkpoints_of_a_tiktoken_dataset_need_no_vocabulary_download(tmp_path, shakespeare_text):
    """Saving copies the dataset's tokenizer description; it must not load (and so download) the vocabulary."""
    from gpt.prepare_text import prepare_text

    source = tmp_path / "input.txt"
    source.write_text(shakespeare_text[:20_000], encoding="utf-8")
    prepare_text(source, tmp_path / "data", "gpt2")
    settings = tiny_settings(tmp_path / "data", tmp_path / "run", max_iters=2, eval_interval=2, ckpt_interval=2)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings), encoding="utf-8")
    (tmp_path / "empty-cache").mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "gpt.train", str(config)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "step-2" / "tokenizer.json").is_file()


def test_samples_at_each_evaluation_leave_the_training_as_it_was(tiny, tmp_path):
    plain, _ = tiny(out_dir=tmp_path / "plain", max_iters=20)
    train(plain)
    sampled, _ = tiny(out_dir=tmp_path / "sampled", max_iters=20, sample_tokens=12, sample_prompt="ROMEO:")
    train(sampled)
    assert losses(tmp_path / "sampled") == losses(tmp_path / "plain")  # the random state did not move
    written = sorted((tmp_path / "sampled" / "samples").iterdir())  # by name, which is by step
    assert [p.name for p in written] == ["step-0000000.txt", "step-0000010.txt", "step-0000020.txt"]
    texts = [p.read_text(encoding="utf-8") for p in written]
    assert all(t.startswith("ROMEO:") and len(t) > len("ROMEO:") for t in texts)
    assert not (tmp_path / "plain" / "samples").exists()
