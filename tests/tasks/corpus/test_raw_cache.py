"""The raw stage's cache serves a source only as it is: a copy cut short by a kill or a full disk never passes as
the file, a damaged entry is fetched again, and an unpinned URL, a mirror copy or a local file that changed is read
again, even when its size and modification time were put back."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import FILL, REPO, on_small_disk

from tasks.corpus.settings import SourceConfig
from tasks.corpus.sources.download import RetryPolicy, fetch
from tasks.corpus.stage1_raw import resolve_source

FAST = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5)
URL = "https://example.invalid/corpora/big.bin"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_script(cache, mirror, digest: str) -> list[str]:
    """A process that fetches URL from the mirror into the cache, printing the error line as gptflow does."""
    code = (
        "import sys; from pathlib import Path; from gpt.errors import FixableError\n"
        "from tasks.corpus.sources.download import fetch\n"
        "try:\n"
        f"    print(fetch({URL!r}, Path({str(cache)!r}), sha256={digest!r}, mirror=Path({str(mirror)!r})))\n"
        "except FixableError as e:\n"
        "    print(f'error: {e}', file=sys.stderr); sys.exit(1)\n"
    )
    return [sys.executable, "-c", code]


def partial_copies(cache, size: int) -> list:
    """Files of the cache holding more than a MiB but less than the source (a copy under way or cut short)."""
    found = []
    for path in cache.rglob("*"):
        try:
            if path.is_file() and (1 << 20) <= path.stat().st_size < size:
                found.append(path)
        except FileNotFoundError:
            continue
    return found


def rewrite_keeping_size_and_mtime(path, data: bytes) -> None:
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


@pytest.mark.slow
def test_a_copy_killed_midway_is_never_served_as_the_pinned_source(tmp_path):
    body = os.urandom(1 << 20) * 256  # 256 MiB: the copy takes a tenth of a second, the kill lands inside it
    mirror = tmp_path / "mirror"
    (mirror / "corpora").mkdir(parents=True)
    (mirror / "corpora" / "big.bin").write_bytes(body)
    digest, cache = sha256(body), tmp_path / "cache"
    for _ in range(8):  # until a kill lands while a partial copy exists
        child = subprocess.Popen(fetch_script(cache, mirror, digest), cwd=REPO, stdout=subprocess.DEVNULL)
        cut = []
        while child.poll() is None and not cut:
            cut = partial_copies(cache, len(body))
        if cut:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if cut:
            break
    assert cut, "no kill landed inside the copy"
    path = fetch(URL, cache, sha256=digest, mirror=mirror)
    assert path.stat().st_size == len(body) and sha256(path.read_bytes()) == digest
    assert partial_copies(cache, len(body)) == [] and list((cache / "tmp").iterdir()) == []  # the killed one's too


@pytest.mark.slow
def test_a_full_disk_during_the_copy_names_the_cache_and_a_rerun_gets_the_whole_file(tmp_path):
    body = os.urandom(6 << 20)
    mirror = tmp_path / "mirror" / "corpora"
    mirror.mkdir(parents=True)
    (mirror / "big.bin").write_bytes(body)
    disk = tmp_path / "disk"
    disk.mkdir()
    cache, script = disk / "raw", fetch_script(disk / "raw", tmp_path / "mirror", sha256(body))
    steps = [[*FILL, str(disk), str(2 << 20)], script, ["rm", str(disk / "filler")], script]
    _, (rc1, _, err1), _, (rc2, out2, err2) = on_small_disk(disk, "16m", steps)
    assert rc1 == "1" and err1.startswith(f"error: disk full at {cache / 'tmp'}, "), err1
    assert err1.endswith("bytes free") and str(mirror) not in err1
    assert rc2 == "0", err2
    assert out2 == str(cache / "sha256" / sha256(body) / "big.bin")


def test_a_damaged_cache_entry_is_fetched_again_with_a_line_saying_so(tmp_path, capsys):
    body = os.urandom(100_000)
    (tmp_path / "mirror" / "corpora").mkdir(parents=True)
    (tmp_path / "mirror" / "corpora" / "big.bin").write_bytes(body)
    path = fetch(URL, tmp_path / "cache", sha256=sha256(body), mirror=tmp_path / "mirror")
    rewrite_keeping_size_and_mtime(path, bytes(len(body)))
    again = fetch(URL, tmp_path / "cache", sha256=sha256(body), mirror=tmp_path / "mirror")
    assert again.read_bytes() == body
    assert (
        f"the cached copy {path} has sha256 {sha256(bytes(len(body)))}, not {sha256(body)}" in capsys.readouterr().err
    )


def test_an_unpinned_url_is_asked_whether_it_changed(file_server, tmp_path, capsys):
    url = f"{file_server.url}/corpus.txt"
    file_server.files["/corpus.txt"] = "第一版".encode()
    assert fetch(url, tmp_path / "cache", retry=FAST).read_text() == "第一版"
    assert fetch(url, tmp_path / "cache", retry=FAST).read_text() == "第一版"
    asked = file_server.requests[-1]
    assert asked["if-none-match"] and "range" not in asked and len(file_server.requests) == 2  # a 304, no body
    file_server.files["/corpus.txt"] = "第二版".encode()
    assert fetch(url, tmp_path / "cache", retry=FAST).read_text() == "第二版"
    assert "changed on the server since it was cached" in capsys.readouterr().err
    file_server.close()  # offline: the cached copy stays in use, with a line saying so
    assert fetch(url, tmp_path / "cache", retry=FAST).read_text() == "第二版"
    assert "cannot ask the server whether it changed" in capsys.readouterr().err


def test_a_server_without_validators_is_downloaded_again(file_server, tmp_path):
    url = f"{file_server.url}/plain.txt"
    file_server.files["/plain.txt"] = b"one"
    file_server.no_etag.add("/plain.txt")
    assert fetch(url, tmp_path / "cache", retry=FAST).read_bytes() == b"one"
    file_server.files["/plain.txt"] = b"two"
    assert fetch(url, tmp_path / "cache", retry=FAST).read_bytes() == b"two"


def test_an_edited_mirror_copy_is_read_again_even_with_its_mtime_put_back(tmp_path):
    mirror = tmp_path / "mirror" / "corpora"
    mirror.mkdir(parents=True)
    (mirror / "big.bin").write_bytes(b"old text")
    assert fetch(URL, tmp_path / "cache", mirror=tmp_path / "mirror").read_bytes() == b"old text"
    rewrite_keeping_size_and_mtime(mirror / "big.bin", b"new text")
    assert fetch(URL, tmp_path / "cache", mirror=tmp_path / "mirror").read_bytes() == b"new text"


def test_a_local_file_edited_to_the_same_size_and_mtime_gets_a_new_fingerprint(tmp_path):
    source = tmp_path / "poems.txt"
    source.write_text("床前明月光", encoding="utf-8")
    first = resolve_source(SourceConfig(path=str(source)), tmp_path / "raw", mirror=None)
    time.sleep(0.01)
    rewrite_keeping_size_and_mtime(source, "疑是地上霜".encode())
    second = resolve_source(SourceConfig(path=str(source)), tmp_path / "raw", mirror=None)
    assert second.fingerprint == sha256("疑是地上霜".encode()) != first.fingerprint
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("床前明月光", encoding="utf-8")
    before = resolve_source(SourceConfig(path=str(folder)), tmp_path / "raw", mirror=None).fingerprint
    rewrite_keeping_size_and_mtime(folder / "a.txt", "疑是地上霜".encode())
    assert resolve_source(SourceConfig(path=str(folder)), tmp_path / "raw", mirror=None).fingerprint != before
