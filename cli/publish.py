"""`gptflow publish RUN_FOLDER`: register a finished training run whose flow could not, because its tracking server
stopped answering (the training ended printing this command).

    gptflow publish runs/demo/demo-20261207-020000-ab12            # pipelines.yaml: the one the run was planned from
    gptflow publish runs/demo/demo-20261207-020000-ab12 --config other/pipelines.yaml

It sends the metrics and samples the MLflow run lacks, registers the run's best checkpoint as a new version (moving
`champion` when it wins), marks the MLflow run FINISHED and, for a night, the night done. The tracking server is
pipelines.yaml's or MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.config import load_pipelines
from tasks.training.publish import publish_later
from tasks.training.run import read_run
from tasks.training.tracking import Tracker


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gptflow publish", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (runs/<preset>/<run>)")
    parser.add_argument("--config", default="", help="pipelines.yaml (default: the one the run was planned from)")
    args = parser.parse_args(argv)
    plan, _ = read_run(Path(args.run))
    config = load_pipelines(Path(args.config) if args.config else plan.pipelines)
    result = publish_later(config, Tracker.connect(config), plan.out_dir)
    print({k: v for k, v in result.items() if k != "sample"})
    return 0
