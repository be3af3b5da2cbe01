"""The training half of pipelines.yaml: training presets, MLflow tracking and Prefect deployments.

    config = load_pipelines(Path("pipelines.yaml"))
    preset = config.training["chinese-gpt2"]            # dataset, engine preset, settings, continued training
    cfg = train_config(config, "chinese-gpt2", ["--max_iters=100"], data="...", out_dir="...")
    config.tracking.uri_for(config.base)                 # MLFLOW_TRACKING_URI wins over the file

A training preset names a dataset of the file and an engine preset of gpt/presets/ (or a config file); its
`settings` and the flow's overrides then change any key of the engine's TrainConfig (`python -m gpt.train --help`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpt.config import ConfigError, TrainConfig, from_dict, merge, parse_overrides, read_source

FLOWS = ("build-corpus", "pretrain-gpt2", "continue-training")
DEFAULT_POOLS = {"build-corpus": "cpu", "pretrain-gpt2": "gpu", "continue-training": "gpu"}


@dataclass
class ContinueConfig:
    """How the continue-training flow carries a registered model on."""

    alias: Literal["latest", "champion"] = "latest"
    """The registered version to start from."""
    steps: int = 1000
    """Optimizer steps per continued run."""
    lr: float = 1e-4
    """Learning rate of continued runs (constant after warmup)."""
    warmup_iters: int = 0
    """Steps of linear warmup at the start of each continued run."""

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0:
            raise ConfigError(f"steps must be at least 1 and lr positive, got steps={self.steps} lr={self.lr}")


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
    sample: SampleConfig = field(default_factory=SampleConfig)
    """Samples logged with each run."""

    def __post_init__(self):
        if not self.dataset:
            raise ConfigError("dataset: a training preset needs the name of a dataset of pipelines.yaml")
        for key in ("data", "out_dir"):
            if key in self.settings:
                raise ConfigError(f"settings.{key} is set by the flows (from dataset and runs_dir); remove it")


@dataclass
class TrackingConfig:
    """Where runs, metrics and models are recorded."""

    uri: str = "sqlite:///mlflow.db"
    """MLflow tracking URI: an http(s) server, or a sqlite:/// file (relative to this file). The environment's
    MLFLOW_TRACKING_URI, when set, wins."""
    experiment: str = "gptflow"
    """MLflow experiment of every training run."""
    registered_model: str = "gptflow-{preset}"
    """Registered model name; {preset} becomes the training preset's name."""
    artifacts: str = "mlartifacts"
    """Artifact folder of a new experiment when the tracking URI is not an http(s) server (relative to this file)."""

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


@dataclass
class DeploymentConfig:
    """A Prefect deployment: `prefect deployment run <flow>/<name>` starts it."""

    name: str = ""
    """Deployment name (unique per flow)."""
    flow: Literal[FLOWS] = "pretrain-gpt2"  # type: ignore[valid-type]
    """build-corpus | pretrain-gpt2 | continue-training."""
    parameters: dict = field(default_factory=dict)
    """Flow parameters: dataset for build-corpus; preset (and overrides, nproc_per_node, nnodes, ...) for training."""
    work_pool: str = ""
    """Prefect work pool ("" : cpu for build-corpus, gpu for training)."""
    cron: str = ""
    """Schedule, e.g. "0 2 * * *" ("" : started by hand only)."""
    timezone: str = "UTC"
    """Time zone of the cron schedule, e.g. Asia/Shanghai."""
    description: str = ""
    """Shown in the Prefect UI."""

    def __post_init__(self):
        if not self.name:
            raise ConfigError("name: a deployment needs a name")

    @property
    def pool(self) -> str:
        return self.work_pool or DEFAULT_POOLS[self.flow]


def check_training(config) -> None:
    """Cross-checks of a loaded PipelinesConfig: datasets, presets, deployments and each preset's engine config."""
    for name, preset in config.training.items():
        if preset.dataset not in config.datasets:
            known = ", ".join(config.datasets) or "none"
            raise ConfigError(f"training.{name}.dataset: unknown dataset {preset.dataset!r}; datasets: {known}")
        train_config(config, name, [])
    seen = set()
    for i, dep in enumerate(config.deployments):
        where = f"deployments[{i}] ({dep.flow}/{dep.name})"
        if (dep.flow, dep.name) in seen:
            raise ConfigError(f"{where}: a second deployment of that name for that flow")
        seen.add((dep.flow, dep.name))
        key, known = ("dataset", config.datasets) if dep.flow == "build-corpus" else ("preset", config.training)
        if dep.parameters.get(key) not in known:
            raise ConfigError(
                f"{where}.parameters.{key}: {dep.parameters.get(key)!r} is not one of {', '.join(known) or 'none'}"
            )
        if dep.cron:
            _check_schedule(dep.cron, dep.timezone, where)


def _check_schedule(cron: str, timezone: str, where: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if len(cron.split()) != 5:
        raise ConfigError(f"{where}.cron: {cron!r} must have five fields (minute hour day month weekday)")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone: unknown time zone {timezone!r} (e.g. Asia/Shanghai, UTC)") from None


def training_preset(config, name: str) -> TrainingPreset:
    if name not in config.training:
        known = ", ".join(config.training) or "none"
        raise ConfigError(f"no training preset {name!r} in pipelines.yaml; presets: {known}")
    return config.training[name]


def train_config(
    config, preset: str, overrides: list[str] | dict, data: str = "", out_dir: str = "", **settings
) -> TrainConfig:
    """The engine config of a training preset: its base, its settings, `settings`, then the overrides."""
    spec = training_preset(config, preset)
    base = {}
    if spec.base:
        source = spec.base if not Path(spec.base).suffix else str(config.path(spec.base))
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
