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

A registered model is an MLflow model folder (MLmodel) whose data is such a checkpoint (gpt/pyfunc.py).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from gpt.atomic import atomic_dir, fsync_dir, write_text_atomic
from gpt.decoding import CausalLM
from gpt.errors import FixableError, disk_error
from gpt.model import ModelConfig, create_model

COMPLETE = "COMPLETE"
MLMODEL = "MLmodel"
_STEP_DIR = re.compile(r"^step-(\d+)$")


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
