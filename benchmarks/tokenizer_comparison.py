"""One small model shape, the same wall-clock on the CPU, three tokenizers (characters, GPT-2's BPE, a BPE trained on
the corpus): which reaches the fewest bits per character?

    python benchmarks/tokenizer_comparison.py --out /tmp/tokenizers --seconds 150

The corpus is 全唐诗 (../shared/data/chinese-poetry through the mirror folder, as the `poetry-tang` corpus of
pipelines.yaml), built by build-corpus three times, once per tokenizer (char; gpt2; bpe with --vocab-size tokens);
the val documents are the same in all three. Each model (--layers, --width, a context of --block tokens) trains
with `python -m gpt.train` for --seconds seconds on the machine's cores (no evaluation during training, so the time
goes to training), is stopped with SIGTERM (it saves a checkpoint), and that checkpoint is scored. Printed per
tokenizer: steps reached, tokens per character on the Song ci (宋词, never trained on), val bits per character on
the Tang val documents (the same 100,000 characters for all), bits per character on the first --song-chars
characters of the Song ci, parameters, and a sample after "白日".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def build(out: Path, tokenizer: str, vocab_size: int, **tokenize_settings) -> str:
    from tasks.config import load_pipelines
    from tasks.corpus.stage1_raw import fetch_sources
    from tasks.corpus.stage2_ingest import ingest_corpus
    from tasks.corpus.stage3_filter import filter_corpus
    from tasks.corpus.stage4_dedupe import dedupe_dataset
    from tasks.corpus.stage5_bpe import bpe_dataset, trained_tokenizer
    from tasks.corpus.stage6_tokenize import tokenize_dataset

    shipped = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))
    tokenize = {"tokenizer": tokenizer, "vocab_size": vocab_size, "val_fraction": 0.02, **tokenize_settings}
    data = {
        "data_root": str(out / "data"), "mirror": str(DATA),
        "corpora": {"poetry-tang": shipped["corpora"]["poetry-tang"]},
        "datasets": {"tang": {"corpora": ["poetry-tang"], "filter": {"all": {"to_simplified": True}},
                              "tokenize": tokenize}},
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pipelines-{tokenizer}{vocab_size if tokenizer == 'bpe' else ''}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_pipelines(path)
    corpus = ingest_corpus(config, "tang", "poetry-tang", fetch_sources(config, "poetry-tang"))
    deduped = dedupe_dataset(config, "tang", [filter_corpus(config, "tang", corpus)])
    trained = trained_tokenizer(config, bpe_dataset(config, "tang", deduped)) if tokenizer == "bpe" else None
    return tokenize_dataset(config, "tang", deduped, trained).location


def song_texts(chars: int) -> list[str]:
    texts, total = [], 0
    for path in sorted((DATA / "chinese-poetry" / "宋词").glob("*.json")):
        for poem in json.loads(path.read_text()):
            texts.append("\n".join(poem["paragraphs"]))
            total += len(texts[-1])
            if total >= chars:
                return texts
    return texts


def train_for(data: str, run: Path, args) -> int:
    """Train until args.seconds have passed, then SIGTERM (a checkpoint is saved); returns the steps reached."""
    settings = {
        "data": data, "out_dir": str(run), "device": "cpu", "cpu_threads": os.cpu_count() or 1,
        "model": {"n_layer": args.layers, "n_head": args.layers, "n_embd": args.width, "block_size": args.block,
                  "dropout": 0.0},
        "batch_size": 16, "max_iters": 1_000_000, "lr_decay_iters": 1_000_000, "lr": 1e-3, "min_lr": 1e-4,
        "warmup_iters": 100, "eval_interval": 1_000_000, "eval_iters": 20, "eval_chars": 0, "log_interval": 50,
        "ckpt_interval": 250, "compile": False,
    }  # fmt: skip
    config = run.with_suffix(".json")
    run.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(settings), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gpt.train", str(config)], cwd=REPO, stdout=subprocess.DEVNULL)
    time.sleep(args.seconds)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return max(r["step"] for r in rows)


def measure(data: str, run: Path, args) -> dict:
    from gpt.bpc import EvalText
    from gpt.checkpoint import list_checkpoints
    from gpt.sample import SampleOptions, generate_texts, load_for_sampling
    from gpt.shards import TokenDataset

    last = list_checkpoints(run)[-1]
    model, tokenizer, _ = load_for_sampling(last, device="cpu")
    block = model.config.block_size
    tang = EvalText.of_dataset(TokenDataset.open(data), 100_000).documents(None, block).score(model, 16)
    songs = song_texts(args.song_chars)
    song_docs = EvalText.of_texts({"song": songs}, sum(map(len, songs))).documents(tokenizer, block)
    song = song_docs.score(model, 16) | song_docs.tokens_per_char()
    [sample] = generate_texts(model, tokenizer, "白日", SampleOptions(max_new_tokens=48, seed=1, stop_at_eot=False))
    return {
        "step": int(last.name.split("-")[1]), "parameters": model.num_params(non_embedding=False),
        "song_tokens_per_char": round(song["tokens_per_char"], 3),
        "tang_val_bpc": round(tang["val_bpc"], 3), "song_bpc": round(song["val_bpc"], 3), "sample": "白日" + sample,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/tokenizers"))
    parser.add_argument("--seconds", type=int, default=150)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--song-chars", type=int, default=100_000)
    parser.add_argument("--tokenizers", nargs="+", default=["char", "gpt2", "bpe"])
    args = parser.parse_args()
    for tokenizer in args.tokenizers:
        data = build(args.out, tokenizer, args.vocab_size)
        run = args.out / "runs" / tokenizer
        steps = train_for(data, run, args)
        result = {"tokenizer": tokenizer, "logged_steps": steps, **measure(data, run, args)}
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
