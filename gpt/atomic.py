"""Atomic outputs: build a folder under a temporary name, rename it into place, then write its marker.

with atomic_dir(Path("runs/x/step-100")) as tmp:
    (tmp / "model.safetensors").write_bytes(...)
write_text_atomic(Path("runs/x/step-100/COMPLETE"), "")   # readers only trust folders with the marker
remove_stale_temporaries(Path("data/filtered"))            # what killed writers left behind

Every file a finished folder holds gets the permissions open() gives a new file (0o666 less the umask), whatever its
writer chose: safetensors writes its files readable by their owner only.

Temporaries are named `<name>.tmp-<host>.<pid>-<random>` (and a replaced folder `<name>.old-...`), so a leftover
can be told from the work of a writer that still runs: only those of a process of this host that is gone are stale.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success its files get the default mode (default_mode) and
    it replaces `final`; on error it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / temporary_name(final.name)
    tmp.mkdir()
    try:
        yield tmp
        mode = default_mode()
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, mode)
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            old = final.parent / temporary_name(final.name, "old")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def umask() -> int:
    """This process' umask: Linux shows it in /proc/self/status; elsewhere it is read by setting it and back."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)  # a moment's stricter umask rather than a looser one, should a thread create a file now
    os.umask(mask)
    return mask


def default_mode() -> int:
    """The permissions open() gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write a whole file so that readers see the old content or the new, never a part."""
    tmp = path.parent / temporary_name(f".{path.name}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def temporary_name(name: str, kind: str = "tmp") -> str:
    """`<name>.<kind>-<host>.<pid>-<random>`: a temporary that names the process writing it."""
    return f"{name}.{kind}-{socket.gethostname()}.{os.getpid()}-{secrets.token_hex(4)}"


def is_stale(name: str) -> bool:
    """Whether a temporary's writer is gone: a process of this host that no longer runs, or a name without a
    writer (older releases)."""
    for kind in (".tmp-", ".old-"):
        if kind in name:
            owner = name.rsplit(kind, 1)[1].rsplit("-", 1)[0]
            host, _, pid = owner.rpartition(".")
            if not host or not pid.isdigit():
                return True
            return host == socket.gethostname() and not _running(int(pid))
    return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporaries in `folder` whose writer is gone (see is_stale); returns how many there were."""
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if is_stale(p.name)]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return len(stale)
