"""Where training metrics go: `metrics.jsonl` in the run folder, written by rank 0 only.

Each line of metrics.jsonl is {"step": N, "time": unix seconds, <metric>: value, ...}. Training never waits on a
tracking server: whoever tracks the run (the training flows ship it to MLflow) reads this file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from gpt.atomic import write_text_atomic


class MetricsLog:
    """Appends one JSON object per line; on resume drops lines past the checkpoint's step."""

    def __init__(self, path: Path, keep_until_step: int = -1):
        self.path = Path(path)
        if self.path.exists():
            kept = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if _step(ln) <= keep_until_step]
            write_text_atomic(self.path, "".join(f"{ln}\n" for ln in kept))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def log(self, step: int, **metrics: float) -> None:
        self._fh.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line from a killed run: drop it


# Dense peak FLOP/s per GPU for bf16/fp16 and for tf32 (the fp32 matmul path), from NVIDIA's datasheets.
_PEAK_FLOPS = [  # (name fragment, 16-bit, tf32), most specific first
    ("H200", 989.4e12, 494.7e12),
    ("H100 PCIe", 756.0e12, 378.0e12),
    ("H100 NVL", 835.0e12, 417.5e12),
    ("H100", 989.4e12, 494.7e12),
    ("A100", 312.0e12, 156.0e12),
]


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The device's peak for this dtype, or None where unknown (CPUs, other GPUs): then no MFU is reported."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, half, tf32 in _PEAK_FLOPS:
        if fragment in name:
            return half if dtype in (torch.bfloat16, torch.float16) else tf32
    return None
