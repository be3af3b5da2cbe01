"""The tokens stage of a conversation dataset: its conversations (tasks/corpus/conversations.py) encoded with the chat
template of the tokenizer (gpt/chat.py), into train and val shards with a mask beside each.

    stats = tokenize_conversations(parts, TokenizeConfig(val_fraction=0.01), out_dir, tokenizer_file, created_by)
    # out_dir: train-00000.bin, train-00000.mask, train-conversations.npz, val-..., tokenizer.json, manifest.json

Each conversation goes whole to the side its document's content key gives it (text/split.py, as documents are split),
and whole into one shard. A mask shard holds 1 for each token trained on (the assistant's reply and its end of turn)
and 0 elsewhere; `<split>-conversations.npz` lists each conversation's shard, first token, tokens, task and the
characters of its replies (what bits per character of the replies divide by). The manifest's `chat` entry names the
template, the tasks, the masks and the indexes; its vocab_size counts the template's tokens.

A conversation dataset is encoded with the tokenizer of the model it fine-tunes (the finetune-chat flow passes it;
by hand, `tokenize.reuse_tokenizer`), or with a tiktoken encoding or an open base's tokenizer (`hf`): a character
vocabulary or a BPE of its own would not be the base model's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
from prefect import task

from gpt.chat import ChatFormat
from gpt.config import ConfigError
from gpt.shards import ShardWriter, token_dtype, write_manifest
from gpt.tokenizer import Tokenizer, load_tokenizer, tokenizer_from_spec
from tasks.corpus.settings import TokenizeConfig
from tasks.corpus.stage6_tokenize import tokens_key, verify_tokens
from tasks.corpus.text.split import content_hashes, content_keys, val_threshold
from tasks.parallel import Progress
from tasks.stage import StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

SPLITS = ("train", "val")
INDEX = "{split}-conversations.npz"


def conversation_tokenizer(config: TokenizeConfig, given: Path | None) -> Tokenizer:
    """The tokenizer named for the dataset: a given tokenizer.json, or a tiktoken encoding."""
    if given is not None:
        return load_tokenizer(given)
    if config.tokenizer in ("char", "bpe"):
        raise ConfigError(
            "a conversation dataset is encoded with the tokenizer of the model it fine-tunes, not a "
            f"{config.tokenizer} vocabulary of its own: build it through the finetune-chat flow, or set "
            "tokenize.reuse_tokenizer to the model (models:/NAME@ALIAS, a run or checkpoint folder)"
        )
    return tokenizer_from_spec({"type": "tiktoken", "name": config.tokenizer})


class SplitWriter:
    """One split's shards, masks and conversation index, a conversation never cut between two shards."""

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, dtype, shard_tokens
        self.entries: list[dict] = []
        self.masks: list[dict] = []
        self.shard: tuple[ShardWriter, ShardWriter] | None = None
        self.index: dict[str, list[int]] = {k: [] for k in ("shard", "start", "tokens", "task", "reply_chars")}

    def add(self, ids: np.ndarray, mask: np.ndarray, task: int, reply_chars: int) -> None:
        if self.shard is not None and self.shard[0].num_tokens + len(ids) > self.shard_tokens:
            self._close()
        if self.shard is None:
            name = f"{self.split}-{len(self.entries):05d}"
            self.shard = (ShardWriter(self.out_dir / f"{name}.bin", self.dtype),
                          ShardWriter(self.out_dir / f"{name}.mask", self.dtype))  # fmt: skip
        tokens, masks = self.shard
        values = (len(self.entries), tokens.num_tokens, len(ids), task, reply_chars)
        for key, value in zip(self.index, values, strict=True):
            self.index[key].append(value)
        tokens.add(ids)
        masks.add(mask.astype(np.uint8))

    def _close(self) -> None:
        tokens, masks = self.shard
        self.entries.append(tokens.close())
        self.masks.append(masks.close())
        self.shard = None

    def close(self) -> str:
        """Finish the last shard and write the index; returns the index's file name."""
        if self.shard is not None:
            self._close()
        name = INDEX.format(split=self.split)
        with open(self.out_dir / name, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v, dtype=np.int64) for k, v in self.index.items()})
        return name


def _split_of(parts: list[Path], config: TokenizeConfig) -> tuple[list[np.ndarray], float]:
    """Per row group of the conversation parts, each row's content hash; and the val threshold."""
    hashes, keys = [], []
    for part in parts:
        reader = pq.ParquetFile(part)
        for group in range(reader.num_row_groups):
            keys.append(content_keys(reader.read_row_group(group, columns=["exact_key"]).column(0).combine_chunks()))
            hashes.append(content_hashes(keys[-1], config.split_seed))
    documents = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *keys]))  # a document's conversations once
    threshold = val_threshold(content_hashes(documents, config.split_seed), config)
    if threshold != config.val_fraction:
        print(
            f"val_fraction {config.val_fraction} raised to {threshold:.4g} to hold out min_val_docs documents: "
            "these held-out conversations are not those a pretraining dataset of that val_fraction holds out"
        )
    return hashes, threshold


def tokenize_conversations(parts: list[Path], config: TokenizeConfig, out_dir: Path, given: Path | None,
                           created_by: str) -> dict:  # fmt: skip
    """Encode the conversations of `parts` into out_dir; returns conversations, tokens and trained tokens per split
    and task."""
    tokenizer = conversation_tokenizer(config, given)
    chat = ChatFormat.of(tokenizer)
    dtype = token_dtype(chat.vocab_size)
    hashes, threshold = _split_of(parts, config)
    writers = {split: SplitWriter(out_dir, split, dtype, config.shard_tokens) for split in SPLITS}
    tasks: list[str] = []
    counts: Counter = Counter()
    progress, group_no = Progress("tokenize conversations"), 0
    for part in parts:
        reader = pq.ParquetFile(part)
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=["task", "messages"]).to_pylist()
            to_val = hashes[group_no] < threshold
            group_no += 1
            for row, val in zip(table, to_val.tolist(), strict=True):
                split = "val" if val else "train"
                if row["task"] not in tasks:
                    tasks.append(row["task"])
                ids, mask = chat.encode(row["messages"])
                if tokenizer.unk_token is not None:
                    mask &= ids != tokenizer.unk_token  # a character outside the vocabulary is never a reply's
                replies = sum(len(m["content"]) for m in row["messages"] if m["role"] == "assistant")
                writers[split].add(ids, mask, tasks.index(row["task"]), replies)
                for key, value in (("conversations", 1), ("tokens", len(ids)), ("trained", int(mask.sum()))):
                    counts[(split, row["task"], key)] += value
            done = sum(v for (_, _, k), v in counts.items() if k == "conversations")
            progress.report(f"{done:,} conversations")
    indexes = {split: writer.close() for split, writer in writers.items()}
    stats = {
        split: {task: {k: counts[(split, task, k)] for k in ("conversations", "tokens", "trained")} for task in tasks}
        for split in SPLITS
    }
    empty = [split for split in SPLITS if not writers[split].entries]
    if empty:
        raise ConfigError(f"no conversation went to {' or '.join(empty)}; the dataset needs more documents")
    write_manifest(
        out_dir, tokenizer, {split: w.entries for split, w in writers.items()}, created_by=created_by,
        vocab_size=chat.vocab_size, dtype=dtype.name,
        chat={**chat.describe(), "tasks": tasks, "masks": {s: w.masks for s, w in writers.items()}, "index": indexes,
              "stats": stats, "val_threshold": threshold},
    )  # fmt: skip
    return stats


def tokenize_chat_dataset(config: PipelinesConfig, dataset: str, conversations: StageResult,
                          tokenizer: Path | None = None) -> StageResult:  # fmt: skip
    """The conversations of a conversation dataset in train and val shards with their masks:
    tokens/<dataset>-<tokenizer>-<fp>/ (`tokenizer`: the tokenizer.json of the model to fine-tune)."""
    tokenize = config.datasets[dataset].tokenize
    settings, inputs = tokens_key(tokenize, conversations, tokenizer)
    fp = fingerprint("tokens", {"chat": True, **settings}, inputs)

    def build(tmp: Path):
        parts = input_parts(config.root, conversations)
        stats = tokenize_conversations(parts, tokenize, tmp, tokenizer, config.build_command(dataset))
        totals = {f"{split}_{key}": sum(t[key] for t in stats[split].values())
                  for split in SPLITS for key in ("conversations", "tokens", "trained")}  # fmt: skip
        return totals, {"settings": settings, "inputs": inputs, "extra": {"chat": stats}}

    return reuse_or_build(config.root, "tokens", f"{dataset}-{tokenize.tokenizer}", fp, build, verify_tokens)


tokenize_chat_task = task(tokenize_chat_dataset, name="tokenize", task_run_name="tokenize-{dataset}")
