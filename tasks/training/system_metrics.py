"""The machine's load while a run trains (MLflow's System metrics tab): CPU, memory, disk and network, and each
NVIDIA GPU's utilisation, memory and power when NVML finds one (a machine without one gets no GPU metrics and no
warning).

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
    """MLflow's NVIDIA GPU collector when NVML finds a GPU; none, without a word, on a machine without NVIDIA's
    driver or without a GPU; none, with a warning, when the driver is there but NVML cannot read the GPUs."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded):
        return []  # no NVIDIA driver: a machine without a GPU
    except pynvml.NVMLError as e:
        print(f"warning: system metrics without GPUs: NVML did not start ({e})", file=sys.stderr)
        return []
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return []
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        return [GPUMonitor()]
    except Exception as e:
        print(f"warning: system metrics without GPUs ({type(e).__name__}: {e})", file=sys.stderr)
        return []
    finally:
        pynvml.nvmlShutdown()  # GPUMonitor holds NVML open on its own


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
