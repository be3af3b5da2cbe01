"""A full disk or a read-only run folder, for real (a small tmpfs): one line that names the path and the problem,
and a run is never left without the checkpoint it had."""

import sys

import pytest
from helpers import FILL, on_small_disk

from gpt.checkpoint import list_checkpoints

PY = [sys.executable, "-m", "gpt.train"]


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint_and_says_so(tiny, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    run = disk / "run"
    _, first = tiny(out_dir=run, max_iters=5, eval_interval=5)
    _, second = tiny(out_dir=run, max_iters=10, eval_interval=5, init_from="resume")
    listing = ["sh", "-c", f"ls {run} {run}/step-5"]
    results = on_small_disk(disk, "8m", [[*PY, str(first)], [*FILL, str(disk), "65536"], [*PY, str(second)], listing])
    (rc1, _, err1), _, (rc2, _, err2), (_, ls, _) = results
    assert rc1 == "0", err1
    assert rc2 == "1" and err2.splitlines()[-1].startswith(f"error: disk full at {run}, ")
    assert err2.splitlines()[-1].endswith(
        f"bytes free: step-10 was not saved; the newest checkpoint, {run}/step-5, is kept"
    )
    assert "step-5" in ls.split() and "COMPLETE" in ls.split() and "step-10" not in ls.split()
    assert list_checkpoints(run) == []  # the tmpfs is gone with its namespace


@pytest.mark.slow
def test_a_read_only_run_folder_is_one_line(tiny, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    _, config = tiny(out_dir=disk / "run", max_iters=5)
    ((rc, _, err),) = on_small_disk(disk, "1m", [[*PY, str(config)]], readonly=True)
    assert rc == "1" and err.splitlines() == [f"error: cannot write {disk / 'run'}: Read-only file system"]
