"""The optimizers of a run and its learning-rate schedule.

    optimizers = build_optimizers(model, cfg, "cuda")     # [AdamW] or [AdamW, Muon]
    set_learning_rates(optimizers, cfg, step)

adamw: one AdamW, weight decay on matrices only. muon: Muon (torch.optim.Muon: momentum, then each update
orthogonalised by Newton-Schulz iterations) on the 2-D hidden matrices at `muon_lr`; AdamW at `lr` on what Muon is not
meant for: the embeddings, the output layer, and the gains and biases. Every group follows the same schedule,
scaled to its own peak.
"""

from __future__ import annotations

import inspect
import math

import torch

from gpt.config import TrainConfig
from gpt.decoding import CausalLM


def build_optimizers(model: CausalLM, cfg: TrainConfig, device_type: str) -> list[torch.optim.Optimizer]:
    params = [p for p in model.parameters() if p.requires_grad]
    outer = {id(p) for p in model.embedding_and_output()}
    hidden = [p for p in params if p.dim() >= 2 and id(p) not in outer]
    decayed = [p for p in params if p.dim() >= 2 and (cfg.optimizer == "adamw" or id(p) in outer)]
    groups = [
        {"params": decayed, "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device_type in ("cuda", "cpu")
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
    if cfg.optimizer == "adamw":
        return [adamw]
    muon = torch.optim.Muon(
        hidden, lr=cfg.muon_lr, weight_decay=cfg.muon_weight_decay,
        momentum=cfg.muon_momentum, nesterov=True,
    )  # fmt: skip
    return [adamw, muon]


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The schedule at `step`, for a group whose peak is `lr`: linear warmup, then cosine decay to min_lr over
    lr_decay_iters, or hold at lr (constant), or hold then decay linearly to min_lr over the last wsd_decay of
    max_iters (wsd)."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / (cfg.warmup_iters + 1)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "wsd":
        decay = max(1, round(cfg.wsd_decay * cfg.max_iters))
        left = cfg.max_iters - step
        return cfg.lr if left >= decay else cfg.min_lr + (cfg.lr - cfg.min_lr) * max(0, left) / decay
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if step >= decay_iters:
        return cfg.min_lr
    ratio = (step - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def set_learning_rates(optimizers: list[torch.optim.Optimizer], cfg: TrainConfig, step: int) -> float:
    """Every group at the schedule's share of its own peak; returns the schedule's value for `lr`."""
    lr = learning_rate(cfg, step)
    for optimizer in optimizers:
        peak = cfg.muon_lr if isinstance(optimizer, torch.optim.Muon) else cfg.lr
        for group in optimizer.param_groups:
            group["lr"] = lr * (peak / cfg.lr)  # exactly lr for the groups at lr
    return lr
