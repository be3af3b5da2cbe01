"""Bits per character over whole evaluation documents: a score two models with different tokenizers share.

    documents = EvalDocuments.load(dataset, max_chars=100_000, block_size=256)   # None without an eval index
    scores = documents.score(model, batch_size=8)
    # {"val_bpc": 2.31, "val_bits_per_byte": 0.84, "val_bpc/poetry-tang": 2.28, ...}
    other = EvalDocuments.load(dataset, 100_000, 256, tokenizer=champion_tokenizer)   # the same text, re-encoded
    eval_set_id(dataset, 100_000)        # equal for the same evaluation text, whatever the tokenizer

A token dataset built by build-corpus lists its val documents in eval.npz (first token, tokens, characters, UTF-8
bytes, corpus), in an order that does not depend on the tokenizer. The evaluation set is the first documents of
that list holding `max_chars` characters: the same text for every dataset built from the same deduplicated data.
Their tokens are read as the val split holds them (each document followed by end-of-text), with an end-of-text in
front, and scored by windows of the model's context moved by half a context, so that every token but the first few
is predicted from at least half a context. The loss of each document token (not of the end-of-text after it) is
summed: bits per character = sum of -log2 p over the characters of the documents; per corpus likewise.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gpt.dist import DistEnv, all_reduce_sum
from gpt.model import GPT
from gpt.shards import TokenDataset
from gpt.tokenizer import Tokenizer


def _eval_index(dataset: TokenDataset, max_chars: int) -> dict[str, np.ndarray] | None:
    """The eval.npz rows of the evaluation set: the first documents holding max_chars characters (at least one)."""
    entry = dataset.manifest.get("eval")
    if not entry or dataset.manifest.get("eot_token") is None or not entry["docs"] or max_chars <= 0:
        return None
    with np.load(dataset.folder / entry["file"]) as index:
        rows = {key: index[key] for key in index.files}
    count = max(1, int(np.searchsorted(np.cumsum(rows["chars"]), max_chars, side="right")))
    return {key: value[:count] for key, value in rows.items()}


def eval_set_id(dataset: TokenDataset, max_chars: int) -> str | None:
    """Names the evaluation text (its documents' hashes and corpora), the same for any tokenizer; None without one."""
    index = _eval_index(dataset, max_chars)
    if index is None:
        return None
    h = hashlib.sha256(json.dumps(dataset.manifest["eval"]["corpora"]).encode())
    for key in ("text_hash", "corpus", "chars"):
        h.update(index[key].astype(np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class EvalDocuments:
    stream: np.ndarray
    """int64: end-of-text, then the val split's first tokens, through the last chosen document's end-of-text."""
    corpus_of_target: np.ndarray
    """int64 per position of stream[1:]: the corpus of the document that token belongs to, -1 for an end-of-text."""
    corpora: list[str]
    chars: np.ndarray
    """Characters per corpus in the set."""
    bytes: np.ndarray
    """UTF-8 bytes per corpus in the set."""
    block_size: int

    @classmethod
    def load(
        cls, dataset: TokenDataset, max_chars: int, block_size: int, tokenizer: Tokenizer | None = None
    ) -> EvalDocuments | None:
        """The evaluation set of a dataset, or None when it has no eval index (a dataset made by prepare_text).
        With `tokenizer` (another model's), the same documents are decoded and encoded with it."""
        index = _eval_index(dataset, max_chars)
        if index is None:
            return None
        start, tokens, corpus = index["start"], index["tokens"], index["corpus"]
        end = int(start[-1] + tokens[-1] + 1)
        eot = dataset.manifest["eot_token"]
        stream = np.empty(end + 1, dtype=np.int64)
        stream[0], filled, shard = eot, 1, 0
        while filled < end + 1:
            piece = dataset.tokens("val", shard)[: end + 1 - filled]
            stream[filled : filled + len(piece)] = piece
            filled, shard = filled + len(piece), shard + 1
        docs = [stream[1 + a : 1 + a + n] for a, n in zip(start.tolist(), tokens.tolist(), strict=True)]
        if tokenizer is not None:
            texts = [dataset.tokenizer().decode(ids) for ids in docs]
            docs, eot = [tokenizer.encode_to_numpy(text) for text in texts], tokenizer.eot_token
        pieces, owners = [np.array([eot])], []
        for ids, c in zip(docs, corpus.tolist(), strict=True):
            pieces += [ids, np.array([eot])]
            owners += [np.full(len(ids), c), np.array([-1])]
        k = len(dataset.manifest["eval"]["corpora"])
        return cls(
            np.concatenate(pieces).astype(np.int64), np.concatenate(owners).astype(np.int64),
            list(dataset.manifest["eval"]["corpora"]), np.bincount(corpus, weights=index["chars"], minlength=k),
            np.bincount(corpus, weights=index["bytes"], minlength=k), block_size,
        )  # fmt: skip

    @classmethod
    def from_texts(cls, texts: list[str], tokenizer: Tokenizer, block_size: int, corpus: str = "text") -> EvalDocuments:
        """Any texts as one corpus of whole documents (e.g. a held-out file), encoded with `tokenizer`."""
        eot = tokenizer.eot_token if tokenizer.eot_token is not None else tokenizer.encode("\n")[0]
        pieces, owners = [np.array([eot])], []
        for text in texts:
            ids = tokenizer.encode_to_numpy(text)
            pieces += [ids, np.array([eot])]
            owners += [np.zeros(len(ids)), np.array([-1])]
        chars, nbytes = sum(map(len, texts)), sum(len(t.encode("utf-8")) for t in texts)
        stream, owner = np.concatenate(pieces).astype(np.int64), np.concatenate(owners).astype(np.int64)
        return cls(stream, owner, [corpus], np.array([float(chars)]), np.array([float(nbytes)]), block_size)

    def windows(self) -> list[tuple[int, int, int]]:
        """(begin, end, first scored target) per window over the stream; targets are stream[begin+1 : end+1]."""
        targets, block, stride = len(self.stream) - 1, self.block_size, max(1, self.block_size // 2)
        out, scored, begin = [], 0, 0
        while scored < targets:
            end = min(begin + block, targets)
            out.append((begin, end, scored))
            scored, begin = end, begin + stride
        return out

    @torch.no_grad()
    def score(self, model: GPT, batch_size: int, env: DistEnv | None = None, autocast=None) -> dict[str, float]:
        """val_bpc, val_bits_per_byte and val_bpc/<corpus> of the model (each rank scores a share of the windows)."""
        device = model.lm_head.weight.device
        windows = self.windows()
        if env is not None and env.world_size > 1:
            windows = windows[env.rank :: env.world_size]
        nats = torch.zeros(len(self.corpora), dtype=torch.float64, device=device)
        was_training = model.training
        model.eval()
        for at in range(0, len(windows), batch_size):
            batch = windows[at : at + batch_size]
            x = torch.zeros((len(batch), self.block_size), dtype=torch.long)
            y = torch.full((len(batch), self.block_size), -1, dtype=torch.long)
            owner = torch.full((len(batch), self.block_size), -1, dtype=torch.long)
            for row, (begin, end, scored) in enumerate(batch):
                n = end - begin
                x[row, :n] = torch.from_numpy(self.stream[begin:end])
                keep = slice(scored - begin, n)
                y[row, keep] = torch.from_numpy(self.stream[scored + 1 : end + 1])
                owner[row, keep] = torch.from_numpy(self.corpus_of_target[scored:end])
            x, y, owner = x.to(device), y.to(device), owner.to(device)
            with autocast or torch.autocast(device.type, enabled=False):
                logits, _ = model(x, y)
            losses = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), y.view(-1), ignore_index=-1, reduction="none"
            )
            counted = owner.view(-1) >= 0
            nats.index_add_(0, owner.view(-1)[counted], losses[counted].double())
        model.train(was_training)
        if env is not None:
            nats = all_reduce_sum(nats, env)
        bits = nats.cpu().numpy() / math.log(2)
        scores = {
            "val_bpc": float(bits.sum() / self.chars.sum()),
            "val_bits_per_byte": float(bits.sum() / self.bytes.sum()),
        }
        for k, corpus in enumerate(self.corpora):
            if self.chars[k]:
                scores[f"val_bpc/{corpus}"] = float(bits[k] / self.chars[k])
        return scores
