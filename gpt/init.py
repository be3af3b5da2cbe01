"""Where a training run starts: the model (from scratch, its own last checkpoint, another run's state carried on,
or pretrained weights, with rows for a chat template's tokens) and the dtype it trains in.

    dtype = resolve_dtype(cfg.dtype, env.device)                     # auto: bfloat16 or float16 on CUDA, else float32
    source = choose_source(cfg, out_dir, env)                        # the same on every rank
    model, resume_from = build_model(cfg, dataset, out_dir, source)  # resume_from: a checkpoint, or None
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from gpt import checkpoint as ckpt_io
from gpt.config import ConfigError, TrainConfig
from gpt.decoding import CausalLM
from gpt.dist import DistEnv, broadcast_object
from gpt.hf import HUB_MODELS, hf_tokenizer, load_pretrained, pretrained_folder
from gpt.model import create_model
from gpt.model_config import padded_vocab_size
from gpt.shards import TOKENIZER_FILE, TokenDataset
from gpt.tokenizer import HFTokenizer


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype named by the config's `dtype`; auto is bfloat16 (float16 where unsupported) on CUDA, else float32."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    dtype = getattr(torch, name)
    if device.type != "cuda" and dtype != torch.float32:
        raise ConfigError(f"dtype={name} needs a CUDA device; on {device.type} use dtype=float32")
    return dtype


def choose_source(cfg: TrainConfig, out_dir: Path, env: DistEnv) -> str:
    """What to start from, decided on rank 0 and shared, so that every rank starts from the same place."""
    source = cfg.init_from
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if (restarted or cfg.continue_from) and ckpt_io.list_checkpoints(out_dir):
        source = "resume"  # a restarted worker group, or a retried continued run: pick up where it left off
    elif cfg.continue_from:
        source = "continue"
    return broadcast_object(source, env)


def check_own_tokenizer(source: str, folder: Path, dataset: TokenDataset) -> None:
    """A pretrained Qwen3 reads the ids of its own tokenizer (its folder's tokenizer.json): a ConfigError naming both
    unless the dataset's tokenizer is that one (an open base's, kept as it came; or, for a folder exported from here,
    the tokenizer it was written from)."""
    file = folder / TOKENIZER_FILE
    theirs = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    ours = dataset.tokenizer()
    written = ours.definition if isinstance(ours, HFTokenizer) else json.loads(hf_tokenizer(ours).to_str())
    if theirs != written:
        raise ConfigError(
            f"init_from={source} reads the ids of its own tokenizer ({file}), but {dataset.folder} was tokenized "
            f"with {ours.name}; build the dataset with tokenize: {{tokenizer: hf, hf_tokenizer: {source}}}"
        )


def build_model(cfg: TrainConfig, dataset: TokenDataset, out_dir: Path, source: str) -> tuple[CausalLM, Path | None]:
    """The model to start from, and the checkpoint to resume the full training state from (if any)."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    existing = ckpt_io.list_checkpoints(out_dir)
    if source == "resume":
        if not existing:
            raise ConfigError(f"init_from=resume but {out_dir} holds no finished checkpoint to resume")
        model, _ = ckpt_io.load_model(existing[-1])
        return model, existing[-1]
    if source == "continue":
        ckpt = ckpt_io.resolve_checkpoint(cfg.continue_from)
        model, _ = ckpt_io.load_model(ckpt)
        return model, ckpt
    if existing:
        raise ConfigError(
            f"out_dir {out_dir} already holds checkpoints of another run; pass --init_from=resume to continue "
            "that run or choose a new --out_dir"
        )
    if source == "scratch":
        vocab = cfg.model.vocab_size or padded_vocab_size(dataset.vocab_size)
        return create_model(replace(cfg.model, vocab_size=vocab)), None
    if source in HUB_MODELS or (folder := pretrained_folder(source)) is not None:
        try:
            model = load_pretrained(source if source in HUB_MODELS else folder)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"init_from={source}: {e}") from e
        if model.config.arch == "gpt2" and dataset.manifest["tokenizer"] != "gpt2":
            raise ConfigError(
                f"init_from={source} needs a dataset tokenized with gpt2, but {dataset.folder} uses "
                f"{dataset.manifest['tokenizer']}"
            )
        if model.config.arch != "gpt2":
            check_own_tokenizer(source, folder, dataset)
    elif Path(source).is_dir():
        model, _ = ckpt_io.load_model(ckpt_io.resolve_checkpoint(source))
    else:
        raise ConfigError(
            f"init_from={source!r}: expected scratch, resume, a checkpoint or run folder, a Hugging Face model "
            f"folder or hub id (Qwen/Qwen3-0.6B-Base), or one of {', '.join(HUB_MODELS)}"
        )
    if cfg.model.block_size < model.config.block_size:
        model.crop_block_size(cfg.model.block_size)
    if dataset.chat and dataset.chat.get("new_tokens"):
        model = start_template_tokens(model, *dataset.chat["new_tokens"])
    model.set_dropout(cfg.model.dropout)
    return model, None


ROWS_PER_ID = ("wte.weight", "embed_tokens.weight", "lm_head.weight")
"""The parameters with a row per token id: the input embedding and the output layer."""


@torch.no_grad()
def start_template_tokens(model: CausalLM, first: int, end: int) -> CausalLM:
    """The model with rows for ids first..end-1 (a chat template's tokens, after its tokenizer's ids): its
    vocabulary grown (to a multiple of 64) when it is smaller, every other row kept, and those rows of the input
    embedding and the output layer set to the mean of the tokenizer's own rows [0, first), so that a new token starts
    as an average token rather than as noise or an untrained row of padding."""
    if model.config.vocab_size < end:
        grown = create_model(replace(model.config, vocab_size=padded_vocab_size(end)))
        old = dict(model.named_parameters()) | dict(model.named_buffers())
        for name, target in [*grown.named_parameters(), *grown.named_buffers()]:
            rows = old[name].size(0) if name.endswith(ROWS_PER_ID) else None  # the old ids' rows, or all of it
            target[:rows].copy_(old[name])
        model = grown
    for name, weight in model.named_parameters():
        if name.endswith(ROWS_PER_ID):
            weight[first:end] = weight[:first].mean(dim=0)
    return model
