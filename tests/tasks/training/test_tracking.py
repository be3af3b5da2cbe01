import json
import time

import yaml
from mlflow.tracking import MlflowClient

from tasks.config import load_pipelines
from tasks.training.tracking import MetricsShipper, Tracker, flatten

KIND = "mlflow.experimentKind"


def test_flatten_nests_keys_and_stringifies():
    assert flatten({"model": {"n_layer": 4, "bias": True}, "lr": 1e-3, "betas": [0.9, 0.95]}) == {
        "model.n_layer": "4", "model.bias": "True", "lr": "0.001", "betas": "[0.9, 0.95]",
    }  # fmt: skip


def test_shipper_sends_every_point_once_in_step_order(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "time": 1_700_000_000 + s, "loss": 5.0 - s / 100, "lr": 1e-3} for s in range(1, 1501)]
    with MetricsShipper(client, run_id, path, interval=0.05) as shipper, open(path, "w") as fh:
        for row in rows[:700]:
            fh.write(json.dumps(row) + "\n")
        fh.write('{"step": 701, "lo')  # a torn line: read once it is whole
        fh.flush()
        fh.seek(fh.tell() - len('{"step": 701, "lo'))
        for row in rows[700:]:
            fh.write(json.dumps(row) + "\n")
        fh.write(json.dumps({"step": 1500, "val_loss": float("nan")}) + "\n")  # not a number MLflow keeps
    assert shipper.close() == 0 and shipper.sent == 3000
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(1, 1501))
    assert history[0].timestamp == 1_700_000_001_000 and history[-1].value == rows[-1]["loss"]
    assert not client.get_metric_history(run_id, "val_loss")


def test_shipper_logs_each_sample_file_once_as_it_appears(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "step-0.txt").write_text("春望", encoding="utf-8")
    with MetricsShipper(client, run_id, tmp_path / "metrics.jsonl", interval=0.05, samples=samples) as shipper:
        time.sleep(0.5)
        (samples / "step-300.txt").write_text("春望\n杜甫", encoding="utf-8")
    assert shipper.close() == 0
    logged = {a.path for a in client.list_artifacts(run_id, "samples/training")}
    assert logged == {"samples/training/step-0.txt", "samples/training/step-300.txt"}


def test_the_experiment_opens_as_model_training_unless_a_kind_was_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("older")  # made without the tag, e.g. by an earlier version
    client.create_experiment("chosen", tags={KIND: "genai_development"})
    path = tmp_path / "pipelines.yaml"
    for name, kind in (("new", "custom_model_development"), ("older", "custom_model_development"),
                       ("chosen", "genai_development")):  # fmt: skip
        path.write_text(yaml.safe_dump({"tracking": {"uri": "sqlite:///mlflow.db", "experiment": name}}))
        tracker = Tracker.connect(load_pipelines(path))
        assert client.get_experiment(tracker.experiment_id).name == name
        assert client.get_experiment(tracker.experiment_id).tags[KIND] == kind
