import logging
import shutil
import sys
import textwrap
import time

import psutil
import pytest

from tasks.training.launch import default_nproc_per_node, run_process, torchrun_command

WITHOUT_GPU = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")

# A parent that starts a child in a session of its own (as torchrun starts its workers), then prints and sleeps.
TREE = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print("child", child.pid, flush=True)
    for i in range(3):
        print("line", i, flush=True)
    time.sleep(600)
    """
)


def test_output_is_streamed_and_the_exit_code_kept():
    lines = []
    launch = run_process([sys.executable, "-c", "print('a'); print('b'); raise SystemExit(3)"], lines.append)
    assert lines == ["a", "b"] and launch.returncode == 3 and not launch.timed_out


def test_a_deadline_stops_the_whole_tree_even_a_child_in_its_own_session():
    lines = []
    started = time.monotonic()
    launch = run_process([sys.executable, "-c", TREE], lines.append, timeout=3, grace=2)
    assert launch.timed_out and time.monotonic() - started < 30
    child = int(next(line for line in lines if line.startswith("child")).split()[1])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert any("deadline" in line for line in lines)


def test_an_interrupted_caller_leaves_nothing_behind():
    seen = []

    def interrupt(line: str) -> None:
        seen.append(line)
        if line == "line 2":
            raise KeyboardInterrupt  # what a cancelled flow run's SIGTERM turns into

    with pytest.raises(KeyboardInterrupt):
        run_process([sys.executable, "-c", TREE], interrupt, grace=2)
    child = int(seen[0].split()[1])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_torchrun_commands():
    one = torchrun_command("cfg.json", 2)
    assert "--standalone" in one and one[-3:] == ["-m", "gpt.train", "cfg.json"]
    two = torchrun_command("cfg.json", 8, nnodes=2, rdzv_endpoint="10.0.0.1:29400", rdzv_id="abc")
    assert {"--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=10.0.0.1:29400", "--rdzv_id=abc"} <= set(two)
    with pytest.raises(ValueError, match="rendezvous endpoint"):
        torchrun_command("cfg.json", 8, nnodes=2)


def warnings_of_this_test(recwarn) -> list:
    """The warnings recorded, less the ResourceWarnings of other tests' objects that the collector freed meanwhile."""
    return [w for w in recwarn.list if not issubclass(w.category, ResourceWarning)]


@WITHOUT_GPU
def test_one_process_without_a_word_on_a_machine_without_a_gpu(recwarn, capfd):
    assert default_nproc_per_node() == 1
    assert not warnings_of_this_test(recwarn) and capfd.readouterr() == ("", "")


@WITHOUT_GPU
def test_system_metrics_without_a_gpu_measure_the_cpu_without_a_word(tmp_path, recwarn, capfd, caplog):
    """What runs beside torchrun in the flow process: no NVML warning where there is no GPU to measure."""
    from mlflow.tracking import MlflowClient

    from tasks.training.system_metrics import SystemMetrics
    from tasks.training.tracking import MetricsShipper

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    capfd.readouterr()
    recwarn.clear()
    caplog.clear()
    shipper = MetricsShipper(client, run_id, tmp_path / "metrics.jsonl", interval=0.05)
    with caplog.at_level(logging.DEBUG), shipper, SystemMetrics(shipper, every=0.2):
        time.sleep(0.7)
    assert capfd.readouterr() == ("", "")
    assert not warnings_of_this_test(recwarn) and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    metrics = client.get_run(run_id).data.metrics
    assert client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert not [key for key in metrics if "gpu" in key]
