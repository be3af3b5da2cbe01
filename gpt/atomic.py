"""Atomic outputs: build a folder under a temporary name, rename it into place, then write its marker.

with atomic_dir(Path("runs/x/step-100")) as tmp:
    (tmp / "model.safetensors").write_bytes(...)
write_text_atomic(Path("runs/x/step-100/COMPLETE"), "")   # readers only trust folders with the marker
"""

from __future__ import annotations

import os
import secrets
import shutil
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
    """Yield an empty temporary folder beside `final`; on success it replaces `final`, on error it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{final.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            old = final.parent / f"{final.name}.old-{secrets.token_hex(4)}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write a whole file so that readers see the old content or the new, never a part."""
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete leftovers of writes that were killed midway (`*.tmp-*` and `*.old-*` entries)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if ".tmp-" in p.name or ".old-" in p.name:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
