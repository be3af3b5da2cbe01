"""The training data loader: shuffled (block_size + 1)-token windows read from memory-mapped shards.

Memory stays flat in the dataset size: tokens are memory-mapped and the shuffle is a keyed permutation computed
per index (a Feistel network), never a table. Batches are a pure function of (seed, sample cursor, rank, world
size), so ranks never share a window within an epoch and a run resumes exactly from the cursor in its checkpoint.
TrainBatches takes a run's batches from its cursors, fresh documents first when a run carries on with new ones:

    windows = TokenWindows(dataset.shard_paths("train"), block_size=256, seed=1337)
    x, y = windows.batch(sample_indices(cursor, micro_step, rank, world_size, batch_size))

    windows = MixtureWindows(dataset, block_size=256, seed=1337, shares={"news": 0.7, "poetry": 0.3})  # the same
    windows.counts(cursor)   # samples drawn from each corpus before the cursor

    batches = TrainBatches(windows, fresh_windows, batch_size=4, replay=0.25, rank=rank, world_size=world_size)
    x, y = batches.batch(micro_step)   # each micro-step of an optimizer step, then once per step:
    batches.advance(micro_steps)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpt.hashing import mix64
from gpt.mixture import MixtureSchedule
from gpt.shards import TokenDataset, open_tokens, read_header


class Permutation:
    """A seeded bijection of range(n), evaluated index by index in O(1) memory."""

    def __init__(self, n: int, seed: int, rounds: int = 4):
        if n <= 0:
            raise ValueError("a permutation needs n > 0")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = np.uint64((bits + 1) // 2)
        self.mask = np.uint64((1 << int(self.half)) - 1)
        self.keys = np.random.default_rng(seed).integers(0, 2**63, size=rounds, dtype=np.uint64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (mix64(right ^ key) & self.mask)
        return (left << self.half) | right

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        out = self._encrypt(np.asarray(idx, dtype=np.uint64))
        while (outside := out >= np.uint64(self.n)).any():  # cycle-walk back into range(n)
            out[outside] = self._encrypt(out[outside])
        return out.astype(np.int64)


def sample_indices(cursor: int, micro_step: int, rank: int, world_size: int, batch_size: int) -> np.ndarray:
    """Global sample numbers of one micro-batch: consecutive blocks per (micro-step, rank), never shared."""
    start = cursor + (micro_step * world_size + rank) * batch_size
    return np.arange(start, start + batch_size, dtype=np.int64)


class TokenWindows:
    """All windows of block_size + 1 tokens at stride block_size in a split (or in `pieces` of it: (shard, begin,
    end) token ranges), in a new order each epoch.

    Each epoch also shifts every window by a seeded offset below block_size, so a position is seen in
    different contexts across epochs.
    """

    def __init__(
        self, shard_paths: list[Path], block_size: int, seed: int, pieces: list[tuple[int, int, int]] | None = None
    ):
        self.block_size, self.seed = block_size, seed
        headers = [read_header(p) for p in shard_paths]
        self.tokens = [open_tokens(p, h, random_access=True) for p, h in zip(shard_paths, headers, strict=True)]
        self.pieces = np.array(pieces or [(k, 0, len(t)) for k, t in enumerate(self.tokens)], dtype=np.int64)
        sizes = self.pieces[:, 2] - self.pieces[:, 1]
        counts = np.maximum(0, (sizes - block_size) // block_size)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.num_windows = int(self.starts[-1])
        if self.num_windows == 0:
            total = sum(len(t) for t in self.tokens)
            raise ValueError(
                f"{total} tokens in {[str(p) for p in shard_paths]} are too few for one training window of "
                f"block_size {block_size} (each shard needs at least {2 * block_size}); lower block_size."
            )
        self._epoch_cache: dict[int, tuple[Permutation, int]] = {}

    def _epoch(self, epoch: int) -> tuple[Permutation, int]:
        if epoch not in self._epoch_cache:
            seed = np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]
            offset = int(np.random.default_rng(seed).integers(0, self.block_size))
            self._epoch_cache[epoch] = (Permutation(self.num_windows, int(seed)), offset)
            while len(self._epoch_cache) > 4:  # a batch spans at most two epochs
                del self._epoch_cache[next(iter(self._epoch_cache))]
        return self._epoch_cache[epoch]

    def batch(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets, (len(samples), block_size) int64 each, for global sample numbers."""
        T = self.block_size
        epochs, positions = np.divmod(np.asarray(samples, dtype=np.int64), self.num_windows)
        windows, offsets = np.empty_like(positions), np.empty_like(positions)
        for epoch in np.unique(epochs).tolist():
            perm, offset = self._epoch(epoch)
            chosen = epochs == epoch
            windows[chosen], offsets[chosen] = perm(positions[chosen]), offset
        pieces = np.searchsorted(self.starts, windows, side="right") - 1
        shards = self.pieces[pieces, 0]
        begins = self.pieces[pieces, 1] + offsets + (windows - self.starts[pieces]) * T
        rows = np.empty((len(windows), T + 1), dtype=np.int64)
        for i, (shard, begin) in enumerate(zip(shards.tolist(), begins.tolist(), strict=True)):
            rows[i] = self.tokens[shard][begin : begin + T + 1]
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])


class MixtureWindows:
    """A split's windows drawn corpus by corpus at fixed shares (gpt/mixture.py): global sample s is sample n of
    one corpus, whose own windows go round in their own order, so a small corpus with a large share is seen for
    more epochs than a large one."""

    def __init__(self, dataset: TokenDataset, block_size: int, seed: int, shares: dict[str, float]):
        pieces = dataset.corpus_pieces("train")
        self.schedule = MixtureSchedule({c: share for c, share in shares.items() if share > 0})
        paths = dataset.shard_paths("train")
        self.windows = []
        for k, corpus in enumerate(self.schedule.corpora):
            corpus_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            try:
                self.windows.append(TokenWindows(paths, block_size, corpus_seed, pieces[corpus]))
            except ValueError as e:
                raise ValueError(f"corpus {corpus}: {e}") from e
        self.block_size = block_size
        self.num_windows = sum(w.num_windows for w in self.windows)

    def batch(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets, (len(samples), block_size) int64 each, for global sample numbers."""
        corpus, nth = self.schedule.locate(samples)
        x = np.empty((len(corpus), self.block_size), dtype=np.int64)
        y = np.empty_like(x)
        for k in np.unique(corpus).tolist():
            rows = corpus == k
            x[rows], y[rows] = self.windows[k].batch(nth[rows])
        return x, y

    def counts(self, cursor: int) -> dict[str, int]:
        """Samples drawn from each corpus among global samples [0, cursor)."""
        return self.schedule.counts(cursor)


class TrainBatches:
    """One rank's training batches, taken at the sample cursors of `windows` and of `fresh` windows (new documents).

    While the fresh windows last, each batch takes its rows from them first, each window once, with a `replay` share
    (at least one fresh row) going on from `windows`' cursor; after that every row comes from `windows`.
    """

    def __init__(
        self, windows: TokenWindows, fresh: TokenWindows | None, batch_size: int, replay: float, rank: int,
        world_size: int, cursor: int = 0, fresh_cursor: int = 0,
    ):  # fmt: skip
        self.windows, self.fresh, self.batch_size, self.replay = windows, fresh, batch_size, replay
        self.rank, self.world_size = rank, world_size
        self.cursor, self.fresh_cursor = cursor, fresh_cursor

    def rows(self) -> tuple[int, int]:
        """(fresh, data) rows of each micro-batch: fresh data first while it lasts, with `replay` of the rest."""
        if self.fresh is None or self.fresh_cursor >= self.fresh.num_windows:
            return 0, self.batch_size
        data = min(self.batch_size - 1, round(self.replay * self.batch_size))
        return self.batch_size - data, data

    def batch(self, micro_step: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of one micro-batch of the current optimizer step, fresh rows first."""
        fresh, data = self.rows()
        if not fresh:
            return self.windows.batch(self._samples(self.cursor, micro_step, data))
        parts = [self.fresh.batch(self._samples(self.fresh_cursor, micro_step, fresh))]
        if data:
            parts.append(self.windows.batch(self._samples(self.cursor, micro_step, data)))
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    def advance(self, micro_steps: int) -> None:
        """Move both cursors past an optimizer step of `micro_steps` micro-batches on every rank."""
        fresh, data = self.rows()
        self.cursor += micro_steps * self.world_size * data
        self.fresh_cursor += micro_steps * self.world_size * fresh

    def _samples(self, cursor: int, micro_step: int, rows: int) -> np.ndarray:
        return sample_indices(cursor, micro_step, self.rank, self.world_size, rows)
