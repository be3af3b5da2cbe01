"""The machine's load while a run trains (MLflow's System metrics tab): CPU, memory, disk and network, and each
NVIDIA GPU's utilisation, memory and power when nvidia-ml-py finds one.

    with MetricsShipper(client, run_id, metrics_file) as shipper, SystemMetrics(shipper, every=10):
        ...torchrun trains...                      # system/cpu_utilization_percentage, system/gpu_0_... every 10 s

A thread of the flow process samples with MLflow's own collectors and hands the points to the run's metrics
shipper, so they are batched with the training's and survive an MLflow outage the same way; nothing runs inside
the training processes. On a run of several nodes each node's points are named system/node-N/...
"""

from __future__ import annotations

import sys
import threading
import time

from mlflow.entities import Metric
from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor


def gpu_monitors() -> list:
    """MLflow's NVIDIA GPU collector, or none (no GPU, no driver, or nvidia-ml-py missing)."""
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        return [GPUMonitor()]
    except Exception as e:
        print(f"system metrics without GPUs ({type(e).__name__}: {e})", file=sys.stderr)
        return []


class SystemMetrics:
    """Every `every` seconds, one point per system metric, added to `shipper` (a MetricsShipper)."""

    def __init__(self, shipper, every: float, node: str = ""):
        self.shipper, self.every = shipper, every
        self.prefix = f"system/{node}/" if node else "system/"
        self.monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor(), *gpu_monitors()] if every > 0 else []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="system-metrics", daemon=True)

    def __enter__(self) -> SystemMetrics:
        if self.monitors:
            self._collect()  # the first CPU reading only sets psutil's reference point
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _collect(self) -> dict[str, float]:
        values = {}
        for monitor in self.monitors:
            monitor.collect_metrics()
            values |= monitor.aggregate_metrics()
            monitor.clear_metrics()
        return values

    def sample(self) -> None:
        stamp, values = int(time.time() * 1000), self._collect()
        self.shipper.add([Metric(self.prefix + key, float(v), stamp, self.samples) for key, v in values.items()])
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except Exception as e:  # a collector that fails once must not end the thread
                print(f"warning: system metrics: {type(e).__name__}: {e}", file=sys.stderr)
