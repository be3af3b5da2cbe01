"""Carrying a run on (continue_from), as a nightly run does: the whole training state travels, the data cursor goes
on, fresh documents come first."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import train

from gpt.checkpoint import read_meta
from gpt.data import TokenWindows
from gpt.shards import TokenDataset, token_dtype, write_manifest, write_shard

STEADY = {"lr_schedule": "constant", "warmup_iters": 0}


def losses(out_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture
def windows_read(monkeypatch):
    """Every training window read, as (shard file, epoch, window number), in order."""
    seen: list[tuple[str, int, int]] = []
    folders: dict[int, str] = {}
    init, batch = TokenWindows.__init__, TokenWindows.batch

    def named(self, shard_paths, block_size, seed):
        folders[id(self)] = Path(shard_paths[0]).parent.name
        init(self, shard_paths, block_size, seed)

    def recording(self, samples):
        if self.seed != 1337:  # the evaluation windows
            return batch(self, samples)
        epochs, positions = np.divmod(np.asarray(samples), self.num_windows)
        for epoch, position in zip(epochs.tolist(), positions.tolist(), strict=True):
            window = int(self._epoch(epoch)[0](np.array([position]))[0])
            seen.append((folders[id(self)], epoch, window))
        return batch(self, samples)

    monkeypatch.setattr(TokenWindows, "__init__", named)
    monkeypatch.setattr(TokenWindows, "batch", recording)
    return seen


def fresh_dataset(folder: Path, source: Path) -> Path:
    """A token dataset with the tokenizer of `source` holding other tokens (its val split as train)."""
    dataset = TokenDataset.open(source)
    tokens = np.asarray(dataset.tokens("val", 0)[:3000])
    folder.mkdir()
    entry = write_shard(folder / "train-00000.bin", tokens, token_dtype(dataset.vocab_size))
    write_manifest(folder, dataset.tokenizer(), {"train": [entry]}, created_by="test")
    return folder


def test_pretraining_then_a_night_equals_one_uninterrupted_run(tiny, tmp_path):
    full, _ = tiny(out_dir=tmp_path / "full", max_iters=20, **STEADY)
    train(full)
    pretraining, _ = tiny(out_dir=tmp_path / "pretraining", max_iters=10, **STEADY)
    train(pretraining)
    night, _ = tiny(out_dir=tmp_path / "night", max_iters=20, continue_from=str(tmp_path / "pretraining"), **STEADY)
    assert train(night)["step"] == 20
    first, rest = losses(tmp_path / "pretraining"), losses(tmp_path / "night")
    assert sorted(rest) == list(range(11, 21))
    assert first | rest == losses(tmp_path / "full")  # bitwise: the same floats
    assert read_meta(tmp_path / "night" / "step-20")["cursor"] == read_meta(tmp_path / "full" / "step-20")["cursor"]


def test_consecutive_nights_train_on_windows_never_trained_on(tiny, tmp_path, windows_read):
    runs = ["pretraining", "night-1", "night-2"]
    for k, name in enumerate(runs):
        parent = {"continue_from": str(tmp_path / runs[k - 1])} if k else {}
        cfg, _ = tiny(out_dir=tmp_path / name, max_iters=10 * (k + 1), **STEADY, **parent)
        before = len(windows_read)
        train(cfg)
        batches = windows_read[before:]
        assert len(batches) == 10 * cfg.batch_size
        assert not set(batches) & set(windows_read[:before])  # nothing trained on before
        assert len(set(batches)) == len(batches)


def test_fresh_documents_come_first_each_once_with_replay(tiny, tmp_path, char_dataset, windows_read):
    pretraining, _ = tiny(out_dir=tmp_path / "pretraining", max_iters=5, **STEADY)
    train(pretraining)
    fresh = fresh_dataset(tmp_path / "fresh", char_dataset)
    fresh_windows = TokenWindows(TokenDataset.open(fresh).shard_paths("train"), 32, 1337).num_windows
    night, _ = tiny(
        out_dir=tmp_path / "night", max_iters=5 + 40, continue_from=str(tmp_path / "pretraining"),
        fresh_data=str(fresh), replay=0.25, **STEADY,
    )  # fmt: skip
    before = len(windows_read)
    train(night)
    batches = [windows_read[before + 4 * k : before + 4 * (k + 1)] for k in range(40)]
    sources = [[name for name, _, _ in batch] for batch in batches]
    steps_of_fresh = -(-fresh_windows // 3)  # 3 fresh rows and 1 replayed in each batch of 4
    assert all(s == ["fresh"] * 3 + [char_dataset.name] for s in sources[:steps_of_fresh])
    assert all(s == [char_dataset.name] * 4 for s in sources[steps_of_fresh:])
    fresh_read = [w for batch in batches for w in batch if w[0] == "fresh"]
    assert {w[2] for w in fresh_read} == set(range(fresh_windows))  # every fresh window, the last batch wrapping
    meta = read_meta(tmp_path / "night" / "step-45")
    assert meta["fresh"]["cursor"] == 3 * steps_of_fresh and meta["fresh"]["windows"] == fresh_windows


def test_a_night_stopped_midway_and_run_again_ends_as_an_uninterrupted_night(tiny, tmp_path, char_dataset):
    pretraining, _ = tiny(out_dir=tmp_path / "pretraining", max_iters=5, **STEADY)
    train(pretraining)
    fresh = fresh_dataset(tmp_path / "fresh", char_dataset)
    carry = {"continue_from": str(tmp_path / "pretraining"), "fresh_data": str(fresh), "replay": 0.25, **STEADY}
    whole, _ = tiny(out_dir=tmp_path / "whole", max_iters=25, **carry)
    train(whole)
    stopped, _ = tiny(out_dir=tmp_path / "again", max_iters=15, **carry)
    train(stopped)
    again, _ = tiny(out_dir=tmp_path / "again", max_iters=25, **carry)  # the same night, run again
    train(again)
    assert losses(tmp_path / "again") == losses(tmp_path / "whole")
    other, _ = tiny(out_dir=tmp_path / "again", max_iters=30, **{**carry, "fresh_data": str(char_dataset)})
    with pytest.raises(ValueError, match="other fresh_data"):
        train(other)
