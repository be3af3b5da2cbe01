import os
import stat

import pytest
import torch

from gpt.checkpoint import (
    CheckpointError,
    best_checkpoint,
    list_checkpoints,
    load_model,
    load_state,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from gpt.model import GPT, ModelConfig

CFG = ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=10)


def save(out_dir, step, val_loss):
    meta = {"step": step, "val_loss": val_loss, "model": CFG.__dict__}
    return save_checkpoint(out_dir, step, GPT(CFG), {"step": step}, meta, {"type": "char", "chars": list("ab")})


def test_round_trip_and_unfinished_folders_are_ignored(tmp_path):
    path = save(tmp_path, 5, 2.0)
    model, meta = load_model(path)
    assert meta["step"] == 5 and isinstance(model, GPT)
    assert load_state(path) == {"step": 5}
    (tmp_path / "step-9").mkdir()  # a folder whose write never finished
    (tmp_path / "step-9.tmp-abcd").mkdir()
    assert list_checkpoints(tmp_path) == [path]
    with pytest.raises(CheckpointError, match="no COMPLETE marker"):
        resolve_checkpoint(tmp_path / "step-9")


def test_best_and_latest_k_are_kept(tmp_path):
    for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0), (4, None), (5, 2.5)]:
        save(tmp_path, step, loss)
    assert best_checkpoint(tmp_path).name == "step-2"
    assert resolve_checkpoint(tmp_path).name == "step-2"
    prune_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-4", "step-5"]
    prune_checkpoints(tmp_path, keep_last=0)  # the newest always stays: it may be a just-saved stop
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-5"]


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


def test_malicious_pickle_is_refused_without_running(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    path = save(tmp_path, 1, 1.0)
    torch.save({"step": 1, "payload": Exploit()}, path / "state.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_state(path)
    assert not os.path.exists(MARKER)
    torch.load(path / "state.pt", weights_only=False)  # the payload is live: an unsafe loader runs it
    assert os.path.exists(MARKER)


def test_damaged_checkpoints_are_clear_errors(tmp_path):
    path = save(tmp_path, 1, 1.0)
    (path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot load the weights"):
        load_model(path)
    (path / "state.pt").write_bytes((path / "state.pt").read_bytes()[:20])
    with pytest.raises(CheckpointError, match="is damaged"):
        load_state(path)
    (path / "meta.json").write_text("{")
    with pytest.raises(CheckpointError, match="meta.json is missing or unreadable"):
        load_model(path)


def test_empty_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="holds no finished checkpoint"):
        resolve_checkpoint(tmp_path)


def test_checkpoint_files_get_the_permissions_of_any_new_file(tmp_path):
    umask = os.umask(0o027)
    try:
        path = save(tmp_path, 1, 1.0)
    finally:
        os.umask(umask)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()}
    assert "model.safetensors" in modes and modes == dict.fromkeys(modes, 0o640)  # safetensors alone writes 0o600
