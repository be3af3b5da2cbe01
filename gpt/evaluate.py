"""Validation loss of a checkpoint on a token dataset, on a fixed set of windows, so that models compare.

    python -m gpt.evaluate --ckpt runs/x/step-2000 --data data/shakespeare_char --batches 20
    loss = evaluate_checkpoint("runs/x", "data/shakespeare_char", batch_size=12, batches=20)
    key = validation_set_id("data/shakespeare_char", block_size=64, batch_size=12, batches=20)

The windows are those of the training loop's own evaluation in a one-process run (the same seed, the same first
batches), taken from the val split. Two losses are comparable when their `validation_set_id`s are equal: it covers
the val shards' checksums and the window shape and count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from gpt.checkpoint import load_model, resolve_checkpoint
from gpt.data import TokenWindows, sample_indices
from gpt.dist import resolve_device
from gpt.model import GPT
from gpt.shards import TokenDataset
from gpt.train import EVAL_SEED


def validation_set_id(data: str | Path, block_size: int, batch_size: int, batches: int) -> str:
    manifest = TokenDataset.open(data).manifest
    shards = [entry.get("sha256", entry["file"]) for entry in manifest["splits"]["val"]]
    payload = {"val": shards, "block_size": block_size, "batch_size": batch_size, "batches": batches}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def evaluate_model(model: GPT, data: str | Path, batch_size: int, batches: int, block_size: int = 0) -> float:
    """Mean val loss of `model` over the first `batches` evaluation batches of the dataset's val split."""
    dataset = TokenDataset.open(data)
    if "val" not in dataset.manifest["splits"]:
        raise ValueError(f"{dataset.folder} has no val split to evaluate on")
    block = min(block_size or model.config.block_size, model.config.block_size)
    windows = TokenWindows(dataset.shard_paths("val"), block, EVAL_SEED)
    device = model.lm_head.weight.device
    was_training = model.training
    model.eval()
    total = 0.0
    for k in range(batches):
        x, y = windows.batch(sample_indices(0, k, 0, 1, batch_size))
        _, loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        total += float(loss)
    model.train(was_training)
    return total / batches


def evaluate_checkpoint(
    ckpt: str | Path, data: str | Path, batch_size: int, batches: int, block_size: int = 0, device: str = "auto"
) -> float:
    model, _ = load_model(resolve_checkpoint(ckpt), resolve_device(device))
    return evaluate_model(model, data, batch_size, batches, block_size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="run folder (best checkpoint) or step-N folder")
    p.add_argument("--data", required=True, help="token dataset folder (manifest.json)")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--block-size", type=int, default=0, help="0: the model's context")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    loss = evaluate_checkpoint(args.ckpt, args.data, args.batch_size, args.batches, args.block_size, args.device)
    print(json.dumps({"val_loss": loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
