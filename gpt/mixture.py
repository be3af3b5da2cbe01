"""The data mixture: each corpus' share of the training windows, and the fixed order that draws them.

    mixture = MixtureConfig(shares={"translation2019zh": 0.2}, epochs={"poetry-tang": 4})
    mixture.problems(["wiki2019zh", "translation2019zh", "poetry-tang"])     # [] when it fits the corpora
    shares = mixture.resolve({"wiki2019zh": 9e8, "translation2019zh": 2e7, "poetry-tang": 5e6})  # train tokens
    schedule = MixtureSchedule(shares)
    corpus, nth = schedule.locate(samples)    # each global sample number: its corpus and its number in that corpus
    schedule.counts(cursor)                    # samples of each corpus among the first `cursor`

Named shares are taken as given; the corpora without one share the rest in proportion to their train tokens times
their `epochs` (1 unless named), so with nothing named the mix is each corpus' size, as uniform sampling gives.

The schedule turns shares into whole numbers of samples per period of PERIOD samples (largest remainders), and
orders one period by the Sainte-Lague priority (the k-th sample of corpus c comes at (k + 1/2) / weight_c), so that
every corpus is spread evenly through the period. Sample s is then period position s mod PERIOD: where a corpus'
samples are is a pure function of s, which keeps batches deterministic per rank and a resumed run exact from its
cursor, and the counts of any prefix follow the shares to within a sample per corpus per period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PERIOD = 10_000
"""Samples per period of the schedule: shares are followed to 1 / PERIOD."""


@dataclass
class MixtureConfig:
    """Each corpus' share of the training tokens (docs/pipelines.md, "The data mixture")."""

    shares: dict[str, float] = field(default_factory=dict)
    """Share of the training tokens per corpus, from 0 (left out) to 1; the corpora not named share the rest."""
    epochs: dict[str, float] = field(default_factory=dict)
    """For corpora without a share: how many times a corpus is seen for each pass over an unnamed one (default 1;
    4 sees a small corpus four times as often as its size alone would)."""

    @property
    def enabled(self) -> bool:
        return bool(self.shares or self.epochs)

    def problems(self, corpora: list[str] | None = None) -> list[str]:
        """What is wrong with this mixture (for the given corpora, when known)."""
        found = [f"shares.{c} must be in [0, 1], got {v}" for c, v in self.shares.items() if not 0 <= v <= 1]
        found += [f"epochs.{c} must not be negative, got {v}" for c, v in self.epochs.items() if v < 0]
        found += [f"{c} has both a share and epochs; give one" for c in sorted(set(self.shares) & set(self.epochs))]
        total = sum(self.shares.values())
        if total > 1 + 1e-9:
            found.append(f"the shares add up to {total:g}, more than 1")
        if corpora is None:
            return found
        for name in sorted((set(self.shares) | set(self.epochs)) - set(corpora)):
            found.append(f"{name} is not a corpus of this dataset (its corpora: {', '.join(corpora)})")
        rest = [c for c in corpora if c not in self.shares and self.epochs.get(c, 1) > 0]
        if rest and total >= 1 - 1e-9:
            found.append(f"the shares add up to 1, leaving nothing for {', '.join(rest)} (give them a share of 0)")
        if not rest and self.shares and abs(total - 1) > 1e-9:
            found.append(f"every corpus has a share, and they add up to {total:g}, not 1")
        return found

    def resolve(self, tokens: dict[str, int]) -> dict[str, float]:
        """Each corpus' share of the samples, from the train tokens of the dataset's corpora."""
        if problems := self.problems(list(tokens)):
            raise ValueError("mixture: " + "; ".join(problems))
        if empty := [c for c, share in self.shares.items() if share > 0 and not tokens[c]]:
            raise ValueError(f"mixture: {', '.join(empty)} has a share but no train tokens in this dataset")
        shares = {c: float(self.shares[c]) for c in tokens if c in self.shares}
        weights = {c: tokens[c] * self.epochs.get(c, 1.0) for c in tokens if c not in self.shares}
        rest, weight = 1 - sum(shares.values()), sum(weights.values())
        if weights and weight == 0 and rest > 1e-9:
            raise ValueError(f"mixture: {', '.join(weights)} should share {rest:g} of the samples but have no tokens")
        shares |= {c: rest * w / weight if weight else 0.0 for c, w in weights.items()}
        return {c: shares[c] for c in tokens}


class MixtureSchedule:
    """Which corpus each global sample number draws from (module doc)."""

    def __init__(self, shares: dict[str, float]):
        self.corpora = list(shares)
        exact = np.array([shares[c] for c in self.corpora], dtype=np.float64) * PERIOD
        weights = np.floor(exact).astype(np.int64)
        short = PERIOD - int(weights.sum())
        weights[np.argsort(-(exact - weights), kind="stable")[:short]] += 1  # largest remainders
        self.weights = weights
        corpus = np.repeat(np.arange(len(weights)), weights)
        nth = np.concatenate([np.arange(w) for w in weights]).astype(np.int64)
        order = np.lexsort((corpus, (nth + 0.5) / weights[corpus]))
        self.corpus, self.nth = corpus[order], nth[order]
        self.before = np.zeros((PERIOD + 1, len(weights)), dtype=np.int64)  # samples of each corpus before p
        self.before[np.arange(1, PERIOD + 1), self.corpus] = 1
        self.before = np.cumsum(self.before, axis=0)

    def locate(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(corpus index, the sample's number within that corpus) for each global sample number."""
        periods, positions = np.divmod(np.asarray(samples, dtype=np.int64), PERIOD)
        corpus = self.corpus[positions]
        return corpus, periods * self.weights[corpus] + self.nth[positions]

    def counts(self, cursor: int) -> dict[str, int]:
        """Samples drawn from each corpus among global samples [0, cursor)."""
        periods, position = divmod(int(cursor), PERIOD)
        drawn = periods * self.weights + self.before[position]
        return {c: int(n) for c, n in zip(self.corpora, drawn, strict=True)}
