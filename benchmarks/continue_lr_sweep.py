"""How large a learning rate continued pretraining takes: a small Qwen3-shaped base, pretrained here on 全唐诗, carried
on over 宋词 at a sweep of learning rates, each scored on both (bits per character): what it learned on the new text
against what it forgot of the old.

    python benchmarks/continue_lr_sweep.py --out /tmp/bench-continue

Both datasets are encoded with one Qwen-style tokenizer trained on both (an open base's tokenizer knows the text it
is carried on to). The base: 4 layers of 128, AdamW at 3e-3 with warmup-stable-decay, 1,500 steps of 16 x 128
tokens. Each continuation starts from the base's weights with a new optimizer, warms up for 30 steps and decays over
its last 20% (wsd, min_lr a tenth of lr), as the continue preset does, for 300 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package first, then the tests' Qwen-style tokenizer recipe
BASE_LR = 3e-3
LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
SHAPE = {"arch": "qwen3", "n_layer": 4, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 128, "dropout": 0.0}


def datasets(out: Path) -> dict[str, Path]:
    """tang and song token datasets in one Qwen-style tokenizer (8,000 tokens) trained on both."""
    import pyarrow.parquet as pq
    from helpers import SHARED_DATA, write_pipelines
    from hf_base import make_hf_base

    from tasks.config import load_pipelines
    from tasks.corpus.stage1_raw import fetch_sources
    from tasks.corpus.stage2_ingest import ingest_corpus
    from tasks.corpus.stage3_filter import filter_corpus
    from tasks.corpus.stage4_dedupe import dedupe_dataset
    from tasks.corpus.stage6_tokenize import tokenize_dataset
    from tasks.registry import tokenizer_file

    poetry = SHARED_DATA / "chinese-poetry"
    corpora = {
        "tang": {"format": "chinese-poetry", "sources": [{"path": str(poetry / "全唐诗")}]},
        "song": {"format": "chinese-poetry", "sources": [{"path": str(poetry / "宋词"), "members": ["ci.*"]}]},
    }
    tokenize = {"tokenizer": "hf", "hf_tokenizer": str(out / "tokenizer"), "val_fraction": 0.02}
    data = {
        "data_root": str(out / "data"), "corpora": corpora,
        "datasets": {name: {"corpora": [name], "filter": {"all": {"to_simplified": True}}, "tokenize": tokenize}
                     for name in corpora},
    }  # fmt: skip
    config = load_pipelines(write_pipelines(out, data))
    deduped = {}
    for name in corpora:
        corpus = ingest_corpus(config, name, name, fetch_sources(config, name))
        deduped[name] = dedupe_dataset(config, name, [filter_corpus(config, name, corpus)])
    if not (out / "tokenizer" / "tokenizer.json").is_file():
        parts = [p for d in deduped.values() for p in sorted(config.root.local(d.rel).glob("part-*.parquet"))]
        texts = [t for p in parts for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]
        make_hf_base(out / "tokenizer", texts, vocab_size=8000)
    file = tokenizer_file(config, tokenize["hf_tokenizer"], "hf_tokenizer")
    return {name: Path(tokenize_dataset(config, name, d, file).location) for name, d in deduped.items()}


def train(data: Path, out_dir: Path, **settings) -> None:
    from helpers import train as run_training

    from gpt.config import TrainConfig, from_dict

    if any(out_dir.glob("step-*")):
        return
    cfg = {
        "data": str(data), "out_dir": str(out_dir), "device": "cpu", "cpu_threads": 2, "model": SHAPE,
        "batch_size": 16, "eval_interval": 100_000, "eval_iters": 4, "eval_chars": 20_000, "log_interval": 100,
        "lr_schedule": "wsd", "ckpt_interval": 0, "keep_last": 1, **settings,
    }  # fmt: skip
    run_training(from_dict(TrainConfig, cfg))


def bpc(run: Path, data: Path) -> float:
    from gpt.bpc import EvalText
    from gpt.evaluate import evaluate_checkpoint
    from gpt.shards import TokenDataset

    return round(evaluate_checkpoint(run, EvalText.of_dataset(TokenDataset.open(data), 200_000), 16)["val_bpc"], 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-continue"))
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    data = datasets(args.out)
    base = args.out / "runs" / "base"
    train(data["tang"], base, max_iters=1500, lr=BASE_LR, min_lr=BASE_LR / 10, warmup_iters=100)
    print(json.dumps({"run": "base", "tang_bpc": bpc(base, data["tang"]), "song_bpc": bpc(base, data["song"])}))
    for lr in LRS:
        run = args.out / "runs" / f"song-lr{lr:g}"
        train(data["song"], run, init_from=str(base), max_iters=args.steps, lr=lr, min_lr=lr / 10, warmup_iters=30)
        scores = {"song_bpc": bpc(run, data["song"]), "tang_bpc": bpc(run, data["tang"])}
        print(json.dumps({"run": f"continued on song at lr {lr:g} ({lr / BASE_LR:g} x the base's)", **scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
