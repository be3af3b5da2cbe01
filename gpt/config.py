"""Typed configs from YAML/JSON files, shipped presets and `--key=value` overrides; the training config.

Every config is a dataclass whose fields carry defaults and a docstring. Loading checks every key and type and
names the offending key path, the allowed keys or values, and a close match when there is one:

    cfg = load_config(TrainConfig, "shakespeare-char-cpu", ["--max_iters=100", "--model.dropout=0.1"])
    print(describe(TrainConfig))   # every key with its type, default and docstring
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import json
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from gpt.errors import FixableError
from gpt.mixture import MixtureConfig
from gpt.model_config import ModelConfig

PRESETS_DIR = Path(__file__).parent / "presets"
T = TypeVar("T")


class ConfigError(FixableError, ValueError):
    """A config key or value that is not allowed; the message names the key path."""


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def read_source(source: str) -> dict:
    """The mapping in a YAML/JSON file, or in the shipped preset of that name."""
    path = Path(source)
    if not path.is_file():
        if source not in preset_names():
            raise ConfigError(
                f"config {source!r} is neither a file nor a shipped preset; presets: {', '.join(preset_names())}"
            )
        path = PRESETS_DIR / f"{source}.yaml"
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(args: list[str]) -> dict:
    """['--a.b=1', '--c=x'] -> {'a': {'b': 1}, 'c': 'x'}; values are read as YAML scalars."""
    out: dict = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"override {arg!r} must look like --key=value (nested keys: --model.n_layer=4)")
        key, raw = arg[2:].split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):  # flow-style YAML in a value is meant as text
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """Deep merge of nested mappings; `update` wins."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(cls: type[T], data: dict, path: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{path}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key {where!r}{hint}; allowed keys: {', '.join(fields)}")
        kwargs[key] = _coerce(hints[key], value, where)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if not path or str(e).startswith(path):
            raise
        raise ConfigError(f"{path.rstrip('.')}: {e}") from e


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{where}.")
    if origin is Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{where} must be one of {allowed}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        return _coerce(next(a for a in get_args(tp) if a is not type(None)), value, where)
    if origin is list:
        (item,) = get_args(tp)
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__} {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
        return {_coerce(key_type, k, f"{where} key"): _coerce(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where} must be {tp.__name__}, got {type(value).__name__} {value!r}")


def load_config(cls: type[T], source: str | None, overrides: list[str] | dict | None = None) -> T:
    """Defaults of `cls`, then the file or preset `source`, then the overrides."""
    data = read_source(source) if source else {}
    extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides or {}
    return from_dict(cls, merge(data, extra))


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for stmt, nxt in itertools.pairwise(body):
        named = isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        if named and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[stmt.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def describe(cls: type, prefix: str = "") -> str:
    """Every key of a config class with its type, default and docstring, one per line."""
    lines = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(describe(tp, f"{prefix}{f.name}."))
            continue
        name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
        lines.append(f"  --{prefix}{f.name}={getattr(defaults, f.name)!r}  ({name}) {docs.get(f.name, '')}")
    return "\n".join(lines)


@dataclass
class TrainConfig:
    """Everything `python -m gpt.train` needs; presets in gpt/presets/ override these defaults."""

    data: str = ""
    """Dataset folder with manifest.json (from `python -m gpt.prepare_text` or the build-corpus flow)."""
    out_dir: str = "runs/gpt"
    """Run folder: step-N/ checkpoints and metrics.jsonl."""
    init_from: str = "scratch"
    """scratch | resume (newest checkpoint in out_dir, full state) | a checkpoint or run folder (its weights,
    new optimizer) | gpt2 | gpt2-medium | gpt2-large | gpt2-xl | a Hugging Face GPT-2 or Qwen3 folder | a Qwen3
    hub id (Qwen/Qwen3-0.6B-Base: downloaded once into the hub cache), whose dataset must be tokenized with its own
    tokenizer (tokenize: {tokenizer: hf, hf_tokenizer: <the same>})."""
    continue_from: str = ""
    """A checkpoint of an earlier run to carry on from, as a nightly run does: its weights, optimizer state and step
    (the learning-rate schedule goes on from there), and its data cursor when `data` holds the train tokens it was
    trained on (else the cursor starts over on `data`). When out_dir already holds checkpoints, this run resumes
    its own instead (a retried night picks up where it stopped)."""
    fresh_data: str = ""
    """A token dataset of documents new to the model: its train windows are trained on first, each once, before
    the run goes on through `data`."""
    replay: float = 0.0
    """While fresh_data lasts, the share of each batch taken from `data` (going on from its cursor)."""
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    """Each corpus' share of the train windows of `data` (a build-corpus dataset; set from the dataset's
    `mixture` by the training flows). Empty: every window alike, so each corpus in proportion to its size."""
    packing: bool = True
    """A conversation dataset's rows: whole conversations packed one after another into each row (true), or one
    conversation per row, padded (false). Either way only the replies are trained on (gpt/chat_data.py)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model shape. With init_from other than scratch the shape comes from the weights, except block_size
    (cropped) and dropout."""
    batch_size: int = 12
    """Sequences per micro-step in each process."""
    grad_accum: int = 1
    """Micro-steps per optimizer step over all processes together (a multiple of the process count)."""
    max_iters: int = 5000
    """Optimizer steps to train for (the run's total, counting steps done before a resume)."""
    optimizer: Literal["adamw", "muon"] = "adamw"
    """adamw: AdamW on every parameter; muon: Muon on the hidden matrices (at muon_lr), AdamW on the embeddings,
    the output layer, gains and biases (at lr)."""
    lr: float = 6e-4
    """Peak learning rate (of AdamW)."""
    min_lr: float = 6e-5
    """Learning rate at the end of the decay; the Muon group ends at the same share of muon_lr."""
    lr_schedule: Literal["cosine", "constant", "wsd"] = "cosine"
    """cosine: linear warmup, then cosine decay to min_lr; constant: warmup, then lr; wsd (warmup-stable-decay):
    warmup, lr held, then a linear decay to min_lr over the last wsd_decay of max_iters."""
    wsd_decay: float = 0.2
    """wsd: the share of max_iters over which the learning rate decays at the end."""
    warmup_iters: int = 0
    """Steps of linear warmup."""
    lr_decay_iters: int = 0
    """Steps over which the cosine decays (0: max_iters)."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices (never on biases and norm gains)."""
    muon_lr: float = 0.02
    """muon: peak learning rate of the hidden matrices (scaled by sqrt(max(1, rows/cols)) per matrix, as Muon's
    authors do)."""
    muon_momentum: float = 0.95
    """muon: Nesterov momentum."""
    muon_weight_decay: float = 0.0
    """muon: decoupled weight decay of the hidden matrices."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    eval_interval: int = 250
    """Steps between train/val loss evaluations (and at step 0 and the last step)."""
    eval_iters: int = 200
    """Batches per split in each evaluation; always the same batches, so evaluations compare."""
    eval_chars: int = 100_000
    """Characters of whole val documents scored in each evaluation for bits per character (val_bpc, also per
    corpus): the same text for any tokenizer, so models with different tokenizers compare. 0: off. A dataset made
    by prepare_text is scored on the start of its val text; a conversation dataset on the replies of its held-out
    conversations, this many characters per task (val_bpc/<task>)."""
    sample_tokens: int = 0
    """At each evaluation rank 0 writes a sample of this many tokens to out_dir/samples/step-0001200.txt (the step in
    7 digits, so that the files sort in step order), so that one can watch the text improve (0: none). The same seed
    every time; the training's random state is left as it was."""
    sample_prompt: str = ""
    """Start of those samples ("" starts a new document); on a conversation dataset, the user's message the sample
    replies to."""
    log_interval: int = 1
    """Steps between metrics.jsonl lines."""
    ckpt_interval: int = 0
    """Steps between checkpoints (0: at every evaluation); one is always written at the end."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    seed: int = 1337
    """Seeds the model init, dropout and the data order."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps. Under torchrun each process uses the GPU of its local rank."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Compute precision: auto is bfloat16 on GPUs that have it, float16 (with a grad scaler) on older ones,
    float32 elsewhere."""
    loss_chunk: int = 0
    """Positions whose output logits and loss are made at a time (0: all at once). For large vocabularies (Qwen's
    151,936) a few thousand keeps the logits from dominating memory, for about the cost of making them twice."""
    activation_checkpointing: bool = False
    """Keep only each block's input and recompute the rest in the backward pass: less memory for a third more
    compute, for models whose activations do not fit otherwise."""
    compile: bool = False
    """torch.compile the model (GPU; minutes of compile time for much faster steps)."""
    cpu_threads: int = 0
    """torch threads per process on CPU (0: torch's default); fix it for bitwise-reproducible CPU runs."""

    def __post_init__(self):
        positive = ("batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval", "keep_last")
        if self.sample_tokens < 0:
            raise ConfigError(f"sample_tokens must not be negative, got {self.sample_tokens}")
        if self.eval_chars < 0:
            raise ConfigError(f"eval_chars must not be negative, got {self.eval_chars}")
        if self.lr <= 0 or self.muon_lr <= 0:
            raise ConfigError(f"lr and muon_lr must be positive, got {self.lr} and {self.muon_lr}")
        if not 0 < self.wsd_decay <= 1:
            raise ConfigError(f"wsd_decay is a share of max_iters in (0, 1], got {self.wsd_decay}")
        if problems := self.model.problems():
            raise ConfigError("model: " + "; ".join(problems))
        if problems := self.mixture.problems():
            raise ConfigError("mixture: " + "; ".join(problems))
        if not 0 <= self.replay < 1:
            raise ConfigError(f"replay is a share of each batch in [0, 1), got {self.replay}")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("max_iters", "warmup_iters", "lr_decay_iters", "ckpt_interval", "seed", "cpu_threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must not be negative, got {getattr(self, key)}")
