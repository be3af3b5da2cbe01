"""`gptflow evaluate`: compare models on the same text, whatever their tokenizers.

    gptflow evaluate models:/gptflow-poetry@champion runs/poetry-char --dataset poetry
    gptflow evaluate models:/gptflow-poetry/3 models:/gptflow-poetry/4 --text song-ci.txt --chars 200000
    gptflow evaluate runs/a runs/b --dataset data/tokens/poetry-bpe-3f2a... --json

A model is a registered version (models:/NAME@ALIAS, models:/NAME/VERSION), a run id, or a run or checkpoint folder.
--dataset is a dataset of pipelines.yaml (its newest build under the data root) or a token dataset folder; its
evaluation set is scored (the text the champion is chosen on). --text files (.txt: documents separated by blank
lines; .jsonl: a "text" field per line; .parquet: a text column) are scored instead, each as a corpus of its own.
The table gives bits per character and per UTF-8 byte (lower is better) and tokens per character, overall and per
corpus, best model first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpt import evaluate as engine_evaluate
from tasks.config import load_pipelines
from tasks.corpus.tokenize import newest_build
from tasks.registry import client_for, is_tracked, model_folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gptflow evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id or a folder")
    parser.add_argument("--dataset", default="", help="a dataset of pipelines.yaml, or a token dataset folder")
    parser.add_argument("--text", action="append", default=[], help="a .txt, .jsonl or .parquet file (repeatable)")
    parser.add_argument("--chars", type=int, default=engine_evaluate.DEFAULT_CHARS, help="characters to score")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="one JSON line per model instead of the table")
    parser.add_argument("--config", default="pipelines.yaml")
    args = parser.parse_args(argv)
    tracked, by_name = any(map(is_tracked, args.models)), bool(args.dataset) and not Path(args.dataset).is_dir()
    config = load_pipelines(Path(args.config)) if tracked or by_name else None
    client = client_for(config) if tracked else None
    options = [arg for ref in args.models for arg in ("--ckpt", str(model_folder(client, ref)))]
    if args.dataset:
        options += ["--data", str(newest_build(config, args.dataset) if by_name else args.dataset)]
    options += [arg for path in args.text for arg in ("--text", path)]
    options += ["--chars", str(args.chars), "--batch-size", str(args.batch_size), "--device", args.device]
    return engine_evaluate.main(options + ["--json"] * args.json, names=args.models)
