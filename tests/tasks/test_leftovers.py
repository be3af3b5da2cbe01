"""What a killed build leaves is cleared by the next one: a stage's unfinished folders whose writer is gone are
removed when the stage next runs, while those of a build that still runs stay."""

from __future__ import annotations

import subprocess
import sys
import time

from tasks.stage import DataRoot, reuse_or_build

KILLED_INSIDE = """
import os, signal, sys
from pathlib import Path
from tasks.stage import building
with building(Path(sys.argv[1]) / "filtered" / "news-0123456789abcdef") as tmp:
    (tmp / "part-00000.parquet").write_bytes(b"half a part")
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)   # kill -9 in the middle of the build
    print("building", flush=True)
    import time; time.sleep(600)
"""


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_a_killed_builds_folder_is_removed_and_a_running_ones_kept(tmp_path, capsys):
    root = DataRoot(str(tmp_path), tmp_path)
    killed = subprocess.run([sys.executable, "-c", KILLED_INSIDE, str(tmp_path), "kill"])
    assert killed.returncode == -9 and len(temporaries(tmp_path / "filtered")) == 1
    running = subprocess.Popen([sys.executable, "-c", KILLED_INSIDE, str(tmp_path), "wait"], stdout=subprocess.PIPE)
    try:
        assert running.stdout.readline() == b"building\n"
        assert len(temporaries(tmp_path / "filtered")) == 2

        def build(tmp):
            (tmp / "part-00000.parquet").write_bytes(b"whole")
            return {"rows": 1}, {}

        result = reuse_or_build(root, "filtered", "news", "0123456789abcdef", build)
        assert (tmp_path / result.rel / "part-00000.parquet").read_bytes() == b"whole"
        (left,) = temporaries(tmp_path / "filtered")  # the running build's
        assert left.rsplit("-", 1)[0].endswith(f".{running.pid}")
        assert "removed 1 unfinished folders of builds that were killed" in capsys.readouterr().err
    finally:
        running.kill()
        running.wait()
    time.sleep(0.1)
    reuse_or_build(root, "filtered", "news", "0123456789abcdef", build)
    assert temporaries(tmp_path / "filtered") == []
