"""A simulated week of nights on real Chinese poems: pretraining, then seven nights, with new poems every day.

    python benchmarks/nightly_week.py --out /tmp/week [--days 7] [--pretrain-steps 600] [--night-steps 200]

Day 0's source folder holds the first --start poems of 全唐诗 (../shared/data/chinese-poetry) as JSON lines; before
each night the next --per-day poems arrive as a new file. The flows run in this process (Prefect's temporary server,
an MLflow registry in a sqlite file, torchrun on this machine's CPU): pretrain-gpt2 once (a BPE of --vocab-size tokens
trained on day 0), then continue-training every night with the shipped defaults (alias champion, replay 0.25). Printed
per night: the version, its parent, the steps it reached, the tokens it trained on, the new documents it met first,
the parent's and its own bits per character on the frozen evaluation text, and where champion went.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
POEMS = REPO.parent / "shared" / "data" / "chinese-poetry" / "全唐诗"


def poems() -> list[str]:
    files = sorted(POEMS.glob("poet.tang.*.json"), key=lambda p: int(p.name.split(".")[2]))
    return ["\n".join(p["paragraphs"]) for f in files for p in json.loads(f.read_text(encoding="utf-8"))]


def write_day(folder: Path, day: int, texts: list[str]) -> None:
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    (folder / f"day-{day}.jsonl").write_text(lines, encoding="utf-8")


def pipelines(out: Path, args) -> Path:
    settings = {
        "device": "cpu", "batch_size": 16, "max_iters": args.pretrain_steps, "lr": 1e-3, "min_lr": 3e-4,
        "warmup_iters": 50, "eval_interval": 200, "eval_iters": 10, "eval_chars": 20_000, "log_interval": 50,
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0},
    }  # fmt: skip
    data = {
        "data_root": "data",
        "corpora": {"tang": {"format": "jsonl", "kind": "poem", "sources": [{"path": "poems"}]}},
        "datasets": {
            "tang": {
                "corpora": ["tang"],
                "tokenize": {"tokenizer": "bpe", "vocab_size": args.vocab_size, "val_fraction": 0.02},
            }
        },
        "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "week"},
        "training": {
            "week": {
                "dataset": "tang", "settings": settings, "registered_model": "gptflow-week",
                "sample": {"prompt": "白日", "max_new_tokens": 24, "num_samples": 1},
                "continued": {"steps": args.night_steps, "lr": 3e-4},
            }
        },
    }  # fmt: skip
    path = out / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--start", type=int, default=20_000, help="poems on day 0")
    parser.add_argument("--per-day", type=int, default=1_500, help="poems arriving each day")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--night-steps", type=int, default=200)
    parser.add_argument("--vocab-size", type=int, default=4_000)
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.continue_training import continue_training
    from flows.pretrain import pretrain_gpt2
    from tasks.config import load_pipelines
    from tasks.registry import client_for, find_version

    texts = poems()
    (args.out / "poems").mkdir(parents=True)
    write_day(args.out / "poems", 0, texts[: args.start])
    path = pipelines(args.out, args)
    client = client_for(load_pipelines(path))
    rows = []
    with prefect_test_harness(server_startup_timeout=120):
        started = time.monotonic()
        first = pretrain_gpt2("week", config_path=str(path))
        rows.append(("pretraining", first, None, time.monotonic() - started))
        for day in range(1, args.days + 1):
            begin = args.start + (day - 1) * args.per_day
            write_day(args.out / "poems", day, texts[begin : begin + args.per_day])
            started = time.monotonic()
            night = continue_training("week", config_path=str(path))
            newest = find_version(client, "gptflow-week", "latest")
            rows.append((f"night {day}", night, newest, time.monotonic() - started))
    print("| run | version | parent | steps | tokens trained | new documents | parent bpc | bpc | champion | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, result, version, seconds in rows:
        tags = version.tags if version is not None else {}
        out_dir = Path(result["out_dir"])
        cfg = json.loads((out_dir / "config.json").read_text())
        parent_step = json.loads((out_dir / "parent" / "meta.json").read_text())["step"] if version else 0
        trained = (result["step"] - parent_step) * cfg["batch_size"] * cfg["grad_accum"] * cfg["model"]["block_size"]
        before = f"{float(tags['parent_val_bpc']):.4f}" if "parent_val_bpc" in tags else "-"
        print(
            f"| {name} | {result['version']} | {tags.get('parent_version', '-')} | {result['step']} | {trained:,} "
            f"| {tags.get('new_documents', '-')} | {before} | {result['val_bpc']:.4f} | {result['champion']} "
            f"| {seconds:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
