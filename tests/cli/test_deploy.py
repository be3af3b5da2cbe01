"""The shipped nightly deployment's schedule: registered paused by `gptflow deploy` on a real Prefect server (as
`gptflow serve` registers it, through the same RunnerDeployment), turned on with the Prefect commands README gives,
paused again by the next deploy since pipelines.yaml says so; `active: false` needs a cron to pause."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from servers import free_port, stack_server

from cli.deploy import deploy
from gpt.config import ConfigError
from tasks.config import load_pipelines

PREFECT = str(Path(sys.executable).parent / "prefect")


def test_active_false_needs_a_cron_schedule_to_pause(tmp_path):
    data = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))
    data["deployments"] = [{"name": "zh", "flow": "build-corpus", "parameters": {"dataset": "zh"}, "active": False}]
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="active: false pauses a cron schedule, and this deployment has no cron"):
        load_pipelines(path)


def test_the_shipped_nightly_schedule_starts_paused():
    (nightly,) = [d for d in load_pipelines(REPO / "pipelines.yaml").deployments if d.name == "nightly"]
    assert nightly.cron and not nightly.active


@pytest.mark.slow
def test_deploy_registers_the_nightly_paused_and_the_readme_commands_resume_it(tmp_path, capsys):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server = stack_server("prefect", tmp_path, free_port(), base | {"PREFECT_HOME": str(tmp_path / "server")})
    server.start()
    api = server.health.removesuffix("/health")
    env = base | {"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "client")}
    try:
        with temporary_settings({PREFECT_API_URL: api}), SyncPrefectClient(api) as client:
            deploy(REPO / "pipelines.yaml")
            assert "deployed continue-training/nightly (work pool gpu, 0 2 * * * Asia/Shanghai, paused)" in (
                capsys.readouterr().out
            )
            (schedule,) = client.read_deployment_by_name("continue-training/nightly").schedules
            assert not schedule.active and schedule.schedule.cron == "0 2 * * *"

            listed = subprocess.run(
                [PREFECT, "deployment", "schedule", "ls", "continue-training/nightly"], env=env, capture_output=True,
                text=True, timeout=60,
            )  # fmt: skip
            assert re.findall(r"[0-9a-f-]{36}", listed.stdout) == [str(schedule.id)], listed.stdout + listed.stderr
            resume = [PREFECT, "deployment", "schedule", "resume", "continue-training/nightly", str(schedule.id)]
            resumed = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=60)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            assert client.read_deployment_by_name("continue-training/nightly").schedules[0].active

            deploy(REPO / "pipelines.yaml")  # pipelines.yaml wins again
            assert not client.read_deployment_by_name("continue-training/nightly").schedules[0].active
    finally:
        server.stop()
