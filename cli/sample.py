"""`gptflow sample`: generate text from a registered model, an MLflow run or a checkpoint folder.

    gptflow sample --model models:/gptflow-chinese-gpt2@champion --start "AI社会价值" --num-samples 3
    gptflow sample --model models:/gptflow-chinese-gpt2/latest     # the newest version (also @latest)
    gptflow sample --model 3f2a...c9 --max-new-tokens 100          # an MLflow run id: its checkpoint artifact
    gptflow sample --ckpt runs/shakespeare-char-cpu --start "ROMEO:"

Every other option is gpt.sample's (`python -m gpt.sample --help`). Registered versions and runs are downloaded once
into ~/.cache/gptflow/models/ (GPTFLOW_CACHE moves it); the tracking server is pipelines.yaml's (--config) or
MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from gpt import sample as engine_sample
from gpt.config import ConfigError
from tasks.config import load_pipelines
from tasks.training.tracking import CHECKPOINT_ARTIFACT, LATEST, Tracker, client_for, download_model

_MODEL = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\w+))$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def cache_dir() -> Path:
    return Path(os.environ.get("GPTFLOW_CACHE", "~/.cache/gptflow")).expanduser() / "models"


def fetch_model(tracker: Tracker, ref: str) -> Path:
    """The local checkpoint folder of models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH or a run id."""
    if _RUN_ID.match(ref):
        ref = f"runs:/{ref}/{CHECKPOINT_ARTIFACT}"
    if ref.startswith("runs:/"):
        target = cache_dir() / "runs" / ref.removeprefix("runs:/").replace("/", "-")
        uri = ref
    elif match := _MODEL.match(ref):
        name, alias, number = match["name"], match["alias"] or LATEST, match["version"]
        found = tracker.version_at(name, alias, "" if number in (None, LATEST) else number)
        if found is None:
            raise ConfigError(f"{ref}: registered model {name!r} has no version {number or f'at {alias!r}'}")
        # keyed by the version's run too: another tracking server (or a new database) numbers its versions anew
        target = cache_dir() / name / f"{found.version}-{found.run_id}"
        uri = f"models:/{name}/{found.version}"
    else:
        raise ConfigError(
            f"--model {ref!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH or a run id"
        )
    if (target / "model.safetensors").is_file():
        return target
    print(f"# downloading {uri}", file=sys.stderr)
    return download_model(tracker.client, uri, target)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gptflow sample", add_help=False)
    parser.add_argument("--model", default="")
    parser.add_argument("--config", default="pipelines.yaml")
    args, rest = parser.parse_known_args(argv)
    if not args.model:
        if {"-h", "--help"} & set(rest):
            print(__doc__)
        return engine_sample.main(rest)
    config = load_pipelines(Path(args.config))
    folder = fetch_model(Tracker(client_for(config), ""), args.model)
    return engine_sample.main(["--ckpt", str(folder), *rest])
