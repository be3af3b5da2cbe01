"""Time to quality of the training recipes on this CPU: the GPT-2 recipe of 2019 against the qwen3 family with Muon
and a warmup-stable-decay schedule, and each change alone.

    python benchmarks/recipe_comparison.py curves --out /tmp/recipes          # the bpc curve of every recipe
    python benchmarks/recipe_comparison.py speed --out /tmp/recipes           # ms per step, side by side
    python benchmarks/recipe_comparison.py report --out /tmp/recipes          # the table
    python benchmarks/recipe_comparison.py curves --shape demo --recipes modern --set muon_lr=0.04 --tag lr0.04

Two shapes, both on 全唐诗 (../shared/data/chinese-poetry through the mirror folder, to simplified characters, 2% of
the poems held out): `demo`, the demo preset's model (4 layers of 128, a context of 64 characters, characters seen
10 times or more: the output layer is most of the work), and `body`, 6 layers of 256 on a BPE of 8,000 tokens learned
from the same poems (the hidden matrices are most of the work). Each run trains a fixed number of steps with
`python -m gpt.train` and scores val bits per character every --every steps on the same 50,000 characters of val
poems: that curve does not depend on the machine's load. `speed` then times each recipe's steps alone, recipes
interleaved round after round, so that a slower moment hits every recipe alike. `report` combines them: the steps
a recipe needs to reach the bpc the GPT-2 recipe (at the best of its learning rates tried) ends with, linear between
evaluations, times its ms per step, against that GPT-2 run's whole length, and each final checkpoint's bpc on the
first 100,000 characters of the Song ci (宋词, never trained on).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tokenizer_comparison import build, song_texts

REPO = Path(__file__).resolve().parent.parent
SHAPES = {
    "demo": {
        "dataset": ("char", 8000, {"char_min_count": 10}),
        "settings": {
            "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "gelu": "exact"},
            "batch_size": 16, "max_iters": 1800, "lr": 2e-3, "min_lr": 2e-4, "warmup_iters": 100, "beta2": 0.99,
        },
    },
    "body": {
        "dataset": ("bpe", 8000, {}),
        "settings": {
            "model": {"n_layer": 6, "n_head": 4, "n_embd": 256, "block_size": 64, "gelu": "exact"},
            "batch_size": 16, "max_iters": 600, "lr": 2e-3, "min_lr": 2e-4, "warmup_iters": 50, "beta2": 0.99,
        },
    },
}  # fmt: skip
QWEN3 = {"model": {"arch": "qwen3", "bias": False}}
RECIPES = {
    "gpt2": {},
    "gpt2+muon": {"optimizer": "muon"},
    "gpt2+wsd": {"lr_schedule": "wsd"},
    "qwen3": QWEN3,
    "qwen3+muon": QWEN3 | {"optimizer": "muon"},
    "modern": QWEN3 | {"optimizer": "muon", "lr_schedule": "wsd"},
    "modern-untied": {"model": {"arch": "qwen3", "tie_embeddings": False}, "optimizer": "muon", "lr_schedule": "wsd"},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_sets(pairs: list[str]) -> dict:
    out: dict = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    return out


def dataset(out: Path, shape: str) -> str:
    tokenizer, vocab, extra = SHAPES[shape]["dataset"]
    marker = out / f"dataset-{shape}.txt"
    if not marker.is_file():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(build(out / shape, tokenizer, vocab, **extra), encoding="utf-8")
    return marker.read_text(encoding="utf-8")


def settings(out: Path, shape: str, recipe: str, extra: dict, run: Path, every: int, steps: int | None) -> dict:
    base = merge(SHAPES[shape]["settings"], RECIPES[recipe])
    base = merge(base, extra)
    total = steps or base["max_iters"]
    fixed = {
        "data": dataset(out, shape), "out_dir": str(run), "device": "cpu", "cpu_threads": os.cpu_count() or 1,
        "max_iters": total, "lr_decay_iters": total, "eval_interval": every, "eval_iters": 10, "eval_chars": 50_000,
        "log_interval": 1, "ckpt_interval": total, "keep_last": 1, "seed": 1337,
    }  # fmt: skip
    return merge(base, fixed)


def train(cfg: dict, config: Path) -> None:
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(cfg), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "gpt.train", str(config)], cwd=REPO, check=True, stdout=subprocess.DEVNULL
    )  # fmt: skip


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def curves(args) -> None:
    for shape in args.shape:
        for recipe in args.recipes:
            name = recipe + (f"@{args.tag}" if args.tag else "")
            run = args.out / "runs" / shape / name
            if (run / "metrics.jsonl").is_file() and any("val_bpc" in r for r in rows(run)[-3:]):
                continue  # done before
            cfg = settings(args.out, shape, recipe, parse_sets(args.set), run, args.every, args.steps)
            train(cfg, run.parent / f"{run.name}.json")
            curve = [(r["step"], r["val_bpc"]) for r in rows(run) if "val_bpc" in r]
            print(json.dumps({"shape": shape, "recipe": name, "final_bpc": round(curve[-1][1], 4)}), flush=True)


def speed(args) -> None:
    """ms per step of each recipe's config (learning rates do not change it, so runs made with --set are not timed
    again), 40 timed steps after 10 untimed ones, recipes interleaved."""
    timings: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for config in sorted(c for c in (args.out / "runs").glob("*/*.json") if "@" not in c.stem):
            cfg = json.loads(config.read_text(encoding="utf-8"))
            run = args.out / "speed" / config.parent.name / config.stem
            if run.exists():
                subprocess.run(["rm", "-rf", str(run)], check=True)
            cfg |= {"out_dir": str(run), "max_iters": 50, "eval_interval": 10_000, "ckpt_interval": 10_000,
                    "eval_chars": 0, "eval_iters": 1}  # fmt: skip
            train(cfg, run.parent / f"{run.name}.json")
            ms = [r["ms_per_iter"] for r in rows(run) if "ms_per_iter" in r and r["step"] > 10]
            timings.setdefault(f"{config.parent.name}/{config.stem}", []).append(statistics.median(ms))
    (args.out / "speed.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    for key, values in timings.items():
        print(f"{key}: {statistics.median(values):.1f} ms/step ({', '.join(f'{v:.1f}' for v in values)})")


def steps_to(curve: list[tuple[int, float]], target: float) -> float | None:
    """The first step where the bpc reaches `target`, linear between evaluations (None: never)."""
    for (s0, b0), (s1, b1) in itertools.pairwise(curve):
        if b1 <= target:
            return s1 if b0 == b1 else s0 + (b0 - target) / (b0 - b1) * (s1 - s0)
    return None


def song_bpc(run: Path) -> tuple[float, int]:
    """(bits per character on the Song ci, parameters) of a run's last checkpoint."""
    from gpt.bpc import EvalText
    from gpt.checkpoint import list_checkpoints
    from gpt.sample import load_for_sampling

    model, tokenizer, _ = load_for_sampling(list_checkpoints(run)[-1], device="cpu")
    songs = song_texts(100_000)
    docs = EvalText.of_texts({"song": songs}, sum(map(len, songs))).documents(tokenizer, model.config.block_size)
    return docs.score(model, 16)["val_bpc"], model.num_params(non_embedding=False)


def report(args) -> None:
    timings = json.loads((args.out / "speed.json").read_text(encoding="utf-8"))
    for shape in args.shape:
        runs = sorted(run for run in (args.out / "runs" / shape).iterdir() if run.is_dir())
        curves = {run.name: [(r["step"], r["val_bpc"]) for r in rows(run) if "val_bpc" in r] for run in runs}
        baseline = min((c[-1][1], name) for name, c in curves.items() if name.split("@")[0] == "gpt2")[1]
        target, base_steps = curves[baseline][-1][1], curves[baseline][-1][0]
        base_ms = statistics.median(timings[f"{shape}/gpt2"])
        print(
            f"\n{shape}: the GPT-2 recipe at its best learning rate ({baseline}) ends at {target:.4f} bpc after "
            f"{base_steps} steps ({base_ms:.1f} ms/step)"
        )
        print(
            "| recipe | parameters | ms/step | final val bpc | steps to GPT-2's final bpc | time to it | Song ci bpc |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for run in runs:
            curve = curves[run.name]
            ms = statistics.median(timings[f"{shape}/{run.name.split('@')[0]}"])
            reached = steps_to(curve, target)
            ratio = f"{reached * ms / (base_steps * base_ms):.2f}x" if reached is not None else "not reached"
            song, params = song_bpc(run)
            print(
                f"| {run.name} | {params / 1e6:.2f}M | {ms:.1f} | {curve[-1][1]:.4f} | "
                f"{'-' if reached is None else round(reached)} | {ratio} | {song:.3f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=["curves", "speed", "report"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipes"))
    parser.add_argument("--shape", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--set", nargs="*", default=[], help="key=value over the recipe, e.g. muon_lr=0.04")
    parser.add_argument("--tag", default="", help="a name for runs made with --set")
    parser.add_argument("--every", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--steps", type=int, default=None, help="steps to train (default: the shape's)")
    parser.add_argument("--rounds", type=int, default=2, help="speed: rounds over every recipe")
    args = parser.parse_args()
    {"curves": curves, "speed": speed, "report": report}[args.phase](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
