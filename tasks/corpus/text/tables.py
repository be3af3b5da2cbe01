"""Lookup tables over every code point (folding, units), built once per machine and kept on disk.

    @code_point_table
    def fold_table() -> np.ndarray: ...      # the first call builds it (about a second), later ones load it

Building a table walks all 1.1M code points in Python (Unicode normalization, OpenCC, zhconv). A built table is
saved as `<cache>/gptflow/<name>-<key>.npy`, where the cache is $XDG_CACHE_HOME or ~/.cache and the key hashes the
source of the modules that build the tables and the versions of the data they read, so a change to either builds
anew. Calls are serialized, so worker threads that start together build a table once; an unwritable cache folder
only means building it in each process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import unicodedata
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

_LOCK = threading.RLock()
_SOURCES = ("stats.py", "variants.py", "sketch.py", "tables.py")


@functools.cache
def _key() -> str:
    h = hashlib.sha256(f"{unicodedata.unidata_version} {version('opencc')} {version('zhconv')}".encode())
    for name in _SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptflow"


def code_point_table(build: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """Memoize `build` in memory and on disk, one caller at a time."""
    built: list[np.ndarray] = []

    @functools.wraps(build)
    def table() -> np.ndarray:
        with _LOCK:
            if built:
                return built[0]
            path = cache_folder() / f"{build.__name__.strip('_')}-{_key()}.npy"
            try:
                built.append(np.load(path))
            except (OSError, ValueError):
                built.append(build())
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    part = path.with_suffix(f".{os.getpid()}.tmp")
                    with open(part, "wb") as f:
                        np.save(f, built[0])
                    part.replace(path)
                except OSError:
                    pass
            return built[0]

    return table
