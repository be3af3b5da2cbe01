"""Errors whose message says what was wrong, where, and how to fix it: commands print them as one line.

class ShardError(FixableError, RuntimeError): ...     # every such error of the project derives from FixableError
raise disk_error(e, out_dir) or e                      # a full disk or a denied write, named in one line
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

FULL = 1 << 20
"""After a failed write, less free space than this (bytes) means the disk is full."""
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


class FixableError(Exception):
    """An error at an edge (configuration, files, network, checkpoints) whose message says what to do."""


class WriteError(FixableError):
    """A write that failed for want of space or of permission."""


def _free_bytes(path: Path) -> int | None:
    """Free space on the file system of `path` (or of its nearest existing parent)."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def disk_error(error: BaseException, path: Path) -> WriteError | None:
    """`error`, raised while writing under `path`, as one line when it comes from a denied write (read-only file
    system, permissions) or a full disk; None when it is something else."""
    code = getattr(error, "errno", None)
    if code in _DENIED:
        return WriteError(f"cannot write {getattr(error, 'filename', None) or path}: {os.strerror(code)}")
    free = _free_bytes(path)
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < FULL):
        return WriteError(f"disk full at {path}, {free:,} bytes free")
    return None
