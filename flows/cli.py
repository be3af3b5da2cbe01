"""The `gptflow` command: one entry point for the project's tools.

gptflow prepare-text INPUT.txt --tokenizer char --out data/shakespeare_char
gptflow train shakespeare-char-cpu [--key=value ...]
gptflow sample --ckpt runs/shakespeare-char-cpu --start "ROMEO:"
"""

from __future__ import annotations

import sys

COMMANDS = {
    "prepare-text": ("gpt.prepare_text", "turn a text file into a token dataset (90% train, 10% val)"),
    "train": ("gpt.train", "train a GPT-2 from a preset or config file (also under torchrun)"),
    "sample": ("gpt.sample", "generate text from a checkpoint"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print("commands:\n" + "\n".join(f"  {name:<14}{help_}" for name, (_, help_) in COMMANDS.items()))
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    module = __import__(COMMANDS[argv[0]][0], fromlist=["main"])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
