"""A trained BPE against GPT-2's: training time, tokens per character, encoding speed per process and the tokens
stage's time and memory, on the same text.

    python benchmarks/build_corpus_stages.py /tmp/webtext500.json --out /tmp/bench-corpus   # makes deduped parts
    python benchmarks/bpe_tokenizer.py /tmp/bench-corpus/near --parts 2 --vocab-size 32000

The BPE learns from the train documents of the parts (bpe_train_chars of them) as the bpe stage does, or with
`--train-on tang` from the real 全唐诗 poems. Encoding is
timed in one process over texts already in memory (`encode_ordinary` for gpt2, the BPE's own encode), then the whole
tokens stage (reading, splitting, encoding, writing shards) runs with 1 worker in a fresh process for each tokenizer.
Tokens per character are also measured on the real Chinese under ../shared/data (THUCNews and translation2019zh
samples, the Song ci) and on the bundled demo corpora.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def samples() -> dict[str, str]:
    """Held-out real text, by name."""
    with zipfile.ZipFile(DATA / "samples" / "thucnews" / "THUCNews.zip") as z:
        thucnews = "\n".join(z.read(n).decode() for n in z.namelist() if n.endswith(".txt") and "__MACOSX" not in n)
    lines = (DATA / "samples" / "translation2019zh" / "translation2019zh_valid.json").read_text().splitlines()
    song = [p for f in sorted((DATA / "chinese-poetry" / "宋词").glob("*.json")) for p in json.loads(f.read_text())]
    demo = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted((REPO / "demo").rglob("*"))
                     if p.is_file())  # fmt: skip
    return {
        "THUCNews sample": thucnews,
        "translation2019zh sample (Chinese side)": "\n".join(json.loads(line)["chinese"] for line in lines),
        "宋词": "\n".join("\n".join(p["paragraphs"]) for p in song),
        "demo corpora (raw files)": demo,
    }


def tang_poems() -> list[str]:
    files = sorted((DATA / "chinese-poetry" / "全唐诗").glob("*.json"))
    return ["\n".join(p["paragraphs"]) for f in files for p in json.loads(f.read_text())]


def tokens_stage(parts: list[Path], spec: Path | None, encoding: str) -> dict:
    """The tokens stage over the parts with 1 worker; seconds and peak RSS of this process."""
    from tasks.corpus.settings import TokenizeConfig
    from tasks.corpus.stage6_tokenize import tokenize_parts

    out = Path(tempfile.mkdtemp(prefix="bench-bpe-"))
    config = TokenizeConfig(tokenizer=encoding)
    try:
        started = time.monotonic()
        stats = tokenize_parts(parts, config, out / "t", 1, "", set(), given=spec)
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(out)
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) // 1024
    return {"seconds": round(seconds, 2), "tokens": stats["total"]["train_tokens"] + stats["total"]["val_tokens"],
            "peak_mb": peak}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("deduped", type=Path, help="a folder of dedupe-stage Parquet parts")
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--train-chars", type=int, default=20_000_000)
    parser.add_argument("--train-on", choices=["parts", "tang"], default="parts",
                        help="learn from the parts' train documents, or from the real 全唐诗 poems")  # fmt: skip
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = sorted(args.deduped.glob("part-*.parquet"))[: args.parts]
    if args.stage:
        spec = None if args.stage == "gpt2" else Path(args.stage)
        print(json.dumps(tokens_stage(parts, spec, "gpt2" if spec is None else "bpe")))
        return 0

    import pyarrow.parquet as pq

    from gpt.tokenizer import TiktokenTokenizer
    from tasks.corpus.settings import TokenizeConfig
    from tasks.corpus.stage5_bpe import train_bpe, train_texts

    started = time.monotonic()
    config = TokenizeConfig(tokenizer="bpe", vocab_size=args.vocab_size, bpe_train_chars=args.train_chars)
    learn_from = train_texts(parts, config, set()) if args.train_on == "parts" else tang_poems()
    bpe = train_bpe(learn_from, args.vocab_size, name=f"bench-bpe{args.vocab_size}")
    print(json.dumps({"bpe_training_seconds": round(time.monotonic() - started, 1), "vocab_size": bpe.n_vocab}))
    gpt2 = TiktokenTokenizer("gpt2")
    texts = [t for p in parts for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]
    chars, megabytes = sum(map(len, texts)), sum(len(t.encode()) for t in texts) / 1e6
    for name, tokenizer in (("gpt2", gpt2), ("bpe", bpe)):
        tokenizer.encode(texts[0])
        started = time.monotonic()
        tokens = sum(len(tokenizer.encode(t)) for t in texts)
        seconds = time.monotonic() - started
        rates = {"mb_per_s": round(megabytes / seconds, 1), "tokens_per_char": round(tokens / chars, 3)}
        print(json.dumps({"encode": name, "mb": round(megabytes, 1), "seconds": round(seconds, 2), **rates}))
    for name, text in samples().items():
        per_char = {
            f"{n}_tokens_per_char": round(len(t.encode(text)) / len(text), 3) for n, t in (("gpt2", gpt2), ("bpe", bpe))
        }
        print(json.dumps({"text": name, "chars": len(text), **per_char}, ensure_ascii=False))
    spec = Path(tempfile.mkdtemp(prefix="bench-bpe-spec-")) / "tokenizer.json"
    spec.write_text(json.dumps(bpe.spec(), ensure_ascii=False), encoding="utf-8")
    for stage in ("gpt2", str(spec)):
        command = [sys.executable, __file__, str(args.deduped), "--parts", str(args.parts), "--stage", stage]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps({"tokens_stage": "gpt2" if stage == "gpt2" else "bpe", "mb": round(megabytes, 1), **result,
                          "mb_per_s": round(megabytes / result["seconds"], 1)}))  # fmt: skip
    shutil.rmtree(spec.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
