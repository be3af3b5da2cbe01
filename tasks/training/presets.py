"""Training presets (`training:` in pipelines.yaml), the engine config each one resolves to, and where runs are
tracked (`tracking:`).

    config = load_pipelines(Path("pipelines.yaml"))
    preset = training_preset(config, "chinese-gpt2")     # dataset, engine preset, settings, continued training
    cfg = train_config(config, "chinese-gpt2", ["--max_iters=100"], data="...", out_dir="...")
    run_folder(config, "chinese-gpt2", run_name)         # runs_dir/<preset>/<run>/
    config.tracking.uri_for(config.base)                 # MLFLOW_TRACKING_URI wins over the file

A training preset names a dataset of the file and an engine preset of gpt/presets/ (or a config file); its
`settings` and the flow's overrides then change any key of the engine's TrainConfig (`python -m gpt.train --help`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpt.config import ConfigError, TrainConfig, from_dict, merge, parse_overrides, preset_names, read_source


@dataclass
class ContinueConfig:
    """How the continue-training flow carries a registered model on (tasks/training/nightly.py)."""

    alias: Literal["latest", "champion"] = "champion"
    """The registered version to carry on: `champion`, so that a night that came out worse is not built upon (the
    next night carries the champion on again, over the same data), or `latest`."""
    steps: int = 1000
    """Optimizer steps per night."""
    lr: float = 1e-4
    """Learning rate of the nights (constant)."""
    replay: float = 0.25
    """While the night's new documents last, the share of each batch that goes on through the old data."""

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0:
            raise ConfigError(f"steps must be at least 1 and lr positive, got steps={self.steps} lr={self.lr}")
        if not 0 <= self.replay < 1:
            raise ConfigError(f"replay is a share of each batch in [0, 1), got {self.replay}")


@dataclass
class SampleConfig:
    """The text generated from each registered checkpoint and logged with the run."""

    prompt: str = ""
    """Start of every sample ("" starts a new document)."""
    num_samples: int = 2
    """Samples per checkpoint."""
    max_new_tokens: int = 200
    """Tokens per sample."""
    temperature: float = 0.8
    """0 is greedy."""
    top_k: int = 200
    """Sample among the k likeliest tokens (0: all)."""


@dataclass
class TrainingPreset:
    """A named training recipe: which dataset, which engine preset, which changes to it."""

    dataset: str = ""
    """A dataset of this file; its token shards are built (or found) before training."""
    base: str = ""
    """Engine preset (gpt/presets/) or a YAML/JSON config file (relative to this file); "" starts from the
    engine's defaults."""
    settings: dict = field(default_factory=dict)
    """Keys of the engine's TrainConfig to change (nested: {model: {n_layer: 4}}); data and out_dir are set by
    the flows."""
    description: str = ""
    """What the preset is for."""
    registered_model: str = ""
    """Name in the MLflow model registry ("" : tracking.registered_model)."""
    timeout_minutes: float = 0
    """Stop training after this long (it saves a checkpoint first); 0: no deadline."""
    continued: ContinueConfig = field(default_factory=ContinueConfig)
    """Settings of the continue-training flow."""
    finetune_from: str = ""
    """For the finetune-chat flow: the registered model it fine-tunes on the preset's conversation dataset
    (models:/NAME@ALIAS or models:/NAME/VERSION)."""
    sample: SampleConfig = field(default_factory=SampleConfig)
    """Samples logged with each run."""

    def __post_init__(self):
        if not self.dataset:
            raise ConfigError("dataset: a training preset needs the name of a dataset of pipelines.yaml")
        for key in ("data", "out_dir"):
            if key in self.settings:
                raise ConfigError(f"settings.{key} is set by the flows (from dataset and runs_dir); remove it")
        if self.finetune_from and not self.finetune_from.startswith("models:/"):
            raise ConfigError(f"finetune_from names a registered model, models:/NAME@ALIAS; got {self.finetune_from!r}")


@dataclass
class TrackingConfig:
    """Where runs, metrics and models are recorded."""

    uri: str = "sqlite:///mlflow.db"
    """MLflow tracking URI: an http(s) server, or a sqlite:/// file (relative to pipelines.yaml). The environment's
    MLFLOW_TRACKING_URI, when set, wins."""
    experiment: str = "gptflow"
    """MLflow experiment of every training run."""
    registered_model: str = "gptflow-{preset}"
    """Registered model name; {preset} becomes the training preset's name."""
    artifacts: str = "mlartifacts"
    """Artifact folder of a new experiment when the tracking URI is not an http(s) server (relative to
    pipelines.yaml)."""
    system_metrics_seconds: float = 10
    """Seconds between samples of the machine's CPU, memory, disk, network and GPUs during training (0: none)."""
    outage_seconds: float = 120
    """How long a finished training waits for a tracking server that does not answer before it ends, printing the
    `gptflow publish` command that registers it once the server is back (nothing is lost meanwhile)."""

    def __post_init__(self):
        try:
            self.registered_model.format(preset="x")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"tracking.registered_model: {self.registered_model!r} may only use the placeholder {{preset}}"
            ) from None

    def uri_for(self, base: Path) -> str:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.uri
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            return f"sqlite:///{(base / uri.removeprefix('sqlite:///')).resolve()}"
        return uri

    def artifacts_for(self, base: Path) -> str:
        return (base / os.path.expanduser(self.artifacts)).resolve().as_uri()


def check_presets(config) -> None:
    """Cross-checks of a loaded PipelinesConfig: each preset's dataset exists and its engine config is valid."""
    for name, preset in config.training.items():
        if preset.dataset not in config.datasets:
            known = ", ".join(config.datasets) or "none"
            raise ConfigError(f"training.{name}.dataset: unknown dataset {preset.dataset!r}; datasets: {known}")
        train_config(config, name, [])


def unknown(kind: str, name: str, known: Iterable[str], file: Path) -> ConfigError:
    """The one-line error for a `kind` (dataset, training preset) named `name` that pipelines.yaml `file` does not
    define: the closest name when one is close, then every name it defines."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint}; {kind}s of {file.name}: {', '.join(known) or 'none'}")


def training_preset(config, name: str) -> TrainingPreset:
    if name not in config.training:
        raise unknown("training preset", name, config.training, config.file)
    return config.training[name]


def carried_preset(config, name: str) -> TrainingPreset:
    """The training preset the continue-training flow carries on: one on documents (a chat model is made again from
    its base's champion by finetune-chat instead)."""
    preset = training_preset(config, name)
    if config.datasets[preset.dataset].conversations:
        raise ConfigError(
            f"training.{name} fine-tunes on conversations: its model is made again from its base's champion by the "
            "finetune-chat flow (a deployment with a cron, as nightly-chat), not carried on by continue-training"
        )
    return preset


def train_config(
    config, preset: str, overrides: list[str] | dict, data: str = "", out_dir: str = "", **settings
) -> TrainConfig:
    """The engine config of a training preset: its base, its settings, `settings`, then the overrides."""
    spec = training_preset(config, preset)
    base = {}
    if spec.base:
        source = spec.base if spec.base in preset_names() else str(config.path(spec.base))
        base = read_source(source)
    extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
    for key in ("data", "out_dir"):
        if key in extra:
            raise ConfigError(f"override {key} is set by the flow; choose the dataset in the training preset instead")
    merged = merge(merge(merge(base, spec.settings), settings), extra)
    merged |= {"data": data or merged.get("data", ""), "out_dir": out_dir or merged.get("out_dir", "runs/gpt")}
    return from_dict(TrainConfig, merged, f"training.{preset}.settings.")


def registered_model_name(config, preset: str) -> str:
    return config.training[preset].registered_model or config.tracking.registered_model.format(preset=preset)


def run_folder(config, preset: str, run_name: str) -> Path:
    """The local folder of a training run: runs_dir/<preset>/<run>/."""
    return config.path(config.runs_dir) / preset / run_name
