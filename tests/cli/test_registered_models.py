"""`gptflow evaluate` and `gptflow export` of registered versions, against a real MLflow registry in a sqlite file:
--log puts the scores on the logged model and its run with the evaluation text as their dataset; the model card of
an exported version tells its name, training data and bits per character; errors name the flags typed."""

import json
import re

import pytest
import yaml
from helpers import train

from cli.main import main as gptflow
from gpt.bpc import EvalText
from gpt.evaluate import read_documents
from gpt.pyfunc import Generation
from tasks.config import load_pipelines
from tasks.registry import find_version
from tasks.training.lineage import training_input
from tasks.training.tracking import Tracker

DOCUMENTS = "First Citizen:\nSpeak, speak.\n\nAll:\nResolved. resolved.\n\nFirst Citizen:\nYou are all resolved."


@pytest.fixture
def registered(tiny, tmp_path, monkeypatch, char_dataset):
    """(pipelines.yaml, tracker, version): a tiny char model trained on char_dataset, logged by a run of preset
    `tiny` and registered as gptflow-tiny (val_bpc 1.5 on an evaluation text named `some-text`) at alias champion."""
    monkeypatch.setenv("GPTFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, _ = tiny(max_iters=5)
    train(cfg)
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"tracking": {"uri": "sqlite:///mlflow.db", "experiment": "t"}}))
    tracker = Tracker.connect(load_pipelines(path))
    run_id = tracker.create_run("tiny", {}, {"gptflow.preset": "tiny"})
    tracker.client.log_inputs(run_id, datasets=[training_input(char_dataset)])
    model = tracker.log_model(run_id, tmp_path / "run" / "step-5", Generation(max_new_tokens=8), "First", step=5)
    tags = {"val_bpc": "1.5", "eval_set": "some-text", "preset": "tiny"}
    version = tracker.register("gptflow-tiny", run_id, model, tags)
    tracker.set_alias("gptflow-tiny", "champion", version.version)
    return path, tracker, find_version(tracker.client, "gptflow-tiny", "champion")


def test_evaluate_log_records_the_scores_on_the_logged_model_and_its_run(registered, tmp_path, capsys):
    config, tracker, version = registered
    text_file = tmp_path / "held-out.txt"
    text_file.write_text(DOCUMENTS, encoding="utf-8")
    refs = ["models:/gptflow-tiny@champion", str(tmp_path / "run")]
    command = ["evaluate", *refs, "--text", str(text_file), "--config", str(config), "--device", "cpu"]
    assert gptflow([*command, "--json", "--log"]) == 0
    out = capsys.readouterr()
    registered_row, local_row = (json.loads(line) for line in out.out.splitlines())
    assert registered_row["val_bpc"] == pytest.approx(local_row["val_bpc"], rel=1e-6)  # the same checkpoint
    text_id = EvalText.of_texts({"held-out": read_documents(text_file)}, 100_000).id
    assert registered_row["eval_set"] == text_id
    assert f"{tmp_path / 'run'}: not logged" in out.err

    columns = {"val_bpc", "val_bits_per_byte", "tokens_per_char", "val_bpc/held-out", "tokens_per_char/held-out"}
    (output,) = tracker.client.get_run(version.run_id).outputs.model_outputs  # the logged model registered
    metrics = {m.key: m for m in tracker.client.get_logged_model(output.model_id).metrics}
    assert set(metrics) == columns
    for key, metric in metrics.items():
        assert metric.value == pytest.approx(registered_row[key], rel=1e-9) and metric.step == 5
        assert (metric.dataset_name, metric.dataset_digest) == ("held-out-eval", text_id)
    run = tracker.client.get_run(version.run_id)
    assert {key: run.data.metrics[key] for key in columns} == pytest.approx({k: registered_row[k] for k in columns})
    evaluation = [i.dataset for i in run.inputs.dataset_inputs if i.dataset.digest == text_id]
    assert [dataset.name for dataset in evaluation] == ["held-out-eval"]

    assert gptflow(command) == 0  # without --log nothing more is recorded
    assert "not logged" not in capsys.readouterr().err
    assert len(tracker.client.get_metric_history(version.run_id, "val_bpc")) == 1


def test_evaluate_errors_name_the_flags_the_user_typed(tmp_path, capsys):
    text_file = tmp_path / "t.txt"
    text_file.write_text(DOCUMENTS, encoding="utf-8")
    for flags in (["--dataset", "demo", "--text", str(text_file)], [], ["--text", str(text_file), "--chars", "0"]):
        assert gptflow(["evaluate", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and not re.search(r"--data\b|max_chars", err)
        assert re.search(r"--dataset\b.*--text\b" if "--chars" not in flags else r"--chars\b", err)


def test_an_exported_version_s_model_card_tells_its_name_data_and_score(registered, tmp_path, char_dataset, capsys):
    config, _, version = registered
    out = tmp_path / "hf"
    assert gptflow(["export", "models:/gptflow-tiny@champion", "--out", str(out), "--config", str(config)]) == 0
    capsys.readouterr()
    _, front, body = (out / "README.md").read_text(encoding="utf-8").split("---\n", 2)
    assert "language" not in yaml.safe_load(front)  # Shakespeare's characters are not Chinese
    assert body.startswith(f"\n# gptflow-tiny (version {version.version})\n")
    dataset = training_input(char_dataset).dataset
    assert f"Dataset `{dataset.name}` (digest `{dataset.digest}`)" in body
    assert "1.5000 bits per character on the evaluation text `some-text`" in body
    assert "Preset `tiny`." in body and "The checkpoint of step 5 of 5" in body
