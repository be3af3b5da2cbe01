"""What a flow run leaves in its state and its logs (read back from Prefect's test server) when it ends on a wrong
input: one line, no traceback, no retry for a configuration error; and that a task whose inputs cannot be hashed
logs no cache-key traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, SHAKESPEARE, run_logs, train, write_pipelines
from mlflow.entities.model_registry import ModelVersion
from mlflow.protos.model_registry_pb2 import ModelVersion as ModelVersionProto
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments.runner import EntrypointType
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from cli.main import main
from flows.build_corpus import build_corpus
from flows.continue_training import continue_training
from flows.pretrain import pretrain_gpt2
from gpt.checkpoint import resolve_checkpoint
from gpt.config import ConfigError
from tasks.failures import fails_in_one_line
from tasks.training.nightly import Night, night_data_task
from tasks.training.run import TrainingFailed

PRESET_ERROR = "unknown training preset 'tin' (did you mean 'tiny'?); training presets of pipelines.yaml: tiny"
NO_VERSION = (
    "registered model 'gptflow-untrained' has no version at alias 'champion'; train one first: "
    "gptflow pretrain --preset tiny"  # pipelines.yaml has no pretrain-gpt2 deployment of it
)


@pytest.fixture(scope="module")
def prefect():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> str:
    """pipelines.yaml with datasets plays and poems and preset tiny, whose registered model has no version."""
    plays = {"format": "text", "kind": "english", "sources": [{"path": str(SHAKESPEARE)}]}
    return write_pipelines(
        tmp_path_factory.mktemp("run-logs"),
        {
            "corpora": {"plays": plays},
            "datasets": {"plays": {"corpora": ["plays"]}, "poems": {"corpora": ["plays"]}},
            "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "run-logs"},
            "training": {"tiny": {"dataset": "plays", "registered_model": "gptflow-untrained"}},
        },
    )


def assert_failed_in_one_line(state, message: str) -> None:
    """The run failed once, before any task, with `message` as its state message and its one ERROR record."""
    assert state.is_failed() and state.message == message
    run_id = state.state_details.flow_run_id
    logs = run_logs(run_id)
    assert [log.message for log in logs if log.level >= logging.ERROR] == [message]
    assert not any("Traceback" in log.message for log in logs)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).run_count == 1
        assert client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown dataset 'nope'; datasets of pipelines.yaml: plays, poems"),
        ("pooms", "unknown dataset 'pooms' (did you mean 'poems'?); datasets of pipelines.yaml: plays, poems"),
    ],
)
def test_an_unknown_dataset_fails_the_run_in_one_line_before_any_task(prefect, config_path, name, message):
    assert_failed_in_one_line(build_corpus(name, config_path=config_path, return_state=True), message)


@pytest.mark.parametrize("training_flow", [pretrain_gpt2, continue_training])
def test_an_unknown_preset_fails_the_run_in_one_line_and_is_not_retried(prefect, config_path, training_flow):
    assert_failed_in_one_line(training_flow("tin", config_path=config_path, return_state=True), PRESET_ERROR)


def test_a_deployments_run_fails_in_one_line_too(prefect, config_path, tmp_path):
    """Run as a worker or `gptflow serve` runs it, `python -m prefect.engine` in a process of its own, whose engine
    would log the run's error once more with its traceback."""
    deployment = build_corpus.to_deployment(
        name="run-logs", parameters={"config_path": config_path}, entrypoint_type=EntrypointType.MODULE_PATH
    )
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment.apply(), parameters={"dataset": "nope"})
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path)}
    engine = [sys.executable, "-m", "prefect.engine", str(run.id)]
    out = subprocess.run(engine, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stdout + out.stderr
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert_failed_in_one_line(state, "unknown dataset 'nope'; datasets of pipelines.yaml: plays, poems")


def test_called_in_process_the_flow_raises_the_configuration_error(prefect, config_path):
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        build_corpus("nope", config_path=config_path)
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        build_corpus.fn("nope", config_path=config_path)  # outside a flow run as well


def test_continue_training_without_a_registered_version_fails_once_saying_what_to_train(prefect, config_path):
    assert_failed_in_one_line(continue_training("tiny", config_path=config_path, return_state=True), NO_VERSION)


def test_the_command_ends_with_the_flows_one_line_and_status_2(prefect, config_path, capsys):
    assert main(["continue-training", "--preset", "tiny", "--config", config_path]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {NO_VERSION}"


def test_another_fixable_error_fails_in_one_line_and_keeps_the_flows_retries(prefect):
    attempts = []

    @flow(retries=1, retry_delay_seconds=0)
    @fails_in_one_line
    def night(crashes: int) -> int:
        attempts.append(crashes)
        if len(attempts) <= crashes:
            raise TrainingFailed("training exited with code 1 after 3 s; the last checkpoint is runs/x/step-20")
        return len(attempts)

    resumed = night(1, return_state=True)
    assert resumed.is_completed() and resumed.result() == 2
    attempts.clear()
    failed = night(2, return_state=True)
    assert failed.is_failed() and failed.message.startswith("training exited with code 1") and len(attempts) == 2
    logs = run_logs(failed.state_details.flow_run_id)
    assert [log.message for log in logs if log.level >= logging.ERROR] == [failed.message] * 2
    assert not any("Traceback" in log.message for log in logs)


def test_a_night_whose_parent_came_from_a_tracking_server_logs_no_cache_key_error(prefect, tiny, char_dataset):
    cfg, _ = tiny(max_iters=2, eval_interval=2, ckpt_interval=2)
    train(cfg)
    weights = resolve_checkpoint(cfg.out_dir)
    # as MLflow's REST store makes it: its aliases stay a protobuf list, which does not pickle
    parent = ModelVersion.from_proto(ModelVersionProto(name="gptflow-tiny", version="1", aliases=["champion"]))

    @flow(log_prints=True)  # as the flows
    def a_night(weights: str, dataset: str) -> bool:
        night = Night("tiny-night", Path(cfg.out_dir), parent, Path(weights))
        return night_data_task(night, Path(dataset)).fresh is None

    state = a_night(str(weights), str(char_dataset), return_state=True)
    assert state.is_completed() and state.result()  # the parent's own dataset: no new documents
    logs = run_logs(state.state_details.flow_run_id)
    assert any("night from version 1" in log.message for log in logs)  # the task's own lines are there
    assert not any("cache key" in log.message or log.level >= logging.ERROR for log in logs)
