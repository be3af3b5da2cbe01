"""`gptflow evaluate`: compare models on the same text, whatever their tokenizers.

    gptflow evaluate models:/gptflow-poetry@champion runs/poetry-char --dataset poetry
    gptflow evaluate models:/gptflow-poetry/3 models:/gptflow-poetry/4 --text song-ci.txt --chars 200000
    gptflow evaluate runs/a runs/b --dataset data/tokens/poetry-bpe-3f2a... --json
    gptflow evaluate models:/gptflow-poetry@champion 3f2a...c9 --dataset poetry --log

A model is a registered version (models:/NAME@ALIAS, models:/NAME/VERSION), a run id, or a run or checkpoint folder.
--dataset is a dataset of pipelines.yaml (its newest build under the data root) or a token dataset folder; its
evaluation set is scored (the text the champion is chosen on). --text files (.txt: documents separated by blank
lines; .jsonl: a "text" field per line; .parquet: a text column) are scored instead, each as a corpus of its own.
The table gives bits per character and per UTF-8 byte (lower is better) and tokens per character, overall and per
corpus, best model first. --log records each registered version's or run's scores in MLflow: as metrics of its
logged model and of its run at the checkpoint's step, linked to the evaluation text (`<dataset>-eval`, its digest
the text's id) as their dataset, which the run also lists as an input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gpt import evaluate as engine_evaluate
from gpt.bpc import EvalText
from gpt.checkpoint import CheckpointError
from gpt.config import ConfigError
from gpt.shards import ShardError, TokenDataset
from tasks.config import load_pipelines
from tasks.registry import is_tracked, model_client
from tasks.stage import newest_build
from tasks.training.evaluate import log_scores, score_models
from tasks.training.lineage import dataset_name, evaluation_input


def to_stderr(line: str) -> None:
    print(f"# {line}", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gptflow evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id or a folder")
    parser.add_argument("--dataset", default="", help="a dataset of pipelines.yaml, or a token dataset folder")
    parser.add_argument("--text", action="append", default=[], help="a .txt, .jsonl or .parquet file (repeatable)")
    parser.add_argument("--chars", type=int, default=engine_evaluate.DEFAULT_CHARS, help="characters to score")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="one JSON line per model instead of the table")
    parser.add_argument("--log", action="store_true", help="record the scores in MLflow (registered versions, runs)")
    parser.add_argument("--config", default="pipelines.yaml")
    args = parser.parse_args(argv)
    if bool(args.dataset) == bool(args.text):
        which = "not both" if args.dataset else "one of them"
        raise ConfigError(
            f"give either --dataset (a pipelines.yaml dataset or a token dataset folder) or --text, {which}"
        )
    if args.chars <= 0:
        raise ConfigError(f"--chars must be a positive number of characters, got {args.chars}")
    tracked, by_name = any(map(is_tracked, args.models)), bool(args.dataset) and not Path(args.dataset).is_dir()
    config = load_pipelines(Path(args.config)) if tracked or by_name else None
    client = model_client(config, args.models) if config else None
    try:
        if args.dataset:
            folder = newest_build(config, args.dataset) if by_name else Path(args.dataset)
            text = EvalText.of_dataset(TokenDataset.open(folder), args.chars)
            evaluation = evaluation_input(text, dataset_name(folder), folder)
        else:
            files = [Path(path) for path in args.text]
            text = engine_evaluate.eval_text(None, files, args.chars)
            name = "+".join(path.stem for path in files)
            source = Path(os.path.commonpath([path.resolve() for path in files]))  # the file, or their folder
            evaluation = evaluation_input(text, name, source)
        to_stderr(f"evaluating on {text.describe()}")
        rows = score_models(client, args.models, text, args.batch_size, args.device, report=to_stderr)
    except (CheckpointError, ShardError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine_evaluate.print_rows(rows, args.json)
    if args.log:
        for ref, where in log_scores(client, rows, evaluation).items():
            to_stderr(f"{ref}: {where}")
    return 0
