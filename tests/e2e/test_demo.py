"""The main job end to end: `make demo` (gptflow up, build-corpus/demo and pretrain-gpt2/demo through the served
deployments, three poems sampled from the registered model, finetune-chat/demo-chat and one exchange with the chat
model) on free ports, what MLflow shows of the run and the version, the version served by `mlflow models serve`,
cross-origin writes refused by both servers, then `gptflow down`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from browser import browser_page, page_text
from helpers import REPO
from servers import free_port, model_server

from cli.stack import STACK_VAR
from gpt.shards import TokenDataset
from tasks.corpus.text.verse import verse_line_share, verse_lines
from tasks.training.launch import kill_marked, marked

DEMO_CORPORA = {
    "poetry-tang", "demo-wiki2019zh", "demo-news2016zh", "demo-thucnews", "demo-baike2018qa",
    "demo-webtext2019zh", "demo-translation2019zh",
}  # fmt: skip
STEPS = 1200  # the shipped recipe (gpt/presets/poetry-char-cpu.yaml), so that the samples are the demo's own
VERSE_FLOOR = 0.4
"""Share of the samples' lines (runs of Han characters) with 5 or 7 characters that the demo must reach: the Tang
poems' own share is 0.89 (0.7 counting their title and author lines); news prose, 0.06 (THUCNews); the recipe's
samples measured 0.80 (the 2019 recipe's, 0.66 to 0.71; BENCHMARKS.md)."""


def demo_config(folder: Path) -> Path:
    """The shipped pipelines.yaml with its data, runs and bundled demo files at absolute paths."""
    data = yaml.safe_load((REPO / "pipelines.yaml").read_text(encoding="utf-8"))
    data["data_root"], data["runs_dir"] = str(folder / "data"), str(folder / "runs")
    for corpus in data["corpora"].values():
        for source in corpus["sources"]:
            if source.get("path", "").startswith("demo/"):
                source["path"] = str(REPO / source["path"])
    path = folder / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def gptflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "gptflow"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def invoke(server, body: dict) -> list:
    """POST /invocations of an `mlflow models serve` server: its predictions."""
    url = server.health.removesuffix("/ping") + "/invocations"
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["predictions"]


def answer(url: str, method: str, headers: dict, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def assert_other_origins_cannot_write(prefect: str, mlflow: str) -> None:
    """A page of another origin gets no preflight for either server, and the writes a browser sends without one (a
    text/plain POST) are refused; the servers' own UIs are allowed."""
    evil = {"Origin": "http://evil.example"}
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for write in (f"{prefect}/api/flows/", f"{mlflow}/api/2.0/mlflow/experiments/create"):
        status, headers = answer(write, "OPTIONS", evil | preflight)
        assert status == 400 and "access-control-allow-origin" not in {k.lower() for k in headers}, (write, status)
        own = write.split("/api/")[0]
        status, headers = answer(write, "OPTIONS", {"Origin": own} | preflight)
        assert status == 200 and headers.get("access-control-allow-origin") == own
        status, _ = answer(write, "POST", evil | {"Content-Type": "text/plain"}, b'{"name": "from-another-page"}')
        assert status == 403, (write, status)


def assert_what_mlflow_shows(client, run, version, dataset: Path) -> None:
    """A model-training experiment; the run's dataset inputs and system metrics; the version's logged model (an
    MLflow model with a signature) and its description."""
    run = client.get_run(run.info.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    inputs = {entry.dataset.name: entry.dataset for entry in run.inputs.dataset_inputs}
    assert set(inputs) == {"demo-char", "demo-char-eval"}
    profile = json.loads(inputs["demo-char"].profile)
    assert inputs["demo-char"].source_type == "local"
    assert json.loads(inputs["demo-char"].source)["uri"] == str(dataset.resolve())
    assert set(profile["corpora"]) == DEMO_CORPORA and profile["corpora"]["poetry-tang"]["documents"] > 40_000
    assert client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert version.source == logged.artifact_location and logged.source_run_id == run.info.run_id
    assert "trained on dataset `demo-char`" in version.description and "val_bpc" in version.description


def assert_the_uis_in_a_fresh_browser(prefect: str, experiment_page: str, run, model_id: str) -> None:
    """What a new user's browser shows: Prefect's UI on its non-default port talks to its own server; the MLflow
    address `make demo` prints opens the experiment on model training (runs and models, not GenAI's traces); the
    run names its source and user; the model page lists its metrics with their datasets, and its parameters."""
    with browser_page() as page:
        settings = page_text(page, f"{prefect}/settings", "api_url")
        assert f'"api_url": "{prefect}/api"' in settings and "Can't connect" not in settings
        runs = page_text(page, experiment_page, run.info.run_name)
        assert "Models" in runs and "Observability" not in runs, runs[:500]
        run_page = experiment_page.replace("?", f"/runs/{run.info.run_id}?")
        overview = page_text(page, run_page, "pretrain-gpt2 flow run")
        assert f"Created by\n{run.data.tags['mlflow.user']}" in overview
        model = page_text(page, experiment_page.replace("?", f"/models/{model_id}?"), "val_bpc")
        assert "val_bpc/poetry-tang" in model and "demo-char-eval" in model, model[:2000]
        assert "Parameters (0)" not in model and "model.vocab_size" in model


def assert_the_chat_model(client, run, parent, out: str) -> None:
    """The demo model fine-tuned on poems asked for by their titles: registered as its own model with its parent,
    its replies' bits per character lower than the parent's at step 0, and its reply to 春望 a poem."""
    (version,) = client.search_model_versions("name = 'gptflow-demo-chat'")
    assert version.run_id == run.info.run_id and version.tags["parent_model"] == "gptflow-demo"
    assert version.tags["parent_version"] == parent.version
    bpc = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val_bpc/poem"), key=lambda m: m.step)]
    assert len(bpc) >= 2 and bpc[-1] < bpc[0] - 0.5, bpc
    reply = out[out.index("\n> 春望\n") + len("\n> 春望\n") : out.rindex("\nPrefect UI")].strip()  # up printed one too
    assert verse_lines(reply) and verse_line_share(reply) >= 0.75, reply


@pytest.mark.slow
def test_make_demo_builds_trains_registers_samples_and_down_leaves_nothing(tmp_path):
    from mlflow import MlflowClient

    config, home = demo_config(tmp_path), tmp_path / ".gptflow"
    ports = {"GPTFLOW_PREFECT_PORT": str(free_port()), "GPTFLOW_MLFLOW_PORT": str(free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MAKE", "MFLAGS"))}
    env |= ports | {"GPTFLOW_CACHE": str(tmp_path / "cache")}
    venv = Path(sys.executable).parent.parent
    stack_args = ["--config", str(config), "--home", str(home)]
    try:
        demo = subprocess.run(
            ["make", "--no-print-directory", "demo", f"VENV={venv}", f"CONFIG={config}", f"GPTFLOW_HOME={home}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        out = demo.stdout
        assert demo.returncode == 0, out[-6000:] + demo.stderr[-3000:]
        ended = re.findall(r"^([\w-]+/demo(?:-chat)?): flow run '[\w-]+' Completed in ", out, re.M)
        assert ended == ["build-corpus/demo", "pretrain-gpt2/demo", "finetune-chat/demo-chat"]
        assert f"step {STEPS}: train_loss" in out  # the training's log lines reach `gptflow run`
        assert "NVML" not in out and "entered state" not in out  # what a person reads, not Prefect's events
        prefect = f"http://127.0.0.1:{ports['GPTFLOW_PREFECT_PORT']}"
        mlflow_uri = f"http://127.0.0.1:{ports['GPTFLOW_MLFLOW_PORT']}"
        client = MlflowClient(mlflow_uri)
        experiment = client.get_experiment_by_name("gptflow").experiment_id
        experiment_page = f"{mlflow_uri}/#/experiments/{experiment}?workflowType=machine_learning"
        assert out.endswith(f"Prefect UI  {prefect}\nMLflow UI   {experiment_page}\nStop with   make down\n")

        # the shards: every corpus of the demo dataset in train, a val split, each shard whole
        (folder,) = (tmp_path / "data" / "tokens").glob("demo-char-*")
        dataset = TokenDataset.open(folder, verify=True)
        per_corpus = dataset.manifest["tokens_per_corpus"]
        assert set(per_corpus) == DEMO_CORPORA
        assert all(counts["train"] > 0 for counts in per_corpus.values())
        val_tokens = sum(shard["tokens"] for shard in dataset.manifest["splits"]["val"])
        assert sum(counts["val"] for counts in per_corpus.values()) == val_tokens > 0

        # the MLflow run and the registered model, on the stack's MLflow server
        run, chat_run = sorted(client.search_runs([experiment]), key=lambda r: r.info.start_time)
        assert run.info.status == "FINISHED"
        assert run.data.params["max_iters"] == str(STEPS)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")][-1] == STEPS
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"samples"}
        (version,) = client.search_model_versions("name = 'gptflow-demo'")
        assert version.run_id == run.info.run_id
        assert client.get_model_version_by_alias("gptflow-demo", "champion").version == version.version
        assert_what_mlflow_shows(client, run, version, folder)
        assert f"MLflow run {run.info.run_name}: {experiment_page.replace('?', f'/runs/{run.info.run_id}?')}" in out
        (output,) = client.get_run(run.info.run_id).outputs.model_outputs
        assert_the_uis_in_a_fresh_browser(prefect, experiment_page, run, output.model_id)

        # three poems, sampled from that version after `make demo` downloaded it: Chinese, in lines of 5 or 7
        start = out.index("春望\n杜甫")
        end = out.rindex("\n", start, out.index("run finetune-chat/demo-chat", start))  # make echoes the next command
        samples = out[start:end].split("---------------")
        assert len(samples) == 3
        assert sum(map(verse_line_share, samples)) / 3 >= VERSE_FLOOR, samples
        assert all(sum(map(len, verse_lines(s))) > 0.6 * len(s.strip()) for s in samples), samples
        assert (tmp_path / "cache" / "models" / "gptflow-demo" / f"1-{run.info.run_id}" / "MLmodel").is_file()

        # the registered version served over REST by MLflow, answering a Chinese prompt in Chinese
        served = model_server("models:/gptflow-demo@champion", mlflow_uri, tmp_path, env)
        try:
            served.start()
            poems = invoke(served, {"inputs": ["春望\n杜甫\n"], "params": {"max_new_tokens": 48, "seed": 1}})
        finally:
            served.stop()
        assert len(poems) == 1 and verse_line_share(poems[0]) > 0, poems

        assert_the_chat_model(client, chat_run, version, out)

        # a second `up` changes nothing
        pids = {p: json.loads((home / "run" / f"{p}.json").read_text())["pid"] for p in ("prefect", "mlflow", "serve")}
        again = gptflow("up", *stack_args, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("already running") == 3
        assert {p: json.loads((home / "run" / f"{p}.json").read_text())["pid"] for p in pids} == pids
        assert gptflow("status", *stack_args, env=env).returncode == 0
        assert_other_origins_cannot_write(prefect, mlflow_uri)
    finally:
        stopped = gptflow("down", *stack_args, env=env)
        leftover = marked(str(home), STACK_VAR)
        kill_marked(str(home), STACK_VAR)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not leftover, [p.cmdline() for p in leftover]
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert gptflow("status", *stack_args, env=env).returncode == 1
