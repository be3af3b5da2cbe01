"""Where training metrics go: `metrics.jsonl` in the run folder, always, and an optional sink.

Each line of metrics.jsonl is {"step": N, "time": unix seconds, <metric>: value, ...}.

A sink is any object with two methods, `log_metrics(step, metrics)` and `close()`; the training config names it
as "package.module:factory", and the factory is called with the run's resolved config (a dict). A sink that raises
is reported and skipped: it never stops training. Only rank 0 writes.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Protocol

import torch

from gpt.atomic import write_text_atomic


class MetricsSink(Protocol):
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def load_sink(spec: str, config: dict) -> MetricsSink:
    """Instantiate the sink named "module:factory"."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"sink {spec!r} must look like 'package.module:factory'")
    return getattr(importlib.import_module(module), attr)(config)


class MetricsLog:
    """Appends one JSON object per line; on resume drops lines past the checkpoint's step."""

    def __init__(self, path: Path, sink: MetricsSink | None = None, keep_until_step: int = -1):
        self.path, self.sink, self.sink_errors = Path(path), sink, 0
        if self.path.exists():
            kept = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if _step(ln) <= keep_until_step]
            write_text_atomic(self.path, "".join(f"{ln}\n" for ln in kept))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def log(self, step: int, **metrics: float) -> None:
        self._fh.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        self._fh.flush()
        if self.sink is not None:
            self._call_sink("log_metrics", step, metrics)

    def _call_sink(self, method: str, *args) -> None:
        try:
            getattr(self.sink, method)(*args)
        except Exception:
            self.sink_errors += 1
            if self.sink_errors <= 3:  # say it, but do not flood the log
                print(f"warning: metrics sink {method} failed; training goes on:", file=sys.stderr)
                traceback.print_exc()

    def close(self) -> None:
        self._fh.close()
        if self.sink is not None:
            self._call_sink("close")


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
