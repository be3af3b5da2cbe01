"""Stage outputs: `<stage>/<name>-<fingerprint>/` folders, written atomically, with an info file and a marker.

    fp = fingerprint("corpus", {"format": "webtext2019zh"}, inputs=[source_sha256])
    out = data_root / "corpus" / f"webtext2019zh-{fp}"
    if not is_complete(out):
        with building(out) as tmp:
            ...write parts into tmp...
            write_info(tmp, {...})          # resolved config, inputs, counts, durations
    info = read_info(out)

The fingerprint covers the stage's settings, its STAGE_VERSIONS entry and its inputs' fingerprints, so a finished
stage with the same fingerprint is reused as it is, and a changed setting makes a new folder (the old one stays
until removed by hand). A folder without `_SUCCESS` is a crashed build and is ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow

from gpt.atomic import atomic_dir, write_text_atomic
from gpt.provenance import package_versions

STAGE_VERSIONS = {"corpus": 1, "filtered": 1, "clean": 1, "tokens": 1}
"""Bumped when a stage's code changes its output, so that old outputs are not reused."""
MARKER = "_SUCCESS"
INFO = "info.json"


def fingerprint(stage: str, settings: dict, inputs: list[str]) -> str:
    payload = {"stage": stage, "version": STAGE_VERSIONS[stage], "settings": settings, "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """A temporary folder that becomes `final` (with its marker) when the block succeeds."""
    with atomic_dir(final) as tmp:
        yield tmp
    write_text_atomic(final / MARKER, "")


def write_info(folder: Path, info: dict) -> None:
    versions = package_versions() | {"duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__}
    text = json.dumps({**info, "versions": versions}, indent=2, ensure_ascii=False, default=str)
    write_text_atomic(folder / INFO, text + "\n")


def read_info(folder: Path) -> dict:
    return json.loads((folder / INFO).read_text(encoding="utf-8"))


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))
