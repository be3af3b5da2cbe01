"""pretrain-gpt2 and continue-training through their deployments, against a real Prefect server, real process
workers and a real MLflow server, all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import SHAKESPEARE
from mlflow.tracking import MlflowClient
from servers import BIN, Server, free_port, prefect_worker, stack_server

pytestmark = pytest.mark.slow
MODEL = "gptflow-tiny"
LONG = ["--max_iters=100000", "--eval_interval=100", "--ckpt_interval=100"]  # runs until stopped
EVAL_CHARS = 20_000


@dataclass
class Stack:
    folder: Path
    env: dict[str, str]
    api: str
    mlflow: Server
    mlflow_uri: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.mlflow_uri, registry_uri=self.mlflow_uri)

    def prefect(self, *args: str, timeout: float = 180) -> str:
        out = subprocess.run(
            [str(BIN / "prefect"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def start(self, deployment: str, **params) -> str:
        flags = [x for k, v in params.items() for x in ("-p", f"{k}={json.dumps(v)}")]
        out = self.prefect("deployment", "run", deployment, *flags)
        return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)

    def get(self, path: str, body: dict | None = None) -> dict | list:
        """GET `path` of the Prefect API, or POST `body` to it (its filters, with the CSRF token the server asks
        for)."""
        headers = {"Content-Type": "application/json"}
        if body is not None:
            token = self.get("/csrf-token?client=tests")["token"]
            headers |= {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": "tests"}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api}{path}", data, headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait(self, flow_run: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get(f"/flow_runs/{flow_run}")["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                return state
            time.sleep(1)
        raise AssertionError(f"flow run {flow_run} still {state} after {timeout} s; logs in {self.folder}")

    def mlflow_run(self, flow_run: str, timeout: float = 120):
        def find():
            experiment = self.client.get_experiment_by_name("tests")
            if experiment is not None:
                query = f"tags.`prefect.flow_run_id` = '{flow_run}'"
                return next(iter(self.client.search_runs([experiment.experiment_id], query)), None)

        return wait_for(find, timeout, f"the MLflow run of flow run {flow_run}")


def pipelines(folder: Path, mlflow_uri: str) -> Path:
    tiny = {
        "device": "cpu", "cpu_threads": 1, "batch_size": 8, "max_iters": 200, "lr": 3e-3, "min_lr": 3e-4,
        "warmup_iters": 10, "eval_interval": 50, "eval_iters": 4, "eval_chars": EVAL_CHARS, "log_interval": 1,
        "ckpt_interval": 50, "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.0},
    }  # fmt: skip
    data = {
        "data_root": "data",
        "workers": 1,
        "corpora": {"tinyshakespeare": {"format": "text", "kind": "english", "sources": [{"path": str(SHAKESPEARE)}]}},
        "datasets": {
            "shakespeare": {
                "corpora": ["tinyshakespeare"],
                "dedupe": {"exact": False, "near": False},
                "tokenize": {"tokenizer": "char"},
            },
            "shakespeare-gpt2": {
                "corpora": ["tinyshakespeare"],
                "dedupe": {"exact": False, "near": False},
                "tokenize": {"tokenizer": "gpt2"},
            },
        },
        "tracking": {
            "uri": mlflow_uri,
            "experiment": "tests",
            "registered_model": "gptflow-{preset}",
            "system_metrics_seconds": 1,
            "outage_seconds": 5,
        },
        "training": {
            "tiny": {
                "dataset": "shakespeare",
                "settings": tiny,
                "sample": {"prompt": "ROMEO:", "max_new_tokens": 40, "num_samples": 1},
                "continued": {"steps": 20, "lr": 3e-4},
            },
            "tiny-gpt2": {  # another tokenizer, registered under the same name: it competes for champion
                "dataset": "shakespeare-gpt2",
                "settings": {**tiny, "max_iters": 30, "eval_interval": 30, "ckpt_interval": 30},
                "registered_model": MODEL,
                "sample": {"prompt": "ROMEO:", "max_new_tokens": 10, "num_samples": 1},
            },
        },
        "deployments": [
            {"name": "tiny", "flow": "pretrain-gpt2", "parameters": {"preset": "tiny"}},
            {"name": "tiny-gpt2", "flow": "pretrain-gpt2", "parameters": {"preset": "tiny-gpt2"}},
            {
                "name": "shakespeare",
                "flow": "build-corpus",
                "parameters": {"dataset": "shakespeare"},
                "work_pool": "gpu",
            },
            {
                "name": "nightly",
                "flow": "continue-training",
                "parameters": {"preset": "tiny"},
                "cron": "0 2 * * *",
                "timezone": "Asia/Shanghai",
            },
        ],
    }
    path = folder / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    prefect_port, mlflow_port = free_port(), free_port()
    api, mlflow_uri = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",  # the metrics thread retries by itself; fail fast
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
        "GPTFLOW_CACHE": str(folder / "cache"),
    }
    env.pop("GPTFLOW_MIRROR", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    servers = [stack_server("prefect", folder, prefect_port, env), stack_server("mlflow", folder, mlflow_port, env)]
    workers = []
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.start(), servers))
        config = pipelines(folder, mlflow_uri)
        deployed = subprocess.run(
            [str(BIN / "gptflow"), "deploy", "--config", str(config)], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        workers = [prefect_worker(folder, "gpu", f"gpu-{i}", env) for i in range(2)]
        yield Stack(folder, env, api, servers[1], mlflow_uri)
    finally:
        for worker in workers:
            _stop_group(worker)
        for server in servers:
            server.stop()


def _stop_group(proc: subprocess.Popen) -> None:
    for sig in (15, 9):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=15)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def training_processes(config_file: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if config_file in (p.info["cmdline"] or []):
            found.append(p)
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_deploy_then_run_registers_a_version(stack):
    assert stack.wait(stack.start("build-corpus/shakespeare")) == "COMPLETED"
    assert list((stack.folder / "data" / "tokens").glob("shakespeare-char-*/manifest.json"))
    flow_run = stack.start("pretrain-gpt2/tiny")
    assert stack.wait(flow_run) == "COMPLETED"
    client = stack.client
    run = client.get_run(stack.mlflow_run(flow_run).info.run_id)  # with its inputs and outputs
    assert run.info.status == "FINISHED"
    assert run.data.params["max_iters"] == "200" and run.data.params["model.n_layer"] == "2"
    assert run.data.tags["dataset.tokenizer"] == "char" and len(run.data.tags["dataset.fingerprint"]) == 16
    assert len(run.data.tags["dataset.manifest_sha256"]) == 64 and run.data.tags["gptflow.code_version"]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, 201))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 50, 100, 150, 200]
    (output,) = run.outputs.model_outputs  # the registered checkpoint, an MLflow model of the run
    model_files = {a.path for a in client.list_logged_model_artifacts(output.model_id, "data/checkpoint")}
    assert {f"data/checkpoint/{f}" for f in ("model.safetensors", "meta.json", "tokenizer.json")} <= model_files
    inputs = {entry.dataset.name: entry.dataset for entry in run.inputs.dataset_inputs}
    assert set(inputs) == {"shakespeare-char", "shakespeare-char-eval"}
    trained_on, evaluated_on = inputs["shakespeare-char"], inputs["shakespeare-char-eval"]
    assert run.data.tags["dataset.manifest_sha256"].startswith(trained_on.digest)
    assert json.loads(trained_on.profile)["corpora"]["tinyshakespeare"]["documents"] == 2  # one text, cut in two
    token_ids = {"type": "integer", "name": "token_id", "required": True}
    assert json.loads(trained_on.schema) == {"mlflow_colspec": [token_ids]}  # a schema MLflow's UI shows
    assert_model_page_holds_its_metrics_params_and_datasets(client, run, output.model_id, trained_on, evaluated_on)
    assert_runs_link_each_other(stack, flow_run, run)
    assert client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
    assert client.list_artifacts(run.info.run_id, "samples")
    during = {a.path.rsplit("/", 1)[1] for a in client.list_artifacts(run.info.run_id, "samples/training")}
    assert during == {f"step-{n:07d}.txt" for n in (0, 50, 100, 150, 200)}  # one at each evaluation, in step order
    latest = client.get_model_version_by_alias(MODEL, "latest")  # MLflow's name for the newest version
    assert latest.run_id == run.info.run_id and float(latest.tags["val_loss"]) < 3.5
    assert evaluated_on.digest == latest.tags["eval_set"]
    assert client.get_model_version_by_alias(MODEL, "champion").version == latest.version
    assert latest.description.startswith("Preset `tiny`, step ") and "ROMEO:" in latest.description

    sampled = subprocess.run(
        [str(BIN / "gptflow"), "sample", "--model", f"models:/{MODEL}@champion", "--config",
         str(stack.folder / "pipelines.yaml"), "--start", "ROMEO:", "--max-new-tokens", "30"],
        env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("ROMEO:") and len(sampled.stdout) > 30


def assert_model_page_holds_its_metrics_params_and_datasets(client, run, model_id: str, trained_on, evaluated_on):
    """MLflow's model page lists the logged model's metrics, parameters and the datasets its metrics name."""
    model = client.get_logged_model(model_id)
    assert model.model_type == "gpt2" and model.tags["mlflow.user"] == run.data.tags["mlflow.user"]  # "Created by"
    assert model.tags["mlflow.source.name"] == run.data.tags["mlflow.source.name"]  # "Logged from"
    vocab = model.params["model.vocab_size"]
    assert vocab == run.data.params["model.vocab_size"] and int(vocab) % 64 == 0 and int(vocab) > 0
    assert model.params["model.n_layer"] == "2" and model.params["max_iters"] == "200"
    metrics = {m.key: m for m in model.metrics}  # the training's own points at the checkpoint's step
    assert set(metrics) == {"train_loss", "val_loss", "val_bpc", "val_bits_per_byte", "val_bpc/tinyshakespeare"}
    assert int(model.params["step"]) == metrics["val_loss"].step
    for key, metric in metrics.items():
        dataset = trained_on if key.endswith("_loss") else evaluated_on
        assert (metric.dataset_name, metric.dataset_digest) == (dataset.name, dataset.digest), key
    assert metrics["val_bpc"].value == pytest.approx(float(run.data.tags["gptflow.val_bpc"]), rel=1e-4)


def assert_runs_link_each_other(stack: Stack, flow_run: str, run) -> None:
    """The MLflow run names its flow run as source and links to its page; the flow run links to the MLflow run, has
    its training as a task and its progress as an artifact."""
    tags = run.data.tags
    name = stack.get(f"/flow_runs/{flow_run}")["name"]
    assert tags["mlflow.source.type"] == "JOB" and tags["mlflow.source.name"] == f"pretrain-gpt2 flow run {name}"
    assert tags["mlflow.user"] and tags["prefect.flow_run_url"] == f"{stack.api[:-4]}/runs/flow-run/{flow_run}"
    artifacts = stack.get("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run]}}})
    by_key = {artifact["key"]: artifact for artifact in artifacts}
    page = f"{stack.mlflow_uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    link = by_key[f"mlflow-run-{run.info.run_name}"]["data"]  # a link artifact: markdown
    assert link == f"[MLflow run {run.info.run_name}]({page}?workflowType=machine_learning)"
    progress = by_key[f"training-{run.info.run_name}"]
    assert progress["type"] == "progress" and progress["data"] == 100.0
    assert (
        progress["description"].startswith("step 200 of 200, loss ") and "tokens/s, elapsed " in progress["description"]
    )
    task_runs = stack.get("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run]}}})
    assert {f"train-{run.info.run_name}", f"publish-{run.info.run_name}"} <= {t["name"] for t in task_runs}


def test_nightly_deployment_carries_its_cron_schedule(stack):
    deployment = stack.get("/deployments/name/continue-training/nightly")
    (schedule,) = [s["schedule"] for s in deployment["schedules"]]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "Asia/Shanghai"
    assert deployment["work_pool_name"] == "gpu"


def test_continue_training_carries_the_champion_on(stack):
    client = stack.client
    parent = client.get_model_version_by_alias(MODEL, "champion")
    parent_losses = client.get_metric_history(parent.run_id, "loss")
    flow_run = stack.start("continue-training/nightly")
    assert stack.wait(flow_run) == "COMPLETED"
    run = stack.mlflow_run(flow_run)
    newest = client.get_model_version_by_alias(MODEL, "latest")
    assert int(newest.version) == int(parent.version) + 1 and newest.tags["parent_version"] == parent.version
    first = min(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    last_parent = max(parent_losses, key=lambda m: m.step).value
    first_parent = min(parent_losses, key=lambda m: m.step).value
    assert first.step == 201 and abs(first.value - last_parent) < 0.25 < first_parent - first.value  # steps go on
    assert run.data.tags["gptflow.new_documents"] == "0" and run.data.tags["gptflow.cursor_goes_on"] == "True"
    assert run.data.params["lr"] == "0.0003" and run.data.params["lr_schedule"] == "constant"
    assert float(run.data.tags["gptflow.parent_val_bpc"]) == pytest.approx(float(parent.tags["val_bpc"]), rel=1e-4)
    (parent_model,) = client.get_run(parent.run_id).outputs.model_outputs
    inputs = client.get_run(run.info.run_id).inputs  # the night's lineage: the model it continues
    assert [m.model_id for m in inputs.model_inputs] == [parent_model.model_id]


def test_a_model_of_another_tokenizer_competes_on_bits_per_character(stack):
    client = stack.client
    champion = client.get_model_version_by_alias(MODEL, "champion")
    flow_run = stack.start("pretrain-gpt2/tiny-gpt2")
    assert stack.wait(flow_run) == "COMPLETED"
    tags = stack.mlflow_run(flow_run).data.tags
    newest = client.get_model_version_by_alias(MODEL, "latest")
    # the same evaluation text as the char dataset's: the corpus is one document, split by characters
    assert newest.tags["eval_set"] == tags["gptflow.eval_set"] == champion.tags["eval_set"]

    evaluated = subprocess.run(
        [str(BIN / "gptflow"), "evaluate", f"models:/{MODEL}/{champion.version}", f"models:/{MODEL}/latest",
         "--dataset", "shakespeare-gpt2", "--config", str(stack.folder / "pipelines.yaml"),
         "--chars", str(EVAL_CHARS), "--json"],
        env=stack.env, cwd=stack.folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    char, gpt2 = (json.loads(line) for line in evaluated.stdout.splitlines())
    assert char["tokenizer"].startswith("char") and char["tokens_per_char"] == 1.0
    assert gpt2["tokenizer"] == "gpt2 50,257" and gpt2["tokens_per_char"] < 0.5
    assert gpt2["val_bpc"] == pytest.approx(float(newest.tags["val_bpc"]), rel=1e-4)
    # the char champion, scored with its own tokenizer on the gpt2 dataset's text, against the gpt2 model
    winner = newest.version if gpt2["val_bpc"] < char["val_bpc"] else champion.version
    assert client.get_model_version_by_alias(MODEL, "champion").version == winner == tags["gptflow.champion"]
    assert float(tags["gptflow.champion_val_bpc"]) == pytest.approx(min(char["val_bpc"], gpt2["val_bpc"]), rel=1e-4)


def test_metrics_survive_an_mlflow_outage(stack):
    flow_run = stack.start("pretrain-gpt2/tiny", overrides=["--max_iters=3000", "--eval_interval=500"])
    run = stack.mlflow_run(flow_run)
    client = stack.client
    wait_for(lambda: client.get_metric_history(run.info.run_id, "loss"), 120, "the first metric points")
    stack.mlflow.stop()
    time.sleep(8)  # training goes on; the points wait
    stack.mlflow.start()
    assert stack.wait(flow_run) == "COMPLETED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, 3001))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == list(range(0, 3001, 500))
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_training_whose_tracking_server_stays_down_ends_and_is_published_later(stack):
    flow_run = stack.start("pretrain-gpt2/tiny", overrides=["--max_iters=400", "--eval_interval=200"])
    run = stack.mlflow_run(flow_run)
    client = stack.client
    wait_for(lambda: client.get_metric_history(run.info.run_id, "loss"), 120, "the first metric points")
    stack.mlflow.stop()
    stopped = time.monotonic()
    assert stack.wait(flow_run) == "FAILED"
    assert time.monotonic() - stopped < 120  # not MLflow's minutes of retries per request
    out_dir = run.data.tags["gptflow.out_dir"]
    message = stack.get(f"/flow_runs/{flow_run}")["state"]["message"]
    assert "training finished, but MLflow at" in message
    assert f"publish the run with: gptflow publish {out_dir}" in message
    stack.mlflow.start()
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # nothing told it otherwise
    gptflow = [str(BIN / "gptflow"), "publish", out_dir]
    published = subprocess.run(gptflow, env=stack.env, capture_output=True, text=True, timeout=300)
    assert published.returncode == 0, published.stderr
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(1, 401))
    assert client.get_model_version_by_alias(MODEL, "latest").run_id == run.info.run_id
    during = {a.path.rsplit("/", 1)[1] for a in client.list_artifacts(run.info.run_id, "samples/training")}
    assert during == {"step-0000000.txt", "step-0000200.txt", "step-0000400.txt"}
    again = subprocess.run(gptflow, env=stack.env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.startswith(f"error: {out_dir} is published already, as version ")


def test_a_training_crash_fails_both_runs_and_keeps_the_checkpoint(stack):
    flow_run = stack.start("pretrain-gpt2/tiny", overrides=LONG)
    run = stack.mlflow_run(flow_run)
    out_dir = Path(run.data.tags["gptflow.out_dir"])
    wait_for(lambda: list(out_dir.glob("step-*/COMPLETE")), 120, "a checkpoint")
    (worker,) = [p for p in training_processes(str(out_dir / "config.json")) if "gpt.train" in p.cmdline()[:4]]
    worker.kill()
    assert stack.wait(flow_run) == "FAILED"
    assert stack.client.get_run(run.info.run_id).info.status == "FAILED"
    assert list(out_dir.glob("step-*/COMPLETE"))
    assert stack.client.list_artifacts(run.info.run_id, "last-checkpoint")
    assert not training_processes(str(out_dir / "config.json"))


def test_cancelling_leaves_no_training_process(stack):
    flow_run = stack.start("pretrain-gpt2/tiny", overrides=LONG)
    run = stack.mlflow_run(flow_run)
    config_file = str(Path(run.data.tags["gptflow.out_dir"]) / "config.json")
    wait_for(lambda: len(training_processes(config_file)) >= 2, 120, "torchrun and its worker")
    stack.prefect("flow-run", "cancel", flow_run)
    assert stack.wait(flow_run, timeout=120) == "CANCELLED"
    wait_for(lambda: not training_processes(config_file), 10, "no torchrun process left")
    assert stack.client.get_run(run.info.run_id).info.status == "KILLED"


def test_two_nodes_join_through_the_deployment(stack):
    flow_run = stack.start(
        "pretrain-gpt2/tiny", nnodes=2, rdzv_endpoint=f"127.0.0.1:{free_port()}",
        overrides=["--grad_accum=2", "--max_iters=40", "--eval_interval=20", "--ckpt_interval=20"],
    )  # fmt: skip
    assert stack.wait(flow_run, timeout=400) == "COMPLETED"
    run = stack.mlflow_run(flow_run)
    assert run.info.status == "FINISHED" and run.data.tags["gptflow.nnodes"] == "2"
    assert sorted(m.step for m in stack.client.get_metric_history(run.info.run_id, "loss")) == list(range(1, 41))
    assert stack.client.get_model_version_by_alias(MODEL, "latest").run_id == run.info.run_id
    nodes = Path(run.data.tags["gptflow.out_dir"])
    assert (nodes / "node-0" / "config.json").is_file() and (nodes / "node-1" / "config.json").is_file()
    assert len(list(nodes.glob("node-*/metrics.jsonl"))) == 1  # the node that held rank 0
