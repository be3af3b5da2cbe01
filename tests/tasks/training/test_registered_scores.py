"""Registered versions: MLflow models that mlflow.pyfunc loads, scored on an evaluation text (from their tags when
they already were), their tokenizer reused for new data; against a real MLflow registry in a sqlite file."""

import pytest
import yaml
from helpers import train

from gpt.bpc import EvalText
from gpt.evaluate import evaluate_checkpoint
from gpt.pyfunc import Generation
from gpt.sample import SampleOptions, generate_texts, load_for_sampling
from gpt.shards import TokenDataset
from gpt.tokenizer import load_tokenizer
from tasks.config import load_pipelines
from tasks.registry import find_version, tokenizer_file
from tasks.training.evaluate import evaluate_models, version_bpc
from tasks.training.tracking import Tracker

QWEN3 = {"model": {"arch": "qwen3"}, "optimizer": "muon"}


@pytest.fixture
def registered(tiny, tmp_path, monkeypatch, request):
    """(config, tracker, version): a tiny char model registered as gptflow-tiny, at alias champion; the training
    settings (the model family) come from the test's parameter when it has one."""
    monkeypatch.setenv("GPTFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, _ = tiny(max_iters=5, **getattr(request, "param", {}))
    train(cfg)
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"tracking": {"uri": "sqlite:///mlflow.db", "experiment": "t"}}))
    config = load_pipelines(path)
    tracker = Tracker.connect(config)
    run_id = tracker.create_run("tiny", {}, {})
    model = tracker.log_model(run_id, tmp_path / "run" / "step-5", Generation(max_new_tokens=8), "First", step=5)
    version = tracker.register("gptflow-tiny", run_id, model, {"val_bpc": "1.5", "eval_set": "not-this-text"})
    tracker.set_alias("gptflow-tiny", "champion", version.version)
    return config, tracker, find_version(tracker.client, "gptflow-tiny", "champion")


def test_a_version_is_scored_with_its_own_tokenizer_unless_its_tags_hold_the_score(registered, tmp_path):
    _, tracker, version = registered
    text = EvalText.of_texts({"held-out": ["First Citizen:\nSpeak, speak.", "All:\nResolved. resolved."]}, 1000)
    expected = evaluate_checkpoint(tmp_path / "run" / "step-5", text, device="cpu")["val_bpc"]
    assert version_bpc(tracker.client, version, text) == pytest.approx(expected, rel=1e-6)
    assert (tmp_path / "cache" / "models" / "gptflow-tiny").is_dir()  # downloaded to be scored
    tracker.client.set_model_version_tag("gptflow-tiny", version.version, "eval_set", text.id)
    tagged = find_version(tracker.client, "gptflow-tiny", "champion")
    assert version_bpc(tracker.client, tagged, text) == 1.5


def test_models_by_reference_on_a_dataset_and_a_registered_tokenizer_reused(registered, tmp_path, char_dataset):
    config, _, version = registered
    refs = ["models:/gptflow-tiny@champion", version.run_id, str(tmp_path / "run")]  # a run id: its logged model
    rows = evaluate_models(config, refs, char_dataset, max_chars=2000, batch_size=4)
    assert [row["model"] for row in rows] == refs and {row["step"] for row in rows} == {5}
    assert rows[0]["val_bpc"] == pytest.approx(rows[2]["val_bpc"], rel=1e-6) == rows[1]["val_bpc"]
    assert rows[0]["eval_set"] == EvalText.of_dataset(TokenDataset.open(char_dataset), 2000).id
    reused = tokenizer_file(config, f"models:/gptflow-tiny/{version.version}")
    assert load_tokenizer(reused).spec() == TokenDataset.open(char_dataset).tokenizer_spec()


@pytest.mark.parametrize("registered", [{}, QWEN3], ids=["gpt2", "qwen3"], indirect=True)
def test_a_registered_version_is_an_mlflow_model_that_generates_as_gptflow_sample(registered, tmp_path, monkeypatch):
    import mlflow.pyfunc

    _, tracker, version = registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.client.tracking_uri)  # as a notebook would set it
    model = mlflow.pyfunc.load_model("models:/gptflow-tiny@champion")
    signature = model.metadata.signature
    assert [p.name for p in signature.params.params] == ["max_new_tokens", "temperature", "top_k", "top_p", "seed"]
    assert signature.params.params[0].default == 8  # the defaults it was logged with
    ours, tokenizer, _ = load_for_sampling(tmp_path / "run" / "step-5", "cpu")
    expected = [generate_texts(ours, tokenizer, p, SampleOptions(1, 20, 0.8, 200, None, 7 + i))[0]
                for i, p in enumerate(["First", "All:"])]  # fmt: skip
    got = model.predict(["First", "All:"], params={"max_new_tokens": 20, "seed": 7})
    assert got == expected and all(len(tokenizer.encode(text)) == 20 for text in got)
    assert model.predict("First", params={"max_new_tokens": 20, "seed": 7}) == expected[:1]
    assert len(model.predict(["First"])[0]) == 8  # a char model: the default max_new_tokens in characters
    (output,) = tracker.client.get_run(version.run_id).outputs.model_outputs  # the run's logged model, registered
    logged = tracker.client.get_logged_model(output.model_id)
    assert logged.experiment_id == tracker.experiment_id and version.source == logged.artifact_location
