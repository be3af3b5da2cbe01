"""The `gptflow` command: one entry point for the project's tools.

gptflow build-corpus --dataset zh [--config pipelines.yaml] [--datasets.zh.dedupe.near=false ...]
gptflow pretrain --preset shakespeare-char-cpu [--max_iters=500 ...]
gptflow continue-training --preset chinese-gpt2 [--steps 500] [--alias champion]
gptflow finetune-chat --preset demo-chat [--base models:/gptflow-demo@champion]
gptflow prepare-text INPUT.txt --tokenizer char --out data/shakespeare_char
gptflow train shakespeare-char-cpu [--key=value ...]
gptflow deploy [--config pipelines.yaml]
gptflow serve [--config pipelines.yaml]
gptflow up | status | down              (the local Prefect server, MLflow server and served deployments)
gptflow run build-corpus/demo [-p key=value ...]   (a deployment's flow run, its log lines followed to its end)
gptflow sample --ckpt runs/shakespeare-char-cpu --start "ROMEO:"
gptflow sample --model models:/gptflow-chinese-gpt2@champion --start "AI社会价值"
gptflow chat models:/gptflow-demo-chat@champion [--web --port 7860]   (a conversation, in the terminal or a page)
gptflow evaluate models:/gptflow-poetry@champion runs/poetry-char --dataset poetry   (bits per character)
gptflow export models:/gptflow-demo@champion --out export/gptflow-demo               (a Hugging Face folder)
gptflow publish runs/demo/demo-20261207-020000-ab12     (a finished run whose tracking server was down)

A wrong input (pipelines.yaml, an option) ends as one line `error: ...` and exit status 2; any other failure whose
message says the fix (a port that is taken, a wrong checksum, a damaged shard, a full disk) as one line and 1.
SIGTERM ends a command the way Ctrl-C does: what it started (torchrun, Prefect's temporary server) is stopped too;
should a flow command be killed outright, its watchdog (cli/watchdog.py) stops them.
"""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path

from cli.watchdog import guard_children
from gpt.config import ConfigError
from gpt.errors import FixableError, disk_error

COMMANDS = {
    "build-corpus": ("cli.flow_commands:build_corpus_main", "run the build-corpus flow of a dataset in this process"),
    "pretrain": ("cli.flow_commands:pretrain_main", "run the pretrain-gpt2 flow of a training preset in this process"),
    "continue-training": ("cli.flow_commands:continue_main", "run the continue-training flow of a preset here"),
    "finetune-chat": ("cli.flow_commands:finetune_chat_main", "fine-tune a registered model on conversations here"),
    "prepare-text": ("gpt.prepare_text:main", "turn a text file into a token dataset (90% train, 10% val)"),
    "train": ("gpt.train:main", "train a GPT-2 from a preset or config file (also under torchrun)"),
    "deploy": ("cli.deploy:deploy_main", "register pipelines.yaml's deployments on the Prefect server"),
    "serve": ("cli.deploy:serve_main", "serve pipelines.yaml's deployments from this process"),
    "up": ("cli.stack:up_main", "start the local Prefect server, MLflow server and served deployments"),
    "status": ("cli.stack:status_main", "show what runs of the local stack"),
    "down": ("cli.stack:down_main", "stop the local stack"),
    "run": ("cli.run:main", "start a deployment's flow run and print its log lines until it ends"),
    "sample": ("cli.sample:main", "generate text from a registered model, a run or a checkpoint"),
    "chat": ("cli.chat:main", "talk to a chat model in the terminal, or with --web in the browser"),
    "evaluate": ("cli.evaluate:main", "compare models on the same text: bits per character, tokens per character"),
    "export": ("cli.export:main", "write a model as a Hugging Face folder (weights, config, tokenizer)"),
    "publish": ("cli.publish:main", "register a finished run whose tracking server was down when it ended"),
}


FLOW_COMMANDS = ("build-corpus", "pretrain", "continue-training", "finetune-chat")
"""Commands that run a flow in this process, which may start a temporary Prefect server."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print("commands:\n" + "\n".join(f"  {name:<19}{help_}" for name, (_, help_) in COMMANDS.items()))
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    module, _, function = COMMANDS[argv[0]][0].partition(":")
    signal.signal(signal.SIGTERM, _unwind_on_signal)
    if argv[0] in FLOW_COMMANDS:
        signal.signal(signal.SIGINT, _unwind_on_signal)  # Ctrl-C unwinds a flow the way SIGTERM does
        guard_children()
    try:
        return getattr(importlib.import_module(module), function)(argv[1:])
    except FixableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    except OSError as e:
        if (written := disk_error(e, Path(e.filename or Path.cwd()))) is None:
            raise
        print(f"error: {written}", file=sys.stderr)
        return 1


def _unwind_on_signal(signum: int, frame) -> None:
    """Unwind with SystemExit, so that every `finally` and exit handler runs (SIGTERM's default action kills
    outright); a flow command's Ctrl-C takes the same path rather than Prefect's handling of KeyboardInterrupt."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
