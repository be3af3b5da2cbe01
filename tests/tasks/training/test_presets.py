import pytest
import yaml
from helpers import REPO

from gpt.config import ConfigError
from tasks.config import load_pipelines
from tasks.training.presets import carried_preset, registered_model_name, train_config

BASE = {
    "corpora": {"text": {"format": "text", "sources": [{"path": "input.txt"}]}},
    "datasets": {"shakespeare": {"corpora": ["text"], "tokenize": {"tokenizer": "char"}}},
    "training": {
        "tiny": {"dataset": "shakespeare", "base": "shakespeare-char-cpu", "settings": {"max_iters": 50}},
    },
    "deployments": [{"name": "tiny", "flow": "pretrain-gpt2", "parameters": {"preset": "tiny"}}],
}


def load(tmp_path, data, overrides=None):
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_pipelines(path, overrides)


def test_the_shipped_presets_and_nightly_deployment():
    config = load_pipelines(REPO / "pipelines.yaml")
    assert {"chinese-gpt2", "chinese-finetune", "shakespeare-char-cpu", "gpt2-124m"} <= set(config.training)
    assert train_config(config, "chinese-finetune", []).init_from == "gpt2"
    (nightly,) = [d for d in config.deployments if d.name == "nightly"]
    assert (nightly.flow, nightly.cron, nightly.timezone, nightly.pool) == (
        "continue-training", "0 2 * * *", "Asia/Shanghai", "gpu",
    )  # fmt: skip
    assert {d.pool for d in config.deployments if d.flow == "build-corpus"} == {"cpu"}


def test_the_chat_presets_are_made_each_morning_from_the_nightly_base_not_carried_on():
    config = load_pipelines(REPO / "pipelines.yaml")
    (morning,) = [d for d in config.deployments if d.name == "nightly-chat"]
    chat = config.training[morning.parameters["preset"]]
    (night,) = [d for d in config.deployments if d.name == "nightly"]
    assert (morning.flow, morning.cron, morning.timezone) == ("finetune-chat", "0 6 * * *", "Asia/Shanghai")
    assert chat.finetune_from == f"models:/{registered_model_name(config, night.parameters['preset'])}@champion"
    assert carried_preset(config, night.parameters["preset"]).dataset == "zh"
    with pytest.raises(ConfigError, match="made again from its base's champion by the finetune-chat flow"):
        carried_preset(config, morning.parameters["preset"])


def test_engine_preset_then_settings_then_overrides(tmp_path):
    config = load(tmp_path, BASE)
    cfg = train_config(config, "tiny", ["--lr=0.002"], data="d", out_dir="o", warmup_iters=3)
    assert (cfg.max_iters, cfg.lr, cfg.warmup_iters, cfg.model.n_layer) == (50, 0.002, 3, 4)  # n_layer from the base
    assert (cfg.data, cfg.out_dir) == ("d", "o")
    assert registered_model_name(config, "tiny") == "gptflow-tiny"
    assert config.tracking.uri_for(config.base) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_tracking_uri_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert load(tmp_path, BASE).tracking.uri_for(tmp_path) == "http://127.0.0.1:5000"


def changed(path: str, value) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    node, *keys = data, *path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("training.tiny.dataset", "zh", r"training.tiny.dataset: unknown dataset 'zh'"),
        ("training.tiny.settings", {"n_layers": 2}, r"unknown key 'training.tiny.settings.n_layers'"),
        ("training.tiny.settings", {"out_dir": "x"}, r"settings.out_dir is set by the flows"),
        ("training.tiny.base", "nonsense", r"neither a file nor a shipped preset"),
        ("deployments.0.flow", "train", r"flow must be one of"),
        ("deployments.0.parameters", {"preset": "big"}, r"parameters.preset: 'big' is not one of tiny"),
        ("deployments.0.cron", "daily", r"cron: 'daily' must have five fields"),
        ("deployments.0.timezone", "Mars/Base", r"unknown time zone 'Mars/Base'"),
        ("tracking", {"experiment": 3}, r"tracking.experiment must be str"),
    ],
)
def test_invalid_entries_name_the_key(tmp_path, path, value, message):
    data = changed(path, value)
    if path.startswith("deployments.0.time"):
        data["deployments"][0]["cron"] = "0 2 * * *"
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, data)


def test_flow_overrides_may_not_move_the_data(tmp_path):
    with pytest.raises(ConfigError, match="override data is set by the flow"):
        train_config(load(tmp_path, BASE), "tiny", ["--data=elsewhere"])
