"""An open base's own tokenizer (`tokenize: {tokenizer: hf}`, encoded by the `tokenizers` library) against tiktoken's
on the same real text: tokens per character, encoding speed per process, and the tokens stage with its workers.

    python benchmarks/hf_tokenizer.py --out /tmp/bench-hf        # builds 全唐诗 + 宋词 (simplified) once, then measures

The Qwen-style tokenizer is made here as Qwen's was (tests/hf_base.py: NFC, Qwen's split pattern, a byte-level
BPE trained by `tokenizers`, special tokens after the vocabulary), at 32,000 tokens, on the Tang poems; our own BPE
(the bpe stage's, encoded by tiktoken) is trained on the same text at the same size. Tokens per character are
measured on the Song ci, which neither saw. Each encoding speed is a fresh process over the same texts in memory;
the tokens stage reads the deduped parts four times over (so that it uses its worker processes) into shards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package first, then the tests' Qwen-style tokenizer recipe
VOCAB = 32_000


def corpus(out: Path) -> Path:
    """全唐诗 and 宋词 through the ingest, filter and dedupe stages (simplified characters): the deduped folder."""
    from helpers import SHARED_DATA, write_pipelines

    from tasks.config import load_pipelines
    from tasks.corpus.stage1_raw import fetch_sources
    from tasks.corpus.stage2_ingest import ingest_corpus
    from tasks.corpus.stage3_filter import filter_corpus
    from tasks.corpus.stage4_dedupe import dedupe_dataset

    poetry = SHARED_DATA / "chinese-poetry"
    data = {
        "data_root": str(out / "data"),
        "corpora": {
            "tang": {"format": "chinese-poetry", "sources": [{"path": str(poetry / "全唐诗")}]},
            "song": {"format": "chinese-poetry", "sources": [{"path": str(poetry / "宋词"), "members": ["ci.*"]}]},
        },
        "datasets": {"poems": {"corpora": ["tang", "song"], "filter": {"all": {"to_simplified": True}}}},
    }
    config = load_pipelines(write_pipelines(out, data))
    filtered = [
        filter_corpus(config, "poems", ingest_corpus(config, "poems", name, fetch_sources(config, name)))
        for name in ("tang", "song")
    ]
    return config.root.local(dedupe_dataset(config, "poems", filtered).rel)


def texts_of(deduped: Path, corpus_name: str) -> list[str]:
    import pyarrow.parquet as pq

    rows = [pq.read_table(p, columns=["corpus", "text"]).to_pylist() for p in sorted(deduped.glob("part-*.parquet"))]
    return [r["text"] for part in rows for r in part if r["corpus"] == corpus_name]


def tokenizers_made(deduped: Path, out: Path) -> dict[str, Path]:
    """tokenizer.json files: the Qwen-style BPE (Hugging Face format) and our bpe stage's (gptflow format)."""
    from hf_base import train_tokenizer

    from tasks.corpus.stage5_bpe import train_bpe

    tang = texts_of(deduped, "tang")
    files = {"qwen-style": out / "qwen-style" / "tokenizer.json", "bpe": out / "bpe" / "tokenizer.json"}
    for file in files.values():
        file.parent.mkdir(parents=True, exist_ok=True)
    train_tokenizer(tang, VOCAB).save(str(files["qwen-style"]))
    (files["qwen-style"].parent / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    files["bpe"].write_text(json.dumps(train_bpe(tang, VOCAB, name=f"tang-bpe{VOCAB}").spec()), encoding="utf-8")
    return files


def encode_speed(deduped: Path, tokenizer: str, way: str) -> dict:
    from gpt.tokenizer import load_tokenizer, tokenizer_from_spec

    texts = texts_of(deduped, "tang") + texts_of(deduped, "song")
    named = tokenizer in ("gpt2", "cl100k_base")
    tok = tokenizer_from_spec({"type": "tiktoken", "name": tokenizer}) if named else load_tokenizer(tokenizer)
    started = time.perf_counter()
    if way == "batch":
        batches = [texts[start : start + 10_000] for start in range(0, len(texts), 10_000)]
        tokens = sum(len(ids) for batch in batches for ids in tok.encode_batch(batch))
    else:
        tokens = sum(len(tok.encode(text)) for text in texts)
    seconds = time.perf_counter() - started
    chars = sum(map(len, texts))
    return {
        "chars": chars,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "mchars_per_s": round(chars / seconds / 1e6, 2),
    }


def stage_speed(deduped: Path, tokenizer: str, workers: int) -> dict:
    from tasks.corpus.settings import TokenizeConfig
    from tasks.corpus.stage6_tokenize import tokenize_parts

    out = deduped.parent.parent / "bench-tokens"
    shutil.rmtree(out, ignore_errors=True)
    parts = sorted(deduped.glob("part-*.parquet")) * 4  # past pool_for's 16 MB: worker processes, as at scale
    config = TokenizeConfig(tokenizer="bpe", shard_tokens=10**9)
    started = time.perf_counter()
    stats = tokenize_parts(parts, config, out, workers, "", set(), Path(tokenizer))
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    tokens = stats["total"]["train_tokens"] + stats["total"]["val_tokens"]
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds)}


def fresh(*args: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-hf"))
    parser.add_argument("--only", nargs=3, help=argparse.SUPPRESS)  # encode|stage, tokenizer, way|workers
    args = parser.parse_args()
    deduped = next((args.out / "data" / "deduped").glob("poems-*"), None) if args.out.is_dir() else None
    if args.only:
        kind, tokenizer, how = args.only
        result = (
            encode_speed(deduped, tokenizer, how) if kind == "encode" else stage_speed(deduped, tokenizer, int(how))
        )
        print(json.dumps(result))
        return 0
    deduped = deduped or corpus(args.out)
    files = tokenizers_made(deduped, args.out)
    from gpt.tokenizer import load_tokenizer, tokenizer_from_spec

    song = texts_of(deduped, "song")
    chars = sum(map(len, song))
    for name, tok in [("gpt2", tokenizer_from_spec({"type": "tiktoken", "name": "gpt2"})),
                      ("cl100k_base", tokenizer_from_spec({"type": "tiktoken", "name": "cl100k_base"})),
                      *((name, load_tokenizer(file)) for name, file in files.items())]:  # fmt: skip
        tokens = sum(len(ids) for ids in tok.encode_batch(song))
        print(
            json.dumps(
                {"tokens_per_char_on_song_ci": round(tokens / chars, 3), "tokenizer": name, "n_vocab": tok.n_vocab}
            )
        )
    one_thread = {**os.environ, "RAYON_NUM_THREADS": "1"}
    runs = [("gpt2", "each", None), (str(files["bpe"]), "each", None), (str(files["qwen-style"]), "each", None),
            (str(files["qwen-style"]), "batch", one_thread), (str(files["qwen-style"]), "batch", None)]  # fmt: skip
    for tokenizer, way, env in runs:
        threads = "1 thread" if env else "default threads"
        result = fresh("--out", str(args.out), "--only", "encode", tokenizer, way, env=env)
        print(
            json.dumps({"encode": Path(tokenizer).parent.name or tokenizer, "way": way, "threads": threads, **result})
        )
    for name in ("bpe", "qwen-style"):
        for workers in (1, 2):
            result = fresh("--out", str(args.out), "--only", "stage", str(files[name]), str(workers))
            print(json.dumps({"tokens_stage": name, "workers": workers, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
