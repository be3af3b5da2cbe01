"""`gptflow deploy` and `gptflow serve`: the deployments of pipelines.yaml on a Prefect server.

    gptflow deploy [--config pipelines.yaml]   # register them; work pools cpu and gpu are created when missing
    prefect worker start --pool gpu            # on each GPU machine: picks up the training flows
    prefect worker start --pool cpu            # on a machine with the raw data: picks up build-corpus
    gptflow serve [--config pipelines.yaml]    # or: one process on this machine runs them all, no worker needed
    gptflow run pretrain-gpt2/shakespeare-char-cpu

Deployments point at the flows by module path (flows.pretrain.pretrain_gpt2, ...), so a worker needs gptflow
installed in its Python environment, and their config_path parameter at this pipelines.yaml (by absolute path:
on several machines, the same path through a checkout or a shared file system). The Prefect server is the
profile's PREFECT_API_URL. A deployment with `active: false` has its cron schedule registered paused; each deploy
or serve sets it as pipelines.yaml says.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from gpt.config import ConfigError
from tasks.config import DeploymentConfig, PipelinesConfig, load_pipelines


def flow_functions() -> dict:
    from flows.build_corpus import build_corpus
    from flows.continue_training import continue_training
    from flows.finetune_chat import finetune_chat
    from flows.pretrain import pretrain_gpt2

    return {
        "build-corpus": build_corpus, "pretrain-gpt2": pretrain_gpt2, "continue-training": continue_training,
        "finetune-chat": finetune_chat,
    }  # fmt: skip


def runner_deployment(dep: DeploymentConfig, config: PipelinesConfig, config_path: Path, pooled: bool):
    """The Prefect RunnerDeployment of one entry of pipelines.yaml (for a work pool, or to serve)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    fn = flow_functions()[dep.flow]
    allowed = [p for p in inspect.signature(fn.fn).parameters if p != "config_path"]
    for key in dep.parameters:
        if key not in allowed:
            raise ConfigError(
                f"deployments {dep.flow}/{dep.name}: unknown parameter {key!r}; allowed: {', '.join(allowed)}"
            )
    pool = {"work_pool_name": dep.pool, "job_variables": {"working_dir": str(config.base)}} if pooled else {}
    return fn.to_deployment(
        name=dep.name,
        parameters={**dep.parameters, "config_path": str(config_path.resolve())},
        schedules=[Cron(dep.cron, timezone=dep.timezone, active=dep.active)] if dep.cron else None,
        description=dep.description or fn.description,
        tags=["gptflow"],
        entrypoint_type=EntrypointType.MODULE_PATH,
        **pool,
    )


def ensure_work_pools(names: set[str]) -> list[str]:
    """Create the process work pools that are missing; returns the ones created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    created = []
    with get_client(sync_client=True) as client:
        for name in sorted(names):
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                template = ProcessWorker.get_default_base_job_template()
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                created.append(name)
    return created


def deploy(config_path: Path) -> list[str]:
    """Register every deployment of pipelines.yaml; returns their `flow/name`s."""
    config = load_pipelines(config_path)
    deployments = [(dep, runner_deployment(dep, config, config_path, pooled=True)) for dep in config.deployments]
    for pool in ensure_work_pools({dep.pool for dep in config.deployments}):
        print(f"created work pool {pool!r} (process)")
    names = []
    for dep, runner in deployments:
        runner.apply(work_pool_name=dep.pool)
        schedule = f", {dep.cron} {dep.timezone}{'' if dep.active else ', paused'}" if dep.cron else ""
        print(f"deployed {dep.flow}/{dep.name} (work pool {dep.pool}{schedule})")
        names.append(f"{dep.flow}/{dep.name}")
    return names


def serve(config_path: Path) -> None:
    """Serve every deployment of pipelines.yaml from this process until interrupted."""
    from prefect import serve as prefect_serve

    config = load_pipelines(config_path)
    prefect_serve(*[runner_deployment(dep, config, config_path, pooled=False) for dep in config.deployments])


def _config_path(argv: list[str], command: str) -> Path:
    parser = argparse.ArgumentParser(prog=f"gptflow {command}", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines.yaml", help="path of pipelines.yaml")
    return Path(parser.parse_args(argv).config)


def deploy_main(argv: list[str]) -> int:
    names = deploy(_config_path(argv, "deploy"))
    print(f"{len(names)} deployments; start one with: gptflow run {names[0]}" if names else "")
    return 0


def serve_main(argv: list[str]) -> int:
    serve(_config_path(argv, "serve"))
    return 0
