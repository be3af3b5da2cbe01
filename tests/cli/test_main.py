import subprocess
import sys

from cli.main import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    assert "prepare-text" in capsys.readouterr().out
    assert main(["nonsense"]) == 2


def test_subcommands_reach_the_engine(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cli", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--model.n_layer" in out.stdout
