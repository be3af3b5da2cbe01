"""Training rows and evaluation of a conversation dataset (tasks/corpus/chat_tokens.py): rows of whole conversations,
with targets only where the mask says the token is trained on (the replies), and bits per character of the replies.

    rows = ChatRows(dataset, "train", block_size=256, seed=1337, packing=True)
    x, y = rows.batch(sample_indices(cursor, micro_step, rank, world_size, batch_size))   # y is -1 off the replies
    rows.fill                      # the share of row positions that hold a conversation (the rest is padding)
    ReplyBits(dataset, block_size=256, max_chars=100_000).score(model, rows=8)   # {"val_bpc": ..., "val_bpc/poem": ...}

Packing lays conversations one after another in a row, in a seeded order, starting a new row when the next one does
not fit, and pads the rest of the row; without packing each row holds one conversation, padded. A conversation longer
than a row keeps its end (the reply and its end of turn come last), its start cut. Padding and the user's turns
have no target, so the loss is the mean over the reply tokens of a batch. Rows go round in a new order each epoch
(the same Feistel permutation as documents), so batches are a pure function of (seed, cursor, rank) and a run
resumes exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gpt.bpc import add_target_nats
from gpt.data import Permutation
from gpt.dist import DistEnv, all_reduce_sum
from gpt.shards import TokenDataset


def chat_meta(chat: dict) -> dict:
    """What a checkpoint says of the conversations it was trained on: the template, its tokens, the tasks."""
    return {key: chat[key] for key in ("template", "tokens", "vocab_size", "tasks")}


def conversation_index(dataset: TokenDataset, split: str) -> dict[str, np.ndarray]:
    """Each conversation of a split: shard, start, tokens, task (an index into the manifest's tasks), reply_chars."""
    with np.load(dataset.folder / dataset.chat["index"][split]) as index:
        return {key: index[key] for key in index.files}


def pack(lengths: np.ndarray, order: np.ndarray, width: int, packing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows of at most `width` tokens: the conversations of `order` in turn, a new row when the next does not fit
    (each alone without packing). Returns each row's first place in `order`, and the end."""
    starts, used = [], width
    for k, n in enumerate(np.minimum(lengths[order], width).tolist()):
        if not packing or used + n > width:
            starts.append(k)
            used = 0
        used += n
    return np.asarray(starts, dtype=np.int64), np.int64(len(order))


def reply_span(dataset: TokenDataset, split: str, index: dict[str, np.ndarray]) -> np.ndarray:
    """Per conversation of a split (its index): the tokens from its first trained one to its end."""
    spans = np.empty(len(index["tokens"]), dtype=np.int64)
    for k, (shard, start, n) in enumerate(zip(index["shard"].tolist(), index["start"].tolist(),
                                              index["tokens"].tolist(), strict=True)):  # fmt: skip
        trained = np.flatnonzero(dataset.mask(split, shard)[start : start + n])
        spans[k] = n - trained[0] if len(trained) else 0
    return spans


class ChatRows:
    """A split's conversations as rows of block_size + 1 tokens, with inputs, and targets only on trained tokens."""

    def __init__(self, dataset: TokenDataset, split: str, block_size: int, seed: int, packing: bool = True):
        self.dataset, self.split, self.block_size, self.seed = dataset, split, block_size, seed
        self.index = conversation_index(dataset, split)
        lengths = self.index["tokens"]
        if not len(lengths):
            raise ValueError(f"{dataset.folder} has no {split} conversations")
        self.order = np.random.default_rng(seed).permutation(len(lengths))
        starts, end = pack(lengths, self.order, block_size + 1, packing)
        self.row_bounds = np.append(starts, end)
        self.num_windows = len(starts)
        self.truncated = int((lengths > block_size + 1).sum())
        self.fill = float(np.minimum(lengths, block_size + 1).sum() / (self.num_windows * (block_size + 1)))
        shards = len(dataset.shard_paths(split))
        self.tokens = [dataset.tokens(split, k) for k in range(shards)]
        self.masks = [dataset.mask(split, k) for k in range(shards)]
        self._orders: dict[int, Permutation] = {}

    def _order(self, epoch: int) -> Permutation:
        if epoch not in self._orders:
            self._orders = {epoch: Permutation(self.num_windows, self.seed + epoch), **self._orders}
            while len(self._orders) > 2:  # a batch spans at most two epochs
                self._orders.popitem()
        return self._orders[epoch]

    def row(self, conversations: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets (-1 where nothing is trained) of a row holding `conversations` in turn, padded."""
        width = self.block_size + 1
        ids, trained = np.zeros(width, dtype=np.int64), np.zeros(width, dtype=bool)
        at = 0
        for conversation in conversations:
            shard, start = int(self.index["shard"][conversation]), int(self.index["start"][conversation])
            total = int(self.index["tokens"][conversation])
            n = min(total, width - at)
            start += total - n  # a conversation longer than the row: its end
            ids[at : at + n] = self.tokens[shard][start : start + n]
            trained[at : at + n] = self.masks[shard][start : start + n] == 1
            at += n
        return ids[:-1], np.where(trained[1:], ids[1:], -1)

    def batch(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets (-1 where nothing is trained), (len(samples), block_size) int64 each."""
        epochs, positions = np.divmod(np.asarray(samples, dtype=np.int64), self.num_windows)
        rows = np.empty_like(positions)
        for epoch in np.unique(epochs).tolist():
            chosen = epochs == epoch
            rows[chosen] = self._order(epoch)(positions[chosen])
        pairs = [self.row(self.order[self.row_bounds[r] : self.row_bounds[r + 1]].tolist()) for r in rows.tolist()]
        return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])


class ReplyBits:
    """Bits per character of the replies of held-out conversations, per task: the model's bits on every trained
    token (a reply's tokens and its end of turn) over the characters of the replies. Each conversation is scored on
    its own (one per row, its start cut when it is longer than the row), the first ones of each task up to
    `max_chars` reply characters; one whose replies do not fit in the context is left out (`left_out`)."""

    def __init__(self, dataset: TokenDataset, block_size: int, max_chars: int):
        self.tasks = list(dataset.chat["tasks"])
        self.rows = ChatRows(dataset, "val", block_size, 0, packing=False)
        index = self.rows.index
        fits = reply_span(dataset, "val", index) < block_size + 1  # the replies, and a token of context before them
        self.left_out = int((~fits).sum())
        chosen = []
        for task in range(len(self.tasks)):
            mine = np.flatnonzero(fits & (index["task"] == task))
            chars = np.cumsum(index["reply_chars"][mine])
            chosen.append(mine[: int(np.searchsorted(chars, max_chars)) + 1])
        self.conversations = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        self.task = index["task"][self.conversations]
        self.chars = np.bincount(self.task, weights=index["reply_chars"][self.conversations], minlength=len(self.tasks))

    @torch.no_grad()
    def score(self, model, rows: int, env: DistEnv | None = None, autocast=None) -> dict[str, float]:
        """val_bpc over every task's replies, and val_bpc/<task> (each rank scores a share of the conversations)."""
        device = model.lm_head.weight.device
        mine = np.arange(len(self.conversations))
        if env is not None and env.world_size > 1:
            mine = mine[env.rank :: env.world_size]
        nats = torch.zeros(len(self.tasks), dtype=torch.float64, device=device)
        was_training = model.training
        model.eval()
        for at in range(0, len(mine), rows):
            chosen = mine[at : at + rows]
            pairs = [self.rows.row([c]) for c in self.conversations[chosen].tolist()]
            y = torch.from_numpy(np.stack([y for _, y in pairs])).to(device)
            owner = torch.where(y >= 0, torch.from_numpy(self.task[chosen]).to(device)[:, None], -1)
            add_target_nats(model, torch.from_numpy(np.stack([x for x, _ in pairs])).to(device), y, owner, nats,
                            autocast)  # fmt: skip
        model.train(was_training)
        if env is not None:
            nats = all_reduce_sum(nats, env)
        bits = nats.cpu().numpy() / math.log(2)
        if not self.chars.sum():  # no held-out reply fits the context: no score, rather than a perfect one
            return {}
        scores = {"val_bpc": float(bits.sum() / self.chars.sum())}
        for k, task in enumerate(self.tasks):
            if self.chars[k]:
                scores[f"val_bpc/{task}"] = float(bits[k] / self.chars[k])
        return scores
