"""The flows from the command line, run in this process (Prefect starts a temporary server unless PREFECT_API_URL
points at one): `gptflow build-corpus`, `gptflow pretrain`, `gptflow continue-training`, `gptflow finetune-chat`.

    gptflow build-corpus --dataset zh --datasets.zh.dedupe.near=false    # --key=value: keys of pipelines.yaml
    gptflow pretrain --preset shakespeare-char-cpu --max_iters=500       # --key=value: keys of the engine config
    gptflow continue-training --preset chinese-gpt2 --steps 500 --alias champion
    gptflow finetune-chat --preset demo-chat --base models:/gptflow-demo@champion

pipelines.yaml, the dataset or preset named, and for training the preset's engine config with the overrides are
checked before Prefect starts, so a wrong name ends as one line `error: ...` (exit status 2) and no flow run. An error
found in the flow (no registered version to carry on) fails the run with its one line and ends the command the same
way. The result goes to stdout: the token dataset's manifest.json, or the training's run id, registered version and
losses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpt.shards import MANIFEST
from tasks.config import load_pipelines
from tasks.training.presets import train_config


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"gptflow {command}", description=description)
    parser.add_argument("--config", default="pipelines.yaml", help="path of pipelines.yaml")
    return parser


def build_corpus_main(argv: list[str]) -> int:
    parser = _parser("build-corpus", "Download, read, filter, deduplicate and tokenize the corpora of a dataset.")
    parser.add_argument("--dataset", required=True, help="a dataset of pipelines.yaml")
    args, overrides = parser.parse_known_args(argv)
    load_pipelines(Path(args.config), overrides).dataset(args.dataset)
    from flows.build_corpus import build_corpus

    print(f"{build_corpus(args.dataset, overrides, args.config).location}/{MANIFEST}")
    return 0


def pretrain_main(argv: list[str]) -> int:
    parser = _parser("pretrain", "Train a training preset under torchrun, tracked in MLflow.")
    parser.add_argument("--preset", required=True, help="a training preset of pipelines.yaml")
    parser.add_argument("--nproc-per-node", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)
    train_config(load_pipelines(Path(args.config)), args.preset, overrides)
    from flows.pretrain import pretrain_gpt2

    _print_result(pretrain_gpt2(args.preset, overrides, args.nproc_per_node, config_path=args.config))
    return 0


def continue_main(argv: list[str]) -> int:
    parser = _parser("continue-training", "Train a registered model on with the newest data.")
    parser.add_argument("--preset", required=True, help="a training preset of pipelines.yaml")
    parser.add_argument("--steps", type=int, default=0, help="0: the preset's continued.steps")
    parser.add_argument("--alias", default="", choices=["", "latest", "champion"])
    args, overrides = parser.parse_known_args(argv)
    train_config(load_pipelines(Path(args.config)), args.preset, overrides)
    from flows.continue_training import continue_training

    _print_result(continue_training(args.preset, args.steps, args.alias, overrides, config_path=args.config))
    return 0


def finetune_chat_main(argv: list[str]) -> int:
    parser = _parser("finetune-chat", "Fine-tune a registered model on a conversation dataset.")
    parser.add_argument("--preset", required=True, help="a training preset of pipelines.yaml on conversations")
    parser.add_argument("--base", default="", help="models:/NAME@ALIAS ('': the preset's finetune_from)")
    args, overrides = parser.parse_known_args(argv)
    train_config(load_pipelines(Path(args.config)), args.preset, overrides)
    from flows.finetune_chat import finetune_chat

    _print_result(finetune_chat(args.preset, args.base, overrides, config_path=args.config))
    return 0


def _print_result(result: dict) -> None:
    print({k: v for k, v in result.items() if k != "sample"})
