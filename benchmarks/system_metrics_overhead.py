"""What sampling the machine's system metrics costs the training loop: the same training under torchrun, with the
sampler off and at a given interval, alternating.

    python -m gpt.prepare_text ../shared/data/tinyshakespeare/input.txt --tokenizer char --out /tmp/shakespeare
    python benchmarks/system_metrics_overhead.py --data /tmp/shakespeare --steps 400 --repeats 3 --seconds 0 10 1

Each run is the flows' own training step (tasks/training/run.py: plan, MLflow run, torchrun with the metrics
thread and the system metrics thread), on the demo's engine preset (gpt/presets/poetry-char-cpu.yaml), tracked in a
sqlite file. Printed per interval: the training loop's mean step time (from metrics.jsonl) and the system metric
points sent, and each interval's step time against the runs without the sampler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from tasks.config import load_pipelines
from tasks.training.run import new_run_name, open_run, plan_run, train_under_torchrun
from tasks.training.tracking import Tracker


def mean_step_ms(out_dir: Path) -> float:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["ms_per_iter"] for r in rows if "ms_per_iter" in r and r["step"] > 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a token dataset folder")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, nargs="+", default=[0, 10, 1], help="intervals; 0: no sampler")
    args = parser.parse_args()
    results: dict[float, list[tuple[float, int]]] = {s: [] for s in args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "pipelines.yaml"
        preset = {"dataset": "bench", "base": "poetry-char-cpu", "settings": {"log_interval": 10, "eval_interval": 200}}
        data = {
            "runs_dir": "runs", "tracking": {"uri": "sqlite:///mlflow.db"}, "training": {"bench": preset},
            "corpora": {"text": {"format": "text", "sources": [{"path": str(args.data)}]}},  # named, never built
            "datasets": {"bench": {"corpora": ["text"]}},
        }  # fmt: skip
        config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
        config = load_pipelines(config_file)
        base = Tracker.connect(config)
        for repeat in range(args.repeats):
            for seconds in args.seconds:
                tracker = Tracker(base.client, base.experiment_id, seconds)
                plan = plan_run(config, "bench", [f"--max_iters={args.steps}"], args.data.resolve(), new_run_name("b"))
                run_id = open_run(tracker, plan, "benchmark")
                outcome = train_under_torchrun(plan, tracker, run_id, 1, lambda line: None)
                if outcome.returncode != 0:
                    raise SystemExit(f"training failed ({outcome.returncode}); see {plan.out_dir}")
                tracker.finish(run_id, "FINISHED")
                points = len(base.client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
                results[seconds].append((mean_step_ms(plan.out_dir), points))
                print(f"repeat {repeat + 1}, every {seconds:g} s: {results[seconds][-1][0]:.2f} ms/step, "
                      f"{points} CPU samples", flush=True)  # fmt: skip
    off = statistics.median(ms for ms, _ in results[args.seconds[0]])
    for seconds, rows in results.items():
        ms = statistics.median(m for m, _ in rows)
        print(f"every {seconds:g} s: median {ms:.2f} ms/step ({ms / off:.3f}x the first), "
              f"{statistics.median(p for _, p in rows):.0f} CPU samples per run")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
