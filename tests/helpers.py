"""Paths and settings shared by the tests (importable as `helpers`, unlike conftest modules)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GPTFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"


def train(cfg) -> dict:
    """A training run in this process (the engine's `Trainer`, as `python -m gpt.train` runs it)."""
    from gpt.dist import init_distributed
    from gpt.train import Trainer

    return Trainer(cfg, init_distributed(cfg.device)).run()


def tiny_settings(data: Path, out_dir: Path, **extra) -> dict:
    """Training settings for a model whose steps take milliseconds on one CPU thread."""
    cfg = {
        "data": str(data), "out_dir": str(out_dir), "device": "cpu", "cpu_threads": 1,
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.1},
        "batch_size": 4, "max_iters": 20, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 5, "eval_interval": 10,
        "eval_iters": 2, "eval_chars": 4000, "log_interval": 1, "ckpt_interval": 5, "keep_last": 10,
    }  # fmt: skip
    for key, value in extra.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    return cfg


def on_small_disk(mount: Path, size: str, commands: list[list[str]], readonly: bool = False) -> list[tuple]:
    """Run `commands` one after another where `mount` is a fresh tmpfs of `size` (read-only with `readonly`): a real
    full or read-only disk, in a mount namespace of the commands' own. Returns (exit status, stdout, stderr) of each;
    the tmpfs and what was written to it are gone afterwards."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    logs = mount.parent / f"{mount.name}-logs"
    logs.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    steps = " ; ".join(f"{shlex.join(c)} > {logs}/{i}.out 2> {logs}/{i}.err ; echo $? > {logs}/{i}.rc" for i, c in
                       enumerate(commands))  # fmt: skip
    script = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} && {{ {steps} ; }}"
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and not (logs / "0.rc").exists():
        pytest.skip(f"cannot mount a tmpfs in a namespace of its own here: {out.stderr.strip()}")
    return [
        tuple((logs / f"{i}.{kind}").read_text().strip() for kind in ("rc", "out", "err")) for i in range(len(commands))
    ]


FILL = [sys.executable, "-c", (
    "import os, sys; folder, leave = sys.argv[1], int(sys.argv[2]); s = os.statvfs(folder); "
    "open(os.path.join(folder, 'filler'), 'wb').write(bytes(s.f_bavail * s.f_frsize - leave))"
)]  # fmt: skip
"""FILL + [folder, bytes]: take all free space in folder but `bytes`."""


def exact_keys(contents: list[str]):
    """A Parquet exact_key column (16 bytes per row, as the filter stage writes) keyed by the given strings."""
    import hashlib

    import pyarrow as pa

    data = b"".join(hashlib.blake2b(c.encode(), digest_size=16).digest() for c in contents)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(contents), [None, pa.py_buffer(data)])


def write_pipelines(folder: Path, data: dict) -> str:
    """`data` as folder/pipelines.yaml (the folder made when missing); returns its path."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def run_logs(flow_run_id) -> list:
    """A flow run's log records on the Prefect server, its task runs' included (what the UI and `prefect flow-run
    logs` show), once this process has sent every pending one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
