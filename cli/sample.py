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
from pathlib import Path

from gpt import sample as engine_sample
from tasks.config import load_pipelines
from tasks.registry import model_client, model_folder


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
    folder = model_folder(model_client(config, [args.model]), args.model)
    return engine_sample.main(["--ckpt", str(folder), *rest])
