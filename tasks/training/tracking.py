"""MLflow for the training flows: runs, metrics shipped from metrics.jsonl, checkpoints, samples and the registry.

    tracker = Tracker.connect(config)                      # tracking URI and experiment from pipelines.yaml
    run_id = tracker.create_run("chinese-gpt2-0412", params=flatten(cfg), tags={...})
    with MetricsShipper(tracker.client, run_id, out_dir / "metrics.jsonl"):
        ...training writes metrics.jsonl...
    model = tracker.log_model(run_id, ckpt, Generation(), example="春望")   # an MLflow model (gpt/pyfunc.py)
    version = tracker.register("gptflow-chinese-gpt2", run_id, model, {"val_bpc": "8.2"}, "what it is")
    tracker.set_alias("gptflow-chinese-gpt2", "champion", version.version)   # the new version is models:/NAME/latest

The experiment is a model-training experiment, tagged so when it is created or found without a kind. MLflow's UI
(3.17) picks its view from the address, not from that tag: a fresh browser opens experiments in the GenAI view
(traces) unless the address asks for `workflowType=machine_learning` (then runs, charts and models; the choice made
in the UI's sidebar is kept in the browser). The addresses gptflow prints and links ask for it (Tracker.run_url).

Only the flow process talks to MLflow, through MlflowClient (no active run), so the run's status is exactly what
the flow sets. Training itself never waits on MLflow: its rank 0 appends to metrics.jsonl, and a thread of the flow
sends the new lines in batches. While the server is unreachable the points wait and are sent when it is back; once
the training has ended, they wait `tracking.outage_seconds` at most (server_answers tells a server that is down
without MLflow's own minutes of retries), and `gptflow publish` sends them later (MetricsShipper.after_sent).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from mlflow.entities import Dataset, LoggedModel, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gpt.pyfunc import Generation
from tasks.registry import client_for
from tasks.training.mlflow_model import log_model

BATCH_LIMIT = 1000  # metrics per log_batch request
PARAM_BATCH = 100
PARAM_VALUE_LIMIT = 6000
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # not GenAI: runs, charts, models
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
PROVENANCE_TAGS = ("mlflow.user", "mlflow.source.")
SAMPLES_DURING_TRAINING = "samples/training"
"""Artifact folder of the samples written at each evaluation (step-0001200.txt: names sort in step order); the
registered checkpoint's are samples/step-0001200.txt."""


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """{'model': {'n_layer': 4}} -> {'model.n_layer': '4'}."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)[:PARAM_VALUE_LIMIT]
    return out


def line_points(line: str) -> list[Metric]:
    """The metric points of one metrics.jsonl line (its step, its time as their timestamp); none for a torn line."""
    try:
        row = json.loads(line)
        step = int(row.pop("step"))
        stamp = int(float(row.pop("time", time.time())) * 1000)
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
    return [
        Metric(key, float(value), stamp, step)
        for key, value in row.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    ]


def server_answers(uri: str, timeout: float = 5) -> bool:
    """Whether the tracking server at `uri` answers its health check now (a local store always does)."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


class Tracker:
    def __init__(
        self, client: MlflowClient, experiment_id: str, system_metrics_seconds: float = 0, outage_seconds: float = 120
    ):
        self.client, self.experiment_id = client, experiment_id
        self.system_metrics_seconds, self.outage_seconds = system_metrics_seconds, outage_seconds

    @classmethod
    def connect(cls, config, client: MlflowClient | None = None) -> Tracker:
        """The client for pipelines.yaml's tracking URI (or `client`), with its experiment created when missing."""
        client = client or client_for(config)
        uri, name = client.tracking_uri, config.tracking.experiment
        seconds = (config.tracking.system_metrics_seconds, config.tracking.outage_seconds)
        found = client.get_experiment_by_name(name)
        if found is not None:
            for key, value in EXPERIMENT_KIND.items():
                if key not in found.tags:  # made before gptflow set it; a kind chosen in the UI stays
                    client.set_experiment_tag(found.experiment_id, key, value)
            return cls(client, found.experiment_id, *seconds)
        location = None if uri.startswith(("http://", "https://")) else config.tracking.artifacts_for(config.base)
        try:
            created = client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
            return cls(client, created, *seconds)
        except MlflowException:  # created meanwhile by another flow run
            return cls(client, client.get_experiment_by_name(name).experiment_id, *seconds)

    def experiment_url(self) -> str | None:
        """The experiment's page in MLflow's UI, in its model-training view; None for a store without a server."""
        uri = self.client.tracking_uri.rstrip("/")
        if not uri.startswith(("http://", "https://")):
            return None
        return f"{uri}/#/experiments/{self.experiment_id}?{MODEL_TRAINING_VIEW}"

    def run_url(self, run_id: str) -> str | None:
        """The run's page in MLflow's UI, in its model-training view; None for a store without a server."""
        experiment = self.experiment_url()
        return None if experiment is None else experiment.replace("?", f"/runs/{run_id}?", 1)

    def create_run(self, name: str, params: dict[str, str], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), PARAM_BATCH):
            self.client.log_batch(run.info.run_id, params=items[i : i + PARAM_BATCH])
        return run.info.run_id

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, run_id: str, status: str) -> None:
        """FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def log_checkpoint(self, run_id: str, ckpt: Path, artifact_path: str) -> None:
        """The checkpoint's files as they are (after a failure: what to inspect or resume from)."""
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("model.safetensors", "state.pt", "meta.json", "tokenizer.json", "COMPLETE"):
                if (ckpt / name).exists():
                    shutil.copy2(ckpt / name, Path(tmp) / name)
            self.client.log_artifacts(run_id, tmp, artifact_path)

    def log_model(self, run_id: str, ckpt: Path, generation: Generation, example: str, step: int = 0) -> LoggedModel:
        """The checkpoint (weights, meta, tokenizer, training state) as the run's MLflow model, with the run's user
        and source (the model page's "Created by" and "Logged from")."""
        tags = {k: v for k, v in self.client.get_run(run_id).data.tags.items() if k.startswith(PROVENANCE_TAGS)}
        return log_model(self.client, self.experiment_id, run_id, ckpt, generation, example, step, tags)

    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        items = list(params.items())
        for i in range(0, len(items), PARAM_BATCH):
            self.client.log_model_params(model_id, dict(items[i : i + PARAM_BATCH]))

    def log_model_metrics(self, run_id: str, model_id: str, points: list[tuple[Metric, Dataset]]) -> None:
        """Points of the run as metrics of its logged model too, each with the dataset it was measured on (the model
        page's metrics and "Datasets used"). A point the run holds already, with the same step, time and value, stays
        one point in the run's history."""
        linked = [
            Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, dataset_name=data.name,
                   dataset_digest=data.digest)
            for m, data in points
        ]  # fmt: skip
        self.client.log_batch(run_id, metrics=linked)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def register(self, name: str, run_id: str, model: LoggedModel, tags: dict[str, str], description: str = ""):
        """A new version of registered model `name`: the run's logged `model`."""
        try:
            self.client.create_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return self.client.create_model_version(
            name, model.artifact_location, run_id, tags, description=description, model_id=model.model_id
        )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)


class MetricsShipper:
    """Tails a metrics.jsonl and sends its points to an MLflow run in batches, from a background thread; with
    `samples`, also logs each new sample file of that folder as an artifact.

    A point that cannot be sent (server down, network) stays queued and is retried with a growing pause; `close`
    reads the file to its end and keeps trying until every point is in or `timeout` runs out (asking a server that
    does not answer only for its health, so that MLflow's own retries cannot stretch it). Each line's `step` and
    `time` become the points' step and timestamp.
    """

    def __init__(
        self, client: MlflowClient, run_id: str, path: Path, interval: float = 2.0, samples: Path | None = None,
        close_timeout: float = 600,
    ):  # fmt: skip
        self.client, self.run_id, self.path, self.interval = client, run_id, Path(path), interval
        self.close_timeout = close_timeout  # how long leaving the block waits for a server that is down
        self.samples, self.shipped = samples, set()  # a folder of step-*.txt samples, logged as they appear
        self.offset, self.pending, self.sent, self.failures = 0, [], 0, 0
        self.send_seconds = 0.0  # time spent in successful requests
        self.last_step: dict[str, int] = {}  # per metric, the last step sent
        self.latest: dict[str, float] = {}  # the newest value of each metric read, with its step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-shipper", daemon=True)

    def __enter__(self) -> MetricsShipper:
        self._thread.start()
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(self.close_timeout if kind is None else 5)  # interrupted (a cancel): do not outwait Prefect's kill

    def after_sent(self) -> MetricsShipper:
        """Send only what the run does not hold yet: the last step of each metric and the samples it has (a run
        published later, after its server was down)."""
        for key in self.client.get_run(self.run_id).data.metrics:
            self.last_step[key] = max(m.step for m in self.client.get_metric_history(self.run_id, key))
        logged = self.client.list_artifacts(self.run_id, SAMPLES_DURING_TRAINING)
        self.shipped |= {Path(a.path).name for a in logged}
        return self

    def add(self, points: list[Metric]) -> None:
        """Send these points too (from another thread: system metrics)."""
        self.pending.extend(points)

    def _read(self) -> None:
        if not self.path.exists():
            return
        if self.path.stat().st_size < self.offset:  # rewritten by a resume: read again, skip what was sent
            self.offset = 0
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1  # a torn last line is read next time
        self.offset += end
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            self.pending.extend(self._points(line))

    def _points(self, line: str) -> list[Metric]:
        points = line_points(line)
        if points:
            self.latest = self.latest | {m.key: m.value for m in points} | {"step": points[0].step}
        return [m for m in points if m.step > self.last_step.get(m.key, -1)]

    def _send(self) -> None:
        while self.pending:
            batch = self.pending[:BATCH_LIMIT]
            started = time.perf_counter()
            self.client.log_batch(self.run_id, metrics=batch)
            self.send_seconds += time.perf_counter() - started
            del self.pending[: len(batch)]
            for m in batch:
                self.last_step[m.key] = max(m.step, self.last_step.get(m.key, -1))
            self.sent += len(batch)

    def _ship_samples(self) -> None:
        for path in sorted(self.samples.glob("step-*.txt")) if self.samples is not None else []:
            if path.name not in self.shipped:
                self.client.log_artifact(self.run_id, str(path), SAMPLES_DURING_TRAINING)
                self.shipped.add(path.name)

    def _attempt(self) -> bool:
        try:
            if not server_answers(self.client.tracking_uri):  # not a request that MLflow retries for minutes
                raise ConnectionError(f"{self.client.tracking_uri} does not answer its health check")
            self._read()
            self._send()
            self._ship_samples()
        except Exception as e:  # never let an outage end the thread
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                print(
                    f"MLflow unreachable ({type(e).__name__}); {len(self.pending)} points kept, retrying",
                    file=sys.stderr,
                )
            return False
        if self.failures:
            print(f"MLflow reachable again; {self.sent} points sent so far", file=sys.stderr)
            self.failures = 0
        return True

    def _loop(self) -> None:
        pause = self.interval
        while not self._stop.wait(pause):
            pause = self.interval if self._attempt() else min(10.0, max(pause * 2, 1.0))

    def close(self, timeout: float = 600) -> int:
        """Stop the thread, send the rest; returns how many points could not be sent. Later calls only report."""
        if self._stop.is_set():
            return len(self.pending)
        self._stop.set()
        deadline, pause = time.monotonic() + timeout, 1.0
        if self._thread.is_alive():
            self._thread.join(timeout)  # a request under way when the server went down may retry past the deadline
        if self._thread.is_alive():
            return max(len(self.pending), 1)
        while not self._attempt() and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(15.0, pause * 2)
        return len(self.pending)
