"""Compare models on the same text, whatever their tokenizers: bits per character and per UTF-8 byte, tokens per
character, overall and per corpus.

    python -m gpt.evaluate --ckpt runs/poetry-char --ckpt runs/poetry-bpe --data data/tokens/poetry-bpe-3f2a...
    python -m gpt.evaluate --ckpt runs/poetry-bpe --text song-ci.txt --text news.jsonl --chars 200000
    row = evaluate_checkpoint("runs/poetry-bpe", EvalText.of_dataset(TokenDataset.open(folder), 100_000))

--data scores a token dataset's evaluation set (gpt/bpc.py); each --text file is a corpus of its own, named after
the file: .txt (documents separated by blank lines), .jsonl (one document per line, its "text" field) or .parquet
(its "text" column). --chars caps the text (per corpus for files) at whole documents. Fewer bits per character is
better; tokens per character says how much of the text one context holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from gpt.bpc import EvalText
from gpt.checkpoint import CheckpointError, read_meta
from gpt.decoding import CausalLM
from gpt.sample import load_for_sampling
from gpt.shards import ShardError, TokenDataset
from gpt.tokenizer import Tokenizer

DEFAULT_CHARS = 100_000


def read_documents(path: Path) -> list[str]:
    """The documents of a .txt, .jsonl or .parquet file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            records = [(n, json.loads(line)) for n, line in enumerate(lines, 1) if line.strip()]
        if missing := [n for n, record in records if not isinstance(record.get("text"), str)]:
            raise ValueError(f'{path}: line {missing[0]} has no "text" string ({len(missing)} such lines)')
        docs = [record["text"] for _, record in records]
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        docs = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    else:
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        docs = [block.strip("\n") for block in text.split("\n\n")]
    return [doc for doc in docs if doc and doc.strip()]


def tokenizer_label(tokenizer: Tokenizer) -> str:
    kind = tokenizer.spec()["type"]
    return f"{tokenizer.name if kind == 'tiktoken' else kind} {tokenizer.n_vocab:,}"


def evaluate_model(model: CausalLM, tokenizer: Tokenizer, text: EvalText, batch_size: int = 8) -> dict:
    """val_bpc, val_bits_per_byte, tokens_per_char, and each per corpus (val_bpc/<corpus>, ...)."""
    documents = text.documents(tokenizer, model.config.block_size)
    return documents.score(model, batch_size) | documents.tokens_per_char()


def evaluate_checkpoint(ckpt: str | Path, text: EvalText, batch_size: int = 8, device: str = "auto") -> dict:
    """One row: the checkpoint, its step and tokenizer, and its scores on `text`."""
    model, tokenizer, path = load_for_sampling(ckpt, device)
    scores = evaluate_model(model, tokenizer, text, batch_size)
    return {"model": str(path), "step": read_meta(path)["step"], "tokenizer": tokenizer_label(tokenizer)} | scores


def format_table(rows: list[dict]) -> str:
    """Rows as an aligned table: one line per model, best bpc first."""
    corpora = sorted({key.partition("/")[2] for row in rows for key in row if key.startswith("val_bpc/")})
    header = ["model", "step", "tokenizer", "tokens/char", "bpc", "bits/byte", *[f"bpc {c}" for c in corpora]]
    lines = [header]
    for row in sorted(rows, key=lambda row: row["val_bpc"]):
        per_corpus = [f"{row[f'val_bpc/{c}']:.4f}" if f"val_bpc/{c}" in row else "-" for c in corpora]
        lines.append([
            row["model"], str(row["step"]), row["tokenizer"], f"{row['tokens_per_char']:.3f}", f"{row['val_bpc']:.4f}",
            f"{row['val_bits_per_byte']:.4f}", *per_corpus,
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def print_rows(rows: list[dict], as_json: bool) -> None:
    """The rows on stdout: one JSON line each, or the table."""
    print("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) if as_json else format_table(rows))


def eval_text(data: str | None, texts: list[Path], max_chars: int) -> EvalText:
    """The dataset's evaluation set, or the files' documents (one corpus per file)."""
    if bool(data) == bool(texts):
        raise ValueError("give either --data (a token dataset) or --text files")
    if data:
        return EvalText.of_dataset(TokenDataset.open(data), max_chars)
    corpora = {}
    for path in texts:
        docs = read_documents(path)
        if not docs:
            raise ValueError(f"{path} holds no text")
        corpora[path.stem] = docs
    return EvalText.of_texts(corpora, max_chars)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", action="append", required=True, help="run folder (best checkpoint) or step-N folder")
    p.add_argument("--data", help="a token dataset folder: score its evaluation set")
    p.add_argument("--text", action="append", type=Path, default=[], help="a .txt, .jsonl or .parquet file")
    p.add_argument("--chars", type=int, default=DEFAULT_CHARS, help="characters of text to score (whole documents)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON line per model instead of the table")
    args = p.parse_args(argv)
    try:
        text = eval_text(args.data, args.text, args.chars)
        print(f"# evaluating on {text.describe()}", file=sys.stderr)
        rows = []
        for ckpt in args.ckpt:
            with torch.inference_mode():
                rows.append(evaluate_checkpoint(ckpt, text, args.batch_size, args.device))
            print(f"# {ckpt}: {rows[-1]['val_bpc']:.4f} bits per character", file=sys.stderr)
    except (CheckpointError, ShardError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
