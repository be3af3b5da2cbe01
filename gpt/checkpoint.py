"""Checkpoints: `out_dir/step-N/` folders that only count once their COMPLETE marker exists.

A checkpoint folder holds
    model.safetensors   the weights (tied embeddings stored once)
    state.pt            optimizer, grad scaler, loop state, loader cursor and RNG states: tensors and plain data
                        only, read with torch.load(weights_only=True), so a crafted pickle is refused unrun
    meta.json           step, losses, model shape, the run's resolved config and its dataset
    tokenizer.json      the dataset's tokenizer, so sampling needs nothing else
    COMPLETE            written after the folder was renamed into place, removed first when the folder is pruned

    save_checkpoint(out_dir, step, model, state, meta, tokenizer_spec)
    model, meta = load_model(resolve_checkpoint("runs/x"))   # a run folder means its best checkpoint
    where = restore_training(ckpt, cfg, dataset, fresh, optimizers, scaler, env, carried=False)  # resume a run

A registered model is an MLflow model folder (MLmodel) whose data is such a checkpoint (gpt/pyfunc.py).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from gpt.atomic import atomic_dir, fsync_dir, write_text_atomic
from gpt.config import ConfigError
from gpt.decoding import CausalLM
from gpt.errors import FixableError, disk_error
from gpt.model import ModelConfig, create_model

if TYPE_CHECKING:
    from gpt.config import TrainConfig
    from gpt.dist import DistEnv
    from gpt.shards import TokenDataset

COMPLETE = "COMPLETE"
MLMODEL = "MLmodel"
_STEP_DIR = re.compile(r"^step-(\d+)$")
SCHEDULE_KEYS = ("max_iters", "lr", "min_lr", "lr_schedule", "wsd_decay", "warmup_iters", "lr_decay_iters", "muon_lr")


class CheckpointError(FixableError, RuntimeError):
    """A checkpoint that is missing, unfinished or unsafe; the message says which and what to do."""


def save_checkpoint(out_dir: Path, step: int, model: CausalLM, state: dict, meta: dict, tokenizer_spec: dict) -> Path:
    """Write `out_dir/step-N` whole or not at all; a full disk or a denied write is a CheckpointError that says so
    and names the newest checkpoint left in place."""
    final = Path(out_dir) / f"step-{step}"
    try:
        with atomic_dir(final) as tmp:
            save_safetensors(model, str(tmp / "model.safetensors"))
            torch.save(state, tmp / "state.pt")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
            (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_spec, ensure_ascii=False), encoding="utf-8")
        write_text_atomic(final / COMPLETE, "")
    except Exception as e:  # torch and safetensors report a failed write in their own exception types
        if (written := disk_error(e, Path(out_dir))) is None:
            raise
        kept = list_checkpoints(out_dir)
        left = f"the newest checkpoint, {kept[-1]}, is kept" if kept else "no earlier checkpoint exists"
        raise CheckpointError(f"{written}: step-{step} was not saved; {left}") from e
    return final


def _step_folders(out_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Finished checkpoints in a run folder, oldest step first. A folder marked COMPLETE whose meta.json or weights
    cannot be read (damaged, or a removal cut short by an older release) is skipped, and said once on stderr."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    finished = []
    for folder in _step_folders(out_dir):
        if not (folder / COMPLETE).is_file():
            continue
        if _readable(folder):
            finished.append(folder)
        elif folder not in _REPORTED:
            _REPORTED.add(folder)
            print(f"skipping {folder}: marked {COMPLETE} but its meta.json or weights cannot be read", file=sys.stderr)
    return finished


_REPORTED: set[Path] = set()


def _readable(ckpt: Path) -> bool:
    try:
        read_meta(ckpt)
    except (OSError, ValueError):
        return False
    return (ckpt / "model.safetensors").is_file()


def read_meta(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / "meta.json").read_text(encoding="utf-8"))


def best_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint with the lowest val loss (the newest one when none was evaluated)."""
    ckpts = list_checkpoints(out_dir)
    metas = [(i, p, read_meta(p).get("val_loss")) for i, p in enumerate(ckpts)]
    scored = [(val, -i, p) for i, p, val in metas if val is not None]
    return min(scored)[2] if scored else (ckpts[-1] if ckpts else None)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (`step-N`, or a copy under any name) as it is; a run folder becomes its best checkpoint,
    an MLflow model folder the checkpoint that is its data."""
    path = Path(path)
    if (path / MLMODEL).is_file():
        path = mlflow_model_data(path)
    if _STEP_DIR.match(path.name) or (path / "model.safetensors").is_file():
        if not (path / COMPLETE).is_file():
            raise CheckpointError(f"{path} has no {COMPLETE} marker: the checkpoint was never finished")
        return path
    best = best_checkpoint(path)
    if best is None:
        raise CheckpointError(f"{path} holds no finished checkpoint (step-N folders with a {COMPLETE} marker)")
    return best


def prune_checkpoints(out_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (at least the newest one) and the best one, and every step
    folder that is no readable checkpoint. Each loses its COMPLETE marker first, so that a removal cut short
    leaves a folder that readers ignore and the next prune removes."""
    ckpts = list_checkpoints(out_dir)
    keep = set(ckpts[-max(1, keep_last) :])
    keep.add(best_checkpoint(out_dir))
    for folder in _step_folders(Path(out_dir)):
        if folder not in keep:
            (folder / COMPLETE).unlink(missing_ok=True)
            fsync_dir(folder)
            shutil.rmtree(folder)


def mlflow_model_data(folder: Path) -> Path:
    """The data folder of an MLflow python_function model (MLmodel's flavors.python_function.data)."""
    try:
        flavor = yaml.safe_load((folder / MLMODEL).read_text(encoding="utf-8"))["flavors"]["python_function"]
        return folder / flavor["data"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise CheckpointError(f"{folder}/{MLMODEL} names no python_function data folder ({e!r})") from e


def load_model(ckpt: Path, device: str | torch.device = "cpu") -> tuple[CausalLM, dict]:
    """Rebuild the model a checkpoint holds; returns it with the checkpoint's meta."""
    ckpt = Path(ckpt)
    try:
        meta = read_meta(ckpt)
        model = create_model(ModelConfig(**meta["model"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{ckpt}/meta.json is missing or unreadable ({e!r}); the checkpoint is damaged") from e
    try:
        load_safetensors(model, str(ckpt / "model.safetensors"), device=str(device))
    except Exception as e:  # safetensors' own errors do not derive from OSError
        raise CheckpointError(f"cannot load the weights in {ckpt}: {e}") from e
    return model.to(device), meta


def load_state(ckpt: Path) -> dict:
    """The training state of a checkpoint; anything but tensors and plain data is refused without running."""
    path = Path(ckpt) / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which could run "
            f"code when unpickled. Only load checkpoints from sources you trust. ({str(e).splitlines()[0]})"
        ) from e
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: {ckpt} holds weights only and cannot be resumed") from None
    except (RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path} is damaged ({e}); resume from an earlier checkpoint") from e


@dataclass
class Restored:
    """Where a restored run goes on: its step and data cursors, and (resumed only) its best val loss so far."""

    step: int
    cursor: int
    fresh_cursor: int = 0
    best_val_loss: float = float("inf")


def check_same_run(
    ckpt: Path, meta: dict, cfg: TrainConfig, dataset: TokenDataset, fresh: TokenDataset | None
) -> list[str]:
    """Refuse a resume whose data order would differ from the run's; return the schedule keys that changed."""
    old, train_tokens = meta["config"], dataset.num_tokens("train")
    if old["seed"] != cfg.seed:
        raise ConfigError(f"{ckpt} was trained with seed {old['seed']}; resume with --seed={old['seed']}")
    seen, digest = meta["dataset"], dataset.digest("train")
    if seen.get("train_tokens", train_tokens) != train_tokens or seen.get("train_sha256", digest) != digest:
        raise ConfigError(
            f"{ckpt} was trained on other train tokens ({seen['train_tokens']:,}) than {cfg.data} holds "
            f"({train_tokens:,}): the data changed, so its position cannot be resumed; start a new run from "
            "these weights with --init_from=<checkpoint> instead"
        )
    fresh_digest = fresh.digest("train") if fresh else None
    if meta.get("fresh", {}).get("train_sha256") != fresh_digest:
        raise ConfigError(f"{ckpt} was trained with other fresh_data than {cfg.fresh_data or 'none'}")
    return [k for k in SCHEDULE_KEYS if old.get(k) != getattr(cfg, k)]


def restore_training(
    ckpt: Path, cfg: TrainConfig, dataset: TokenDataset, fresh: TokenDataset | None,
    optimizers: list[torch.optim.Optimizer], scaler: torch.amp.GradScaler, env: DistEnv, carried: bool,
) -> Restored:  # fmt: skip
    """Load a checkpoint's training state into the optimizers, the grad scaler and this rank's RNG: this run's own
    (a resume), or an earlier run's (carried on: its data cursor goes on only over the same train tokens in the same
    order, and fresh data starts anew). Returns where the run goes on."""
    before = read_meta(ckpt)
    if not carried:
        changed = check_same_run(ckpt, before, cfg, dataset, fresh)
        if changed and env.is_main:
            print(f"note: resuming with a different {', '.join(changed)}; the learning-rate schedule changes")
    state = load_state(ckpt)
    saved = state["optimizer"] if isinstance(state["optimizer"], list) else [state["optimizer"]]
    if len(saved) != len(optimizers):
        raise ConfigError(
            f"{ckpt} holds the state of optimizer={before['config'].get('optimizer', 'adamw')}; this run uses "
            f"optimizer={cfg.optimizer}. Use that one, or start from its weights with --init_from={ckpt}"
        )
    for optimizer, optimizer_state in zip(optimizers, saved, strict=True):
        optimizer.load_state_dict(optimizer_state)
    if scaler.is_enabled() and state["scaler"]:  # fp16 runs only; other precisions store none
        scaler.load_state_dict(state["scaler"])
    if carried:
        same = before["config"]["seed"] == cfg.seed
        same = same and before["dataset"].get("train_sha256") == dataset.digest("train")
        where = Restored(state["step"], state["cursor"] if same else 0)
    else:
        where = Restored(state["step"], state["cursor"], state.get("fresh_cursor", 0), state["best_val_loss"])
    rngs = state["rng"]
    if len(rngs) == env.world_size:
        torch.set_rng_state(rngs[env.rank]["torch"])
        if env.device.type == "cuda" and rngs[env.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(rngs[env.rank]["cuda"], env.device)
    else:  # the process count changed: the data order carries on, dropout masks are seeded anew
        torch.manual_seed(cfg.seed + env.rank + where.step)
    if env.is_main:
        how = "carrying on from" if carried else "resuming from"
        print(f"{how} {ckpt} at step {where.step}, sample {where.cursor:,} of {dataset.folder}")
    return where
