"""Bits per character over whole documents: a score that models with different tokenizers share.

    text = EvalText.of_dataset(dataset, max_chars=100_000)     # a dataset's evaluation set
    text = EvalText.of_texts({"song-ci": poems}, 100_000)      # or any documents, by corpus
    scores = text.documents(tokenizer, block_size=256).score(model, batch_size=8)
    # {"val_bpc": 2.31, "val_bits_per_byte": 0.84, "val_bpc/poetry-tang": 2.28, ...}
    text.id                                                    # equal for the same text, whatever the tokenizer

A token dataset built by build-corpus lists its val documents in eval.npz (first token, tokens, characters, UTF-8
bytes, corpus), in an order that does not depend on the tokenizer. Its evaluation set is the first documents of
that list holding `max_chars` characters: the same text for every dataset built from the same deduplicated data.
With the dataset's own tokenizer their tokens are read as the val split holds them; with another, the documents
are decoded and encoded with it. A dataset without eval.npz (made by prepare_text) is evaluated on the first
`max_chars` characters of its val text, as one document.

Documents are laid end to end, each followed by end-of-text (a newline for a tokenizer without one), with one in
front, and scored by windows of the model's context moved by half a context, so that every token but the first few
is predicted from at least half a context. The loss of each document token (not of the separator after it) is
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

from gpt.decoding import CausalLM
from gpt.dist import DistEnv, all_reduce_sum
from gpt.shards import TokenDataset
from gpt.tokenizer import Tokenizer


def _eval_index(dataset: TokenDataset, max_chars: int) -> dict[str, np.ndarray] | None:
    """The eval.npz rows of the evaluation set: the first documents holding max_chars characters (at least one)."""
    entry = dataset.manifest.get("eval")
    if not entry or dataset.manifest.get("eot_token") is None or not entry["docs"]:
        return None
    with np.load(dataset.folder / entry["file"]) as index:
        rows = {key: index[key] for key in index.files}
    count = max(1, int(np.searchsorted(np.cumsum(rows["chars"]), max_chars, side="right")))
    return {key: value[:count] for key, value in rows.items()}


def _separator(tokenizer: Tokenizer) -> int:
    """The token between documents: end-of-text, or a newline for a tokenizer without one."""
    if tokenizer.eot_token is not None:
        return tokenizer.eot_token
    try:
        newline = tokenizer.encode("\n")
    except ValueError:  # not in a char vocabulary
        newline = []
    if len(newline) != 1:
        raise ValueError("a tokenizer without end-of-text needs a newline token to separate evaluation documents")
    return newline[0]


def _first_chars(documents: list[str], max_chars: int) -> list[str]:
    """The first documents holding max_chars characters; the first one cut there when it is longer."""
    if len(documents[0]) >= max_chars:
        return [documents[0][:max_chars]]
    count = int(np.searchsorted(np.cumsum([len(d) for d in documents]), max_chars, side="right"))
    return documents[: max(1, count)]


def _val_text(dataset: TokenDataset, max_chars: int) -> str:
    """The first max_chars characters of a dataset's val split, decoded."""
    # a character is 4 UTF-8 bytes at most and a token one byte at least: these tokens hold more characters than
    # max_chars, so a character cut at their end falls beyond the cut
    head = dataset.read("val", 0, 4 * max_chars + 8)
    return dataset.tokenizer().decode(head.tolist())[:max_chars]


@dataclass
class EvalDocuments:
    stream: np.ndarray
    """int64: a separator, then each document's tokens followed by a separator."""
    corpus_of_target: np.ndarray
    """int64 per position of stream[1:]: the corpus of the document that token belongs to, -1 for a separator."""
    corpora: list[str]
    chars: np.ndarray
    """Characters per corpus in the set."""
    bytes: np.ndarray
    """UTF-8 bytes per corpus in the set."""
    block_size: int

    @classmethod
    def from_tokens(
        cls, docs: list[np.ndarray], corpus: np.ndarray, separator: int, corpora: list[str], chars: np.ndarray,
        nbytes: np.ndarray, block_size: int,
    ) -> EvalDocuments:  # fmt: skip
        """Documents' tokens (corpus: the index of each one's corpus); chars and bytes per document."""
        pieces, owners = [np.array([separator])], []
        for ids, c in zip(docs, corpus.tolist(), strict=True):
            pieces += [ids, np.array([separator])]
            owners += [np.full(len(ids), c), np.array([-1])]
        k = len(corpora)
        return cls(
            np.concatenate(pieces).astype(np.int64), np.concatenate(owners).astype(np.int64), corpora,
            np.bincount(corpus, weights=chars, minlength=k), np.bincount(corpus, weights=nbytes, minlength=k),
            block_size,
        )  # fmt: skip

    def tokens_per_char(self) -> dict[str, float]:
        """tokens_per_char overall and tokens_per_char/<corpus>."""
        counts = np.bincount(self.corpus_of_target[self.corpus_of_target >= 0], minlength=len(self.corpora))
        out = {"tokens_per_char": float(counts.sum() / self.chars.sum())}
        for k, corpus in enumerate(self.corpora):
            if self.chars[k]:
                out[f"tokens_per_char/{corpus}"] = float(counts[k] / self.chars[k])
        return out

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
    def score(self, model: CausalLM, batch_size: int, env: DistEnv | None = None, autocast=None) -> dict[str, float]:
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
            add_target_nats(model, x.to(device), y.to(device), owner.to(device), nats, autocast)
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


def add_target_nats(model: CausalLM, x: torch.Tensor, y: torch.Tensor, owner: torch.Tensor, nats: torch.Tensor,
                    autocast=None) -> None:  # fmt: skip
    """Add the loss (in nats) of each target of `y` whose `owner` is not -1 to nats[owner], making the logits of
    those positions only, through the model's final states."""
    counted = owner >= 0
    with autocast or torch.autocast(x.device.type, enabled=False):
        logits = model.lm_head(model.hidden_states(x, 0, None)[counted])
    losses = F.cross_entropy(logits.float(), y[counted], reduction="none")
    nats.index_add_(0, owner[counted], losses.double())


class EvalText:
    """The text models are compared on, the same whatever their tokenizers: a dataset's evaluation set, or
    documents by corpus. `documents(tokenizer, block_size)` encodes it for one model."""

    def __init__(
        self, dataset: TokenDataset | None = None, max_chars: int = 0, corpora: dict[str, list[str]] | None = None
    ):
        self.dataset, self.max_chars, self.corpora = dataset, max_chars, corpora

    @classmethod
    def of_dataset(cls, dataset: TokenDataset, max_chars: int) -> EvalText:
        """The dataset's evaluation set; for a dataset without one (made by prepare_text), the first max_chars
        characters of its val text as one document."""
        if max_chars <= 0:
            raise ValueError(f"an evaluation text needs max_chars > 0, got {max_chars}")
        if _eval_index(dataset, max_chars) is not None:
            return cls(dataset, max_chars)
        return cls(dataset, max_chars, corpora={"val": [_val_text(dataset, max_chars)]})

    @classmethod
    def of_texts(cls, corpora: dict[str, list[str]], max_chars: int) -> EvalText:
        """Per corpus, its first documents holding max_chars characters (the first one cut when longer)."""
        kept = {name: _first_chars(docs, max_chars) for name, docs in corpora.items() if docs}
        if not kept:
            raise ValueError("no documents to evaluate on")
        return cls(corpora=kept)

    @property
    def id(self) -> str:
        """Names the text (its documents' hashes and corpora), the same for any tokenizer."""
        if self.corpora is not None:
            return hashlib.sha256(json.dumps(self.corpora, ensure_ascii=False).encode()).hexdigest()[:16]
        index = _eval_index(self.dataset, self.max_chars)
        h = hashlib.sha256(json.dumps(self.dataset.manifest["eval"]["corpora"]).encode())
        for key in ("text_hash", "corpus", "chars"):
            h.update(index[key].astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        """One line for people: documents, characters and corpora."""
        if self.corpora is not None:
            docs, chars = sum(map(len, self.corpora.values())), sum(len(d) for v in self.corpora.values() for d in v)
            names = list(self.corpora)
        else:
            index = _eval_index(self.dataset, self.max_chars)
            docs, chars = len(index["chars"]), int(index["chars"].sum())
            all_names = self.dataset.manifest["eval"]["corpora"]
            names = [all_names[k] for k in sorted(set(index["corpus"].tolist()))]
        return f"{docs:,} documents, {chars:,} characters ({', '.join(names)}), text id {self.id}"

    def documents(self, tokenizer: Tokenizer | None, block_size: int) -> EvalDocuments:
        """The text encoded with `tokenizer`; None: the dataset's own (its tokens as they are, no vocabulary read)."""
        if self.corpora is not None:
            if tokenizer is None and self.dataset is None:
                raise ValueError("documents of texts need a tokenizer")
            tokenizer = tokenizer or self.dataset.tokenizer()
            names = list(self.corpora)
            texts = [text for docs in self.corpora.values() for text in docs]
            corpus = np.repeat(np.arange(len(names)), [len(docs) for docs in self.corpora.values()])
            return EvalDocuments.from_tokens(
                [tokenizer.encode_to_numpy(text) for text in texts], corpus, _separator(tokenizer), names,
                np.array([len(t) for t in texts], dtype=np.float64),
                np.array([len(t.encode("utf-8")) for t in texts], dtype=np.float64), block_size,
            )  # fmt: skip
        index = _eval_index(self.dataset, self.max_chars)
        start, tokens = index["start"].tolist(), index["tokens"].tolist()
        stream = self.dataset.read("val", 0, start[-1] + tokens[-1]).astype(np.int64)
        docs = [stream[a : a + n] for a, n in zip(start, tokens, strict=True)]
        separator = self.dataset.manifest["eot_token"]
        if tokenizer is not None and json.loads(json.dumps(tokenizer.spec())) != self.dataset.tokenizer_spec():
            own = self.dataset.tokenizer()
            docs = [tokenizer.encode_to_numpy(own.decode(ids.tolist())) for ids in docs]
            separator = _separator(tokenizer)
        return EvalDocuments.from_tokens(
            docs, index["corpus"].astype(np.int64), separator, list(self.dataset.manifest["eval"]["corpora"]),
            index["chars"].astype(np.float64), index["bytes"].astype(np.float64), block_size,
        )  # fmt: skip
