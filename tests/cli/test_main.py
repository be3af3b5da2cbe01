import os
import subprocess
import sys

import pytest
from helpers import write_pipelines

from cli.main import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    assert "prepare-text" in capsys.readouterr().out
    assert main(["nonsense"]) == 2


def test_subcommands_reach_the_engine(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cli", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--model.n_layer" in out.stdout


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (["build-corpus", "--dataset", "nope"], "unknown dataset 'nope'; datasets of pipelines.yaml: plays, poems"),
        (["pretrain", "--preset", "tin"], "unknown training preset 'tin' (did you mean 'tiny'?); training presets"),
        (["continue-training", "--preset", "tin"], "unknown training preset 'tin' (did you mean 'tiny'?); training"),
    ],
)
def test_a_flow_command_naming_what_the_file_lacks_ends_in_one_line_before_prefect_starts(tmp_path, command, error):
    plays = {"format": "text", "kind": "english", "sources": [{"path": "plays.txt"}]}
    data = {
        "corpora": {"plays": plays},
        "datasets": {"plays": {"corpora": ["plays"]}, "poems": {"corpora": ["plays"]}},
        "training": {"tiny": {"dataset": "plays"}},
    }
    config = write_pipelines(tmp_path, data)
    home = tmp_path / "prefect"  # where the temporary Prefect server of a flow run would keep its database
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "cli", *command, "--config", config], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(f"error: {error}")
    assert not home.exists()  # no Prefect server started, so no flow run
