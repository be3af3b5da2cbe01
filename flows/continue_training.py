"""The `continue-training` flow: carry a registered model on with the newest data, every night.

    prefect deployment run continue-training/nightly          # pipelines.yaml: cron 0 2 * * *, Asia/Shanghai
    python -m flows.continue_training --preset chinese-gpt2 [--steps 500] [--alias champion]

It loads the version at alias `latest` (or `champion`) of the preset's registered model, rebuilds the dataset
(new or changed corpora make new shards through the fingerprints; unchanged ones are cache hits), trains `steps`
more steps from those weights at the preset's continued-training learning rate, evaluates on the validation set,
registers a new version (`latest`) and moves `champion` when the new version beats it on the same validation set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow

from flows.build_corpus import build_corpus
from flows.pretrain import flow_run_tags, run_and_track, run_from_command_line
from gpt.config import ConfigError
from tasks import runs
from tasks.launch import default_nproc_per_node
from tasks.pipelines import load_pipelines
from tasks.tracking import Tracker, download_model
from tasks.training import registered_model_name, training_preset


@flow(name="continue-training", log_prints=True)
def continue_training(
    preset: str,
    steps: int = 0,
    alias: str = "",
    overrides: list[str] | None = None,
    nproc_per_node: int = 0,
    timeout_minutes: float = 0,
    config_path: str = "pipelines.yaml",
) -> dict:
    """Train the registered model of training preset `preset` for `steps` more steps (0: the preset's
    continued.steps), starting from the version at `alias` ("" : the preset's continued.alias)."""
    config = load_pipelines(Path(config_path))
    spec = training_preset(config, preset)
    alias, steps = alias or spec.continued.alias, steps or spec.continued.steps
    tracker = Tracker.connect(config)
    name = registered_model_name(config, preset)
    parent = tracker.version_at(name, alias)
    if parent is None:
        raise ConfigError(
            f"registered model {name!r} has no version at alias {alias!r}; train one first with "
            f"`prefect deployment run pretrain-gpt2/<deployment of {preset}>`"
        )
    print(f"continuing {name} version {parent.version} (alias {alias}) for {steps} steps")
    dataset = runs.local_dataset(config, build_corpus(spec.dataset, config_path=config_path))
    run_name = runs.new_run_name(preset)
    weights = config.path(config.runs_dir) / preset / run_name / "parent"
    weights = download_model(tracker.client, f"models:/{name}/{parent.version}", weights)
    if not runs.same_tokenizer(weights, dataset):
        raise ConfigError(
            f"version {parent.version} of {name} was trained with another tokenizer than {dataset} now has (a char "
            "vocabulary changes when corpora add characters); train a new model with pretrain-gpt2 instead"
        )
    cont = spec.continued
    plan = runs.plan_run(
        config, preset, overrides or [], dataset, run_name, init_from=str(weights), max_iters=steps, lr=cont.lr,
        min_lr=cont.lr, lr_schedule="constant", warmup_iters=cont.warmup_iters, lr_decay_iters=0,
    )  # fmt: skip
    lineage = {"parent_version": str(parent.version), "parent_run_id": parent.run_id or ""}
    tags = flow_run_tags() | {f"gptflow.{k}": v for k, v in lineage.items()}
    run_id = runs.open_run(tracker, plan, "continue-training", tags)
    nproc = nproc_per_node or default_nproc_per_node()
    timeout = timeout_minutes or spec.timeout_minutes
    return run_and_track(config, plan, tracker, run_id, nproc=nproc, timeout_minutes=timeout, extra_tags=lineage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.continue_training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, help="a training preset of pipelines.yaml")
    parser.add_argument("--steps", type=int, default=0, help="0: the preset's continued.steps")
    parser.add_argument("--alias", default="", choices=["", "latest", "champion"])
    parser.add_argument("--config", default="pipelines.yaml", help="path of pipelines.yaml")
    args, overrides = parser.parse_known_args(argv)
    return run_from_command_line(
        lambda: continue_training(args.preset, args.steps, args.alias, overrides, config_path=args.config)
    )


if __name__ == "__main__":
    sys.exit(main())
