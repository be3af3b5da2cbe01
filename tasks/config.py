"""The root schema of pipelines.yaml: corpora (where the text comes from and how to read it), datasets (which
corpora, filtered, deduplicated and tokenized how), training presets, tracking and deployments.

    config = load_pipelines(Path("pipelines.yaml"), ["--datasets.zh.dedupe.near=false"])
    config.corpora["webtext2019zh"].sources[0].path
    config.quality_rules("zh", "webtext2019zh")    # the kind's defaults, then the dataset's overrides

The corpus stages' keys (sources, quality rules, dedupe, tokenize) are in corpus/settings.py, the training presets
and tracking in training/presets.py; this file composes them and imports no stage, so loading the file stays light
(no Prefect, torch, MLflow, numba or DuckDB). Everything is checked when the file is loaded: unknown keys, wrong
types, unknown corpora, filter overrides for a corpus the dataset does not use, `where` filters made of anything but
the corpus' columns, allowed functions and operators (DuckDB parses them when a build starts), training presets and
deployments; each error names the key path.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpt.config import ConfigError, from_dict, merge, parse_overrides, read_source
from gpt.mixture import MixtureConfig
from tasks.corpus.formats.jsonl import FORMAT_META, FORMATS, FieldsConfig
from tasks.corpus.formats.templates import Template, corpus_template
from tasks.corpus.settings import (
    KINDS,
    ConversationConfig,
    DedupeConfig,
    QualityRules,
    SourceConfig,
    TokenizeConfig,
    check_where_words,
    rules_for,
)
from tasks.corpus.sources.archive import ArchiveLimits
from tasks.parallel import DuckDBLimits
from tasks.stage import DataRoot, check_url, is_url
from tasks.training.presets import TrackingConfig, TrainingPreset, check_presets, unknown

Format = Literal[FORMATS]  # type: ignore[valid-type]
Kind = Literal[("", *KINDS)]  # type: ignore[valid-type]
DEFAULT_KIND = {
    "chinese-poetry": "poem",
    "baike2018qa": "qa",
    "webtext2019zh": "qa",
    "translation2019zh": "sentence",
    "openwebtext": "english",
}
FLOWS = ("build-corpus", "pretrain-gpt2", "continue-training", "finetune-chat")
DEFAULT_POOLS = {"build-corpus": "cpu", "pretrain-gpt2": "gpu", "continue-training": "gpu", "finetune-chat": "gpu"}


@dataclass
class CorpusConfig:
    """One corpus: its sources, how to read them, and which rows to keep."""

    format: Format = "jsonl"
    """Reader: wiki2019zh | news2016zh | baike2018qa | webtext2019zh | translation2019zh | thucnews | text | jsonl |
    parquet | openwebtext."""
    sources: list[SourceConfig] = field(default_factory=list)
    """Where the files come from: each a `url` or a `path`, with optional `sha256` and `members`."""
    description: str = ""
    """What the corpus is, for people reading the file."""
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    """For jsonl and parquet: the text, title and meta fields."""
    split: Literal["file", "line", "paragraph"] = "file"
    """For text: a document is a whole file, a line, or a blank-line separated paragraph."""
    kind: Kind = ""
    """Kind of text, choosing the quality rules' defaults ("" : by format, article for most)."""
    where: str = ""
    """DuckDB SQL condition on the corpus' columns (text, title, chars, meta fields such as star); rows where it is
    not true are dropped and counted as `where`."""
    template: str = ""
    """The text the model reads, made of `{text}`, `{title}` and the format's meta fields, a line each: a line whose
    fields are all empty is left out, as is one repeating the line before. "" : the format's default (headline then
    body for news, the question then the answer for baike2018qa and webtext2019zh, title and author then the poem).
    Quality rules and dedupe look at `text` alone."""

    def __post_init__(self):
        if not self.sources:
            raise ConfigError("sources: a corpus needs at least one source (a url or a path)")
        try:
            unknown = self.resolved_template.fields - {"text", "title", *self.meta_keys}
        except ValueError as e:
            raise ConfigError(f"template: {e}") from e
        if unknown:
            raise ConfigError(
                f"template: {{{', '.join(sorted(unknown))}}} is not a field of format {self.format}; fields: "
                f"text, title, {', '.join(self.meta_keys) or '(no meta)'}"
            )

    @property
    def resolved_template(self) -> Template:
        return corpus_template(self.format, self.template)

    @property
    def resolved_kind(self) -> str:
        return self.kind or DEFAULT_KIND.get(self.format, "article")

    @property
    def meta_keys(self) -> list[str]:
        return FORMAT_META.get(self.format, self.fields.meta if self.format in ("jsonl", "parquet") else [])


@dataclass
class DatasetConfig:
    """Corpora combined into one filtered, deduplicated, tokenized dataset."""

    corpora: list[str] = field(default_factory=list)
    """Corpus names, in order of preference: of two duplicates, the one from the earlier corpus is kept."""
    description: str = ""
    """What the dataset is for."""
    filter: dict[str, dict] = field(default_factory=dict)
    """Quality-rule overrides: under `all` for every corpus, under a corpus name for that corpus (wins)."""
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    """Exact and near-duplicate removal across the corpora."""
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    """Tokenizer, train/val split and shard size of the token dataset."""
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    """Each corpus' share of the training tokens (shares, or epochs for the corpora without one); empty: each
    corpus in proportion to its size. Training follows it; the build report shows it."""
    conversations: dict[str, list[ConversationConfig]] = field(default_factory=dict)
    """Makes this a dataset of conversations, to fine-tune a chat model on: per corpus, the conversations each of
    its documents becomes (a user turn and the assistant's reply, templates of its fields; docs/training.md)."""

    def __post_init__(self):
        if not self.corpora:
            raise ConfigError("corpora: a dataset needs at least one corpus")
        if self.conversations and self.mixture.enabled:
            raise ConfigError("mixture: a dataset of conversations is trained on every conversation alike")
        if problems := self.mixture.problems(self.corpora):
            raise ConfigError("mixture: " + "; ".join(problems))


@dataclass
class DeploymentConfig:
    """A Prefect deployment: `prefect deployment run <flow>/<name>` starts it."""

    name: str = ""
    """Deployment name (unique per flow)."""
    flow: Literal[FLOWS] = "pretrain-gpt2"  # type: ignore[valid-type]
    """build-corpus | pretrain-gpt2 | continue-training | finetune-chat."""
    parameters: dict = field(default_factory=dict)
    """Flow parameters: dataset for build-corpus; preset (and overrides, nproc_per_node, nnodes, ...) for training."""
    work_pool: str = ""
    """Prefect work pool ("" : cpu for build-corpus, gpu for training)."""
    cron: str = ""
    """Schedule, e.g. "0 2 * * *" ("" : started by hand only)."""
    timezone: str = "UTC"
    """Time zone of the cron schedule, e.g. Asia/Shanghai."""
    active: bool = True
    """Whether the cron schedule starts runs (false: it is registered paused; README says how to resume it)."""
    description: str = ""
    """Shown in the Prefect UI."""

    def __post_init__(self):
        if not self.name:
            raise ConfigError("name: a deployment needs a name")
        if not self.active and not self.cron:
            raise ConfigError("active: false pauses a cron schedule, and this deployment has no cron")

    @property
    def pool(self) -> str:
        return self.work_pool or DEFAULT_POOLS[self.flow]


@dataclass
class PipelinesConfig:
    """pipelines.yaml."""

    data_root: str = "data"
    """Where every stage's output goes (raw/, corpus/, filtered/, deduped/, tokens/): a folder (relative to
    pipelines.yaml) or an fsspec URL such as s3://bucket/gptflow (its protocol's package installed, e.g. s3fs; see
    work_dir)."""
    work_dir: str = ""
    """Local working copy of a URL data_root: stages are built here, then uploaded; downloads stay here (default
    ~/.cache/gptflow/work/<the URL without its protocol>). Unused with a local data_root."""
    mirror: str = ""
    """Folder searched for source files before any download (GPTFLOW_MIRROR, when set, wins)."""
    workers: int = 0
    """Worker processes (ingest, tokenize) or threads (filter, dedupe) per stage (0: one per CPU core)."""
    archives: ArchiveLimits = field(default_factory=ArchiveLimits)
    """How far a source archive may expand (max_gb, max_ratio); past either it is refused unextracted."""
    duckdb_memory_limit: str = "2GB"
    """Memory limit of each DuckDB connection (one per worker process); beyond it DuckDB spills to
    tmp/duckdb in the working copy."""
    corpora: dict[str, CorpusConfig] = field(default_factory=dict)
    """Corpora by name."""
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    """Datasets by name."""
    runs_dir: str = "runs"
    """Local folder of training runs: runs/<preset>/<run>/ with checkpoints and metrics.jsonl."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow: tracking URI, experiment, registered model name."""
    training: dict[str, TrainingPreset] = field(default_factory=dict)
    """Training presets by name."""
    deployments: list[DeploymentConfig] = field(default_factory=list)
    """Prefect deployments registered by `gptflow deploy` and served by `gptflow serve`."""

    file = Path("pipelines.yaml")  # the file itself, set by load_pipelines; not a key of the file
    base = Path(".")  # its folder
    overrides = ()  # the --key=value overrides it was loaded with (set by load_pipelines; not a key)

    def __post_init__(self):
        if is_url(self.data_root):
            check_url(self.data_root, "data_root")
        for name, dataset in self.datasets.items():
            for i, corpus in enumerate(dataset.corpora):
                if corpus not in self.corpora:
                    known = ", ".join(self.corpora) or "none"
                    raise ConfigError(f"datasets.{name}.corpora[{i}]: unknown corpus {corpus!r}; known: {known}")
            for key in dataset.filter:
                if key != "all" and key not in dataset.corpora:
                    allowed = ", ".join(["all", *dataset.corpora])
                    raise ConfigError(f"datasets.{name}.filter.{key}: not a corpus of this dataset; allowed: {allowed}")
            for corpus in dataset.corpora:
                self.quality_rules(name, corpus)
            self._check_conversations(name, dataset)
        for name, corpus in self.corpora.items():
            if corpus.where:
                check_where_words(corpus.where, corpus.meta_keys, f"corpora.{name}.where")

    def _check_conversations(self, name: str, dataset: DatasetConfig) -> None:
        """Each conversation of a corpus of the dataset uses fields that corpus has."""
        for corpus, conversations in dataset.conversations.items():
            where = f"datasets.{name}.conversations.{corpus}"
            if corpus not in dataset.corpora:
                raise ConfigError(f"{where}: not a corpus of this dataset; its corpora: {', '.join(dataset.corpora)}")
            fields = {"text", "title", *self.corpora[corpus].meta_keys}
            for i, conversation in enumerate(conversations):
                used = {key for key in (conversation.best_of, conversation.rank_by) if key}
                for spec in conversation.templates.values():
                    used |= Template(spec, needs_text=False).fields
                if unknown := used - fields:
                    raise ConfigError(
                        f"{where}[{i}]: {', '.join(sorted(unknown))} is not a field of this corpus; fields: "
                        + ", ".join(sorted(fields))
                    )
        if dataset.conversations and set(dataset.conversations) != set(dataset.corpora):
            missing = ", ".join(c for c in dataset.corpora if c not in dataset.conversations)
            raise ConfigError(f"datasets.{name}.conversations: no conversations for {missing}")

    def dataset(self, name: str) -> DatasetConfig:
        """The dataset `name`, or a one-line ConfigError naming the datasets of the file."""
        if name not in self.datasets:
            raise unknown("dataset", name, self.datasets, self.file)
        return self.datasets[name]

    def quality_rules(self, dataset: str, corpus: str) -> QualityRules:
        overrides = self.datasets[dataset].filter
        layers = [overrides.get("all", {}), overrides.get(corpus, {})]
        for layer, key in zip(layers, ("all", corpus), strict=True):
            if not isinstance(layer, dict):
                raise ConfigError(f"datasets.{dataset}.filter.{key} must be a mapping of rule names to values")
        kind = self.corpora[corpus].resolved_kind
        return rules_for(kind, *layers, where=f"datasets.{dataset}.filter.{corpus}")

    def path(self, value: str) -> Path:
        return (self.base / os.path.expanduser(value)).resolve()

    @property
    def work(self) -> Path:
        """The local folder stages are built in: data_root itself, or the working copy of a URL data_root."""
        if not is_url(self.data_root):
            return self.path(self.data_root.removeprefix("file://"))
        if self.work_dir:
            return self.path(self.work_dir)
        return Path("~/.cache/gptflow/work").expanduser() / self.data_root.split("://", 1)[1].strip("/")

    @property
    def root(self) -> DataRoot:
        return DataRoot(self.data_root, self.work)

    @property
    def worker_count(self) -> int:
        """Workers per stage: `workers`, or one per CPU core."""
        return self.workers or os.cpu_count() or 1

    @property
    def duckdb_limits(self) -> DuckDBLimits:
        return DuckDBLimits(self.duckdb_memory_limit, str(self.work / "tmp" / "duckdb"))

    def build_command(self, dataset: str) -> str:
        """The command that builds `dataset` as this config was loaded: from its file, with every override."""
        args = ["gptflow", "build-corpus", "--dataset", dataset, "--config", str(self.file), *self.overrides]
        return shlex.join(args)

    @property
    def mirror_dir(self) -> Path | None:
        value = os.environ.get("GPTFLOW_MIRROR") or self.mirror
        return self.path(value) if value else None


def load_pipelines(path: Path, overrides: list[str] | dict | None = None) -> PipelinesConfig:
    """pipelines.yaml (or another file) with `--key=value` overrides, checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass the path of your pipelines.yaml")
    data = read_source(str(path))
    arguments = overrides if isinstance(overrides, list) else _as_arguments(overrides or {})
    config = from_dict(PipelinesConfig, merge(data, parse_overrides(arguments)))
    config.file = path.resolve()
    config.base = config.file.parent
    config.overrides = tuple(arguments)
    check_presets(config)
    check_deployments(config)
    return config


def _as_arguments(overrides: dict, prefix: str = "") -> list[str]:
    """{'a': {'b': 1}} -> ['--a.b=1']."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            out += _as_arguments(value, f"{prefix}{key}.")
        else:
            out.append(f"--{prefix}{key}={value}")
    return out


def check_deployments(config: PipelinesConfig) -> None:
    """Every deployment names a dataset (build-corpus) or a preset (training), once per flow, on a valid schedule."""
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
