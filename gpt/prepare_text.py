"""Turn one text file into a dataset folder: first 90% of the text for train, last 10% for val.

    python -m gpt.prepare_text ../shared/data/tinyshakespeare/input.txt --tokenizer char --out data/shakespeare_char
    python -m gpt.prepare_text input.txt --tokenizer gpt2 --out data/shakespeare     # or cl100k_base, o200k_base

The char tokenizer's vocabulary is the file's distinct characters (saved as tokenizer.json). The folder is written
atomically, with manifest.json last; a folder of that name is replaced.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from gpt.atomic import atomic_dir
from gpt.shards import token_dtype, write_manifest, write_shard
from gpt.tokenizer import CharTokenizer, TiktokenTokenizer, Tokenizer


def prepare_text(
    input_path: Path, out: Path, tokenizer: str = "char", val_fraction: float = 0.1, command: str = ""
) -> dict:
    """Tokenize a text file into `out`; returns the manifest."""
    text = Path(input_path).read_text(encoding="utf-8")
    if not text:
        raise ValueError(f"{input_path} is empty")
    tok: Tokenizer = CharTokenizer.build([text]) if tokenizer == "char" else TiktokenTokenizer(tokenizer)
    split_at = int(len(text) * (1 - val_fraction))
    dtype = token_dtype(tok.n_vocab)
    splits = {}
    with atomic_dir(Path(out)) as tmp:
        for split, part in (("train", text[:split_at]), ("val", text[split_at:])):
            ids = np.array(tok.encode(part), dtype=np.int64)
            splits[split] = [write_shard(tmp / f"{split}-00000.bin", ids, dtype)]
    q = shlex.quote
    rebuild = command or f"python -m gpt.prepare_text {q(str(input_path))} --tokenizer {tokenizer} --out {q(str(out))}"
    return write_manifest(Path(out), tok, splits, created_by=rebuild, source=str(input_path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt.prepare_text", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="a UTF-8 text file")
    parser.add_argument("--tokenizer", default="char", help="char, or a tiktoken encoding: gpt2, cl100k_base, ...")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of the text's end kept for val")
    args = parser.parse_args(argv)
    manifest = prepare_text(args.input, args.out, args.tokenizer, args.val_fraction)
    counts = {s: sum(e["tokens"] for e in shards) for s, shards in manifest["splits"].items()}
    print(
        f"{args.out}: vocabulary {manifest['vocab_size']} ({manifest['tokenizer']}), "
        f"train {counts['train']:,} tokens, val {counts['val']:,} tokens"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
