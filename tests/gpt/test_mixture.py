"""The data mixture: shares resolved from a dataset's corpora, a schedule that follows them in every prefix and
resumes from a cursor, and windows drawn corpus by corpus from a real two-corpus token dataset."""

import json

import numpy as np
import pytest
from helpers import tiny_settings, train

from gpt.config import TrainConfig, from_dict
from gpt.data import MixtureWindows, sample_indices
from gpt.mixture import PERIOD, MixtureConfig, MixtureSchedule
from gpt.shards import TokenDataset, write_manifest, write_shard
from gpt.tokenizer import tokenizer_from_spec


def test_shares_epochs_and_the_default_by_size():
    tokens = {"news": 9_000, "qa": 900, "poems": 100}
    assert MixtureConfig().resolve(tokens) == pytest.approx({"news": 0.9, "qa": 0.09, "poems": 0.01})
    shares = MixtureConfig(shares={"poems": 0.2}).resolve(tokens)
    assert shares == pytest.approx({"news": 0.8 * 9_000 / 9_900, "qa": 0.8 * 900 / 9_900, "poems": 0.2})
    shares = MixtureConfig(epochs={"poems": 10, "news": 0}).resolve(tokens)
    assert shares == pytest.approx({"news": 0.0, "qa": 900 / 1_900, "poems": 1_000 / 1_900})


@pytest.mark.parametrize(
    ("mixture", "said"),
    [
        (MixtureConfig(shares={"poems": 1.5}), "shares.poems must be in [0, 1]"),
        (MixtureConfig(shares={"news": 0.7, "poems": 0.6}), "add up to 1.3, more than 1"),
        (MixtureConfig(shares={"wiki": 0.1}), "wiki is not a corpus of this dataset"),
        (MixtureConfig(shares={"news": 0.5, "poems": 0.5}), "leaving nothing for qa"),
        (MixtureConfig(shares={"news": 0.5, "qa": 0.2, "poems": 0.2}), "add up to 0.9, not 1"),
        (MixtureConfig(shares={"poems": 0.5}, epochs={"poems": 2}), "poems has both a share and epochs"),
        (MixtureConfig(epochs={"qa": -1}), "epochs.qa must not be negative"),
    ],
)
def test_a_mixture_that_cannot_be_followed_is_refused(mixture, said):
    assert any(said in problem for problem in mixture.problems(["news", "qa", "poems"]))


def test_the_schedule_follows_the_shares_in_every_prefix_and_resumes_from_a_cursor():
    shares = {"news": 0.55, "qa": 0.3, "poems": 0.1499, "none": 0.0001}
    schedule = MixtureSchedule(shares)
    corpus, nth = schedule.locate(np.arange(3 * PERIOD + 1234))
    for end in (1_000, 5_000, PERIOD, 2 * PERIOD + 17, len(corpus)):
        counts = np.bincount(corpus[:end], minlength=4)
        assert counts.tolist() == list(schedule.counts(end).values())
        assert np.abs(counts / end - np.array(list(shares.values()))).max() < 0.01
    for k in range(4):  # each corpus' samples are numbered 0, 1, 2, ... in order: none skipped, none twice
        assert nth[corpus == k].tolist() == list(range((corpus == k).sum()))
    resumed = schedule.locate(np.arange(20_000, 20_100))
    assert (resumed[0] == corpus[20_000:20_100]).all() and (resumed[1] == nth[20_000:20_100]).all()


def two_corpus_dataset(tmp_path) -> TokenDataset:
    """Train tokens of corpus a (ids below 100) then corpus b (ids from 100), across two shards."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer_from_spec({"type": "char", "chars": [chr(0x4E00 + i) for i in range(300)]})
    a = np.arange(6_000) % 100
    b = 100 + np.arange(2_000) % 100
    tokens = np.concatenate([a, b]).astype(np.uint16)
    splits = {"train": [write_shard(tmp_path / "train-0.bin", tokens[:5_000], np.uint16),
                        write_shard(tmp_path / "train-1.bin", tokens[5_000:], np.uint16)],
              "val": [write_shard(tmp_path / "val-0.bin", tokens[:1_000], np.uint16)]}  # fmt: skip
    per_corpus = {"a": {"train": 6_000}, "b": {"train": 2_000}}
    write_manifest(
        tmp_path, tokenizer, splits, created_by="test", tokens_per_corpus=per_corpus,
        corpora={"train": [["a", 0, 6_000], ["b", 6_000, 8_000]], "val": [["a", 0, 1_000]]},
    )  # fmt: skip
    return TokenDataset.open(tmp_path)


def test_windows_come_from_each_corpus_at_its_share_across_ranks(tmp_path):
    dataset = two_corpus_dataset(tmp_path)
    assert dataset.corpus_pieces("train") == {"a": [(0, 0, 5_000), (1, 0, 1_000)], "b": [(1, 1_000, 3_000)]}
    windows = MixtureWindows(dataset, block_size=16, seed=1, shares={"a": 0.25, "b": 0.75})
    rows = [windows.batch(sample_indices(0, step, rank, 2, 8))[0] for step in range(50) for rank in range(2)]
    x = np.concatenate(rows)
    from_b = (x >= 100).all(axis=1)
    assert ((x < 100).all(axis=1) | from_b).all()  # no window crosses from one corpus into the other
    assert from_b.mean() == pytest.approx(0.75, abs=0.01)
    assert windows.counts(800) == {"a": 200, "b": 600}
    again = MixtureWindows(dataset, block_size=16, seed=1, shares={"a": 0.25, "b": 0.75})
    assert (again.batch(sample_indices(0, 7, 1, 2, 8))[0] == rows[15]).all()  # a rebuilt loader: the same batch


def test_a_training_run_draws_at_the_shares_and_logs_each_corpus_tokens(tmp_path):
    dataset = two_corpus_dataset(tmp_path / "data")
    mixture = {"shares": {"b": 0.5}}
    settings = tiny_settings(dataset.folder, tmp_path / "run", max_iters=10, mixture=mixture, eval_chars=0)
    cfg = from_dict(TrainConfig, settings)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "train_tokens_a" in r][-1]
    assert last["step"] == 10 and last["train_tokens_a"] == last["train_tokens_b"] == 10 * 4 * 32 // 2
