"""The `gptflow` command: one entry point for the project's tools.

gptflow prepare-text INPUT.txt --tokenizer char --out data/shakespeare_char
gptflow train shakespeare-char-cpu [--key=value ...]
gptflow deploy [--config pipelines.yaml]
gptflow serve [--config pipelines.yaml]
gptflow up | status | down              (the local Prefect server, MLflow server and served deployments)
gptflow sample --ckpt runs/shakespeare-char-cpu --start "ROMEO:"
gptflow sample --model models:/gptflow-chinese-gpt2@champion --start "AI社会价值"
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "prepare-text": ("gpt.prepare_text:main", "turn a text file into a token dataset (90% train, 10% val)"),
    "train": ("gpt.train:main", "train a GPT-2 from a preset or config file (also under torchrun)"),
    "deploy": ("flows.deployments:main", "register pipelines.yaml's deployments on the Prefect server"),
    "serve": ("flows.deployments:serve_main", "serve pipelines.yaml's deployments from this process"),
    "up": ("flows.stack:up_main", "start the local Prefect server, MLflow server and served deployments"),
    "status": ("flows.stack:status_main", "show what runs of the local stack"),
    "down": ("flows.stack:down_main", "stop the local stack"),
    "sample": ("flows.sample:main", "generate text from a registered model, a run or a checkpoint"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print("commands:\n" + "\n".join(f"  {name:<14}{help_}" for name, (_, help_) in COMMANDS.items()))
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    module, _, function = COMMANDS[argv[0]][0].partition(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
