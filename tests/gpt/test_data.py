from pathlib import Path

import numpy as np
import pytest

from gpt.data import Permutation, TokenWindows, sample_indices
from gpt.shards import write_shard


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 4097])
def test_permutation_is_a_bijection(n):
    out = Permutation(n, seed=3)(np.arange(n))
    assert sorted(out.tolist()) == list(range(n))


def test_permutation_depends_on_seed():
    assert not np.array_equal(Permutation(1000, 1)(np.arange(1000)), Permutation(1000, 2)(np.arange(1000)))


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate((5000, 3001, 20)):  # the last shard is too short for any window
        paths.append(tmp_path / f"train-{i}.bin")
        write_shard(paths[-1], rng.integers(0, 60000, n), np.uint16)
    return paths


def test_targets_are_inputs_shifted_by_one(shards):
    windows = TokenWindows(shards, block_size=16, seed=0)
    x, y = windows.batch(np.arange(8))
    assert x.shape == y.shape == (8, 16) and x.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])


def test_batches_are_deterministic_across_instances(shards):
    a = TokenWindows(shards, block_size=16, seed=5)
    b = TokenWindows(shards, block_size=16, seed=5)
    c = TokenWindows(shards, block_size=16, seed=6)
    idx = sample_indices(cursor=96, micro_step=1, rank=1, world_size=2, batch_size=8)
    assert np.array_equal(a.batch(idx)[0], b.batch(idx)[0])
    assert not np.array_equal(a.batch(idx)[0], c.batch(idx)[0])


def test_ranks_and_micro_steps_never_share_samples():
    seen = []
    for cursor in (0, 48):  # two steps of 2 micro-steps x 3 ranks x 8 samples
        for micro in range(2):
            for rank in range(3):
                seen.extend(sample_indices(cursor, micro, rank, 3, 8).tolist())
    assert sorted(seen) == list(range(96))


def test_an_epoch_visits_every_window_once_and_ranks_are_disjoint(shards):
    windows = TokenWindows(shards, block_size=16, seed=1)
    n = windows.num_windows
    assert n == 5000 // 16 - 1 + 3001 // 16 - 1
    starts = {r: {tuple(row[:4]) for row in windows.batch(np.arange(r, n, 2))[0]} for r in range(2)}
    assert not starts[0] & starts[1]
    all_rows = windows.batch(np.arange(n))[0]
    assert len({row.tobytes() for row in all_rows}) == n


def test_too_little_data_is_a_clear_error(shards):
    with pytest.raises(ValueError, match="too few for one training window"):
        TokenWindows(shards[2:], block_size=16, seed=0)


def rss_anon_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("RssAnon")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_stays_flat_in_dataset_size(tmp_path):
    path = tmp_path / "big.bin"
    write_shard(path, np.tile(np.arange(50_000, dtype=np.uint16), 400), np.uint16)  # 20M tokens, 40 MB
    before = rss_anon_kb()
    windows = TokenWindows([path], block_size=256, seed=0)
    for step in range(300):
        windows.batch(sample_indices(step * 16, 0, 0, 1, 16))
    assert rss_anon_kb() - before < 8_000  # the tokens stay in the page cache, not in the process
