"""What pretrain-gpt2 through its deployment costs on top of `torchrun -m gpt.train` run directly.

    gptflow deploy --config CONFIG && prefect worker start --pool gpu &     # a Prefect server, an MLflow server
    python benchmarks/pretrain_overhead.py --config CONFIG --preset tiny --deployment pretrain-gpt2/tiny --repeats 3

Each repeat starts the deployment with `prefect deployment run --watch` and times it to the end, then runs
torchrun directly on the very config.json that flow run trained (a new out_dir), timed the same way. It prints the
wall times, the overhead, the training loop's mean step time in both (so that a cost inside the loop would show),
and what the metrics thread spent sending to MLflow per step.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.config import load_pipelines
from tasks.training.launch import torchrun_command


def mean_step_ms(out_dir: Path) -> float:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["ms_per_iter"] for r in rows if "ms_per_iter" in r)


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = load_pipelines(Path(args.config))
    client = MlflowClient(config.tracking.uri_for(config.base))
    prefect = str(Path(sys.executable).parent / "prefect")
    rows = []
    for i in range(args.repeats):
        flow_seconds, out = timed([prefect, "deployment", "run", args.deployment, "--watch"])
        flow_run = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
        experiment = client.get_experiment_by_name(config.tracking.experiment)  # made by the first flow run
        run = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run}'")[0]
        flow_dir = Path(run.data.tags["gptflow.out_dir"])
        cfg = json.loads((flow_dir / "config.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            cfg["out_dir"] = str(Path(tmp) / "run")
            direct_config = Path(tmp) / "config.json"
            direct_config.write_text(json.dumps(cfg))
            direct_seconds, _ = timed(torchrun_command(str(direct_config), 1))
            direct_ms = mean_step_ms(Path(cfg["out_dir"]))
        tags = run.data.tags
        rows.append(
            {
                "flow_s": flow_seconds,
                "direct_s": direct_seconds,
                "flow_step_ms": mean_step_ms(flow_dir),
                "direct_step_ms": direct_ms,
                "send_ms_per_step": 1000 * float(tags["gptflow.metric_send_seconds"]) / cfg["max_iters"],
                "points": int(tags["gptflow.metric_points"]),
            }
        )
        print(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        f"median over {len(rows)}: deployment {median['flow_s']:.1f} s, torchrun directly {median['direct_s']:.1f} s, "
        f"overhead {median['flow_s'] - median['direct_s']:.1f} s; step {median['flow_step_ms']:.2f} ms (flow) vs "
        f"{median['direct_step_ms']:.2f} ms (direct); MLflow sending {median['send_ms_per_step']:.3f} ms per step "
        f"({median['points']:.0f} points), in the flow process, off the training loop"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
