"""Stage outputs: `<folder>/<name>-<fingerprint>/`, built atomically with an info file and a completion marker, found
again by fingerprint, and kept under a data root that is a local folder or any fsspec URL.

    fp = fingerprint("filtered", {"where": "star >= 3", ...}, inputs=[corpus.fingerprint])
    result = reuse_or_build(config.root, "filtered", "webtext2019zh", fp, build)   # build(tmp) -> (counts, info)
    result.cached, result.counts, result.location                                 # StageResult
    parts(config.root.local(result.rel))                                          # its Parquet parts, local

The fingerprint covers the stage's settings, its STAGE_VERSIONS entry and its inputs' fingerprints, so a finished
stage with the same fingerprint is reused as it is, and a changed setting makes a new folder (the old one stays
until removed by hand). A folder counts as finished once its marker exists: `_SUCCESS`, or for a token dataset the
manifest.json the engine reads, written last in either case. A folder without it is a crashed build and is ignored.

Data roots: stages are always built in the local working copy (DuckDB and Parquet read and write local files at
full speed); with a URL root each finished folder is then uploaded file by file, its marker last, so another
machine sees a folder only once it is whole. A stage found complete at the URL is a cache hit: nothing is
downloaded unless a later stage has to be built from it. raw/ (downloads) and tmp/ (DuckDB spill) stay in the
working copy. With a local root the working copy is the root itself.

Each stage module ends with its Prefect task, `task(fn, name=..., task_run_name=..., retries=...)`: the function
stays callable without Prefect, the task carries its policy. Prefect keys its cache on a hash of each task's inputs;
a task whose inputs cannot be hashed (an MLflow ModelVersion read from a tracking server) says so with
`cache_policy=NO_CACHE` rather than have each run log the failed hash. A stage's own cache is its fingerprinted
folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpt.atomic import atomic_dir, remove_stale_temporaries, write_text_atomic
from gpt.config import ConfigError
from gpt.errors import FixableError, WriteError, disk_error
from gpt.provenance import package_versions
from gpt.shards import MANIFEST
from tasks.parallel import Progress

STAGE_VERSIONS = {"corpus": 1, "filtered": 3, "deduped": 3, "conversations": 1, "tokenizers": 1, "tokens": 3}
"""Output folders by stage, each with a version bumped when the stage's code changes its output, so that old
outputs are not reused."""
MARKER = "_SUCCESS"
MARKERS = {"tokens": MANIFEST}
"""Folders whose own last file marks them complete (default: an empty `_SUCCESS`)."""
INFO = "info.json"
PARQUET = {"compression": "zstd", "compression_level": 1}
"""How the stages write Parquet: zstd level 1 takes a third of level 3's time for about 1% more bytes on Chinese
text."""
ROW_GROUP_ROWS = 10_000
"""Rows per row group of the stages' Parquet parts: the unit in which a reader can split its work."""


def fingerprint(stage: str, settings: dict, inputs: list[str]) -> str:
    payload = {"stage": stage, "version": STAGE_VERSIONS[stage], "settings": settings, "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def marker_of(rel: str) -> str:
    """The completion marker of a stage folder `<folder>/<name>-<fp>`."""
    return MARKERS.get(rel.split("/", 1)[0], MARKER)


def is_complete(folder: Path, marker: str = MARKER) -> bool:
    return (folder / marker).is_file()


@contextmanager
def building(final: Path, marker: str = MARKER) -> Iterator[Path]:
    """A temporary folder that becomes `final` when the block succeeds; the marker (the block's own file of that
    name, or an empty one) is written after the rename, last."""
    with atomic_dir(final) as tmp:
        yield tmp
        held = tmp / marker
        content = held.read_text(encoding="utf-8") if held.is_file() else ""
        held.unlink(missing_ok=True)
    write_text_atomic(final / marker, content)


def write_info(folder: Path, info: dict) -> None:
    versions = package_versions("duckdb", "pyarrow")
    text = json.dumps({**info, "versions": versions}, indent=2, ensure_ascii=False, default=str)
    write_text_atomic(folder / INFO, text + "\n")


def read_info(folder: Path) -> dict:
    return json.loads((folder / INFO).read_text(encoding="utf-8"))


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def is_url(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


def check_url(value: str, key: str) -> None:
    """Raise a ConfigError naming `key` when fsspec cannot open `value`'s protocol here."""
    import fsspec

    protocol = value.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"{key}: cannot open {value!r}: {e}") from e


class DataRoot:
    """Stage folders under a local folder, or under an fsspec URL with a local working copy `work`.

    `rel` is a folder relative to the root, `<folder>/<name>-<fp>`."""

    def __init__(self, url: str, work: Path):
        self.url = url.rstrip("/") if is_url(url) else ""
        self.work = work
        self._fs = None

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            self._fs, _ = fsspec.core.url_to_fs(self.url)
        return self._fs

    def location(self, rel: str) -> str:
        """Where a stage folder is, for people: its URL, or its local path."""
        return f"{self.url}/{rel}" if self.url else str(self.work / rel)

    def is_complete(self, rel: str) -> bool:
        if is_complete(self.work / rel, marker_of(rel)):
            return True
        return bool(self.url) and self.fs.exists(f"{self.url}/{rel}/{marker_of(rel)}")

    def read_info(self, rel: str) -> dict:
        if is_complete(self.work / rel, marker_of(rel)):
            return read_info(self.work / rel)
        return json.loads(self.fs.cat_file(f"{self.url}/{rel}/{INFO}").decode("utf-8"))

    def local(self, rel: str) -> Path:
        """The local copy of a complete stage folder, downloaded first (its marker last) when only the URL has it."""
        folder, marker = self.work / rel, marker_of(rel)
        if is_complete(folder, marker) or not self.url:
            return folder
        remote = f"{self.url}/{rel}"
        files = [f for f in self.fs.find(remote) if not f.endswith(f"/{marker}")]
        Progress(f"download {remote}").report(f"{len(files)} files", final=True)
        prefix = self.fs._strip_protocol(remote).rstrip("/") + "/"
        with building(folder, marker) as tmp:
            for name in [*files, f"{remote}/{marker}"]:
                target = tmp / self.fs._strip_protocol(name).removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(name, str(target))
        return folder

    def publish(self, rel: str) -> None:
        """Upload the finished local folder `rel` to the URL, its marker last (nothing to do for a local root)."""
        if not self.url:
            return
        folder, remote, marker = self.work / rel, f"{self.url}/{rel}", marker_of(rel)
        if self.fs.exists(remote):  # a crashed upload: start clean so that no stale file survives
            self.fs.rm(remote, recursive=True)
        files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != marker]
        Progress(f"upload {remote}").report(f"{len(files)} files", final=True)
        for path in [*files, folder / marker]:
            self.fs.put_file(str(path), f"{remote}/{path.relative_to(folder).as_posix()}")


@dataclass(frozen=True)
class StageResult:
    name: str
    rel: str
    """The output folder relative to the data root: <folder>/<name>-<fingerprint>."""
    location: str
    """The output folder as people find it: a local path, or a URL under a URL data root."""
    fingerprint: str
    counts: dict
    cached: bool
    seconds: float
    extra: dict = field(default_factory=dict)


def reuse_or_build(
    root: DataRoot,
    stage: str,
    name: str,
    fp: str,
    build: Callable[[Path], tuple[dict, dict]],
    verify: Callable[[Path], None] | None = None,
) -> StageResult:
    """The finished folder `<stage>/<name>-<fp>` as it is, or built by `build(tmp) -> (counts, info)` and published.
    Temporaries that killed builds left in `<stage>/` are removed first (those of running builds stay).

    `info` (settings, inputs, `extra` results) goes to the folder's info.json with the counts and the seconds. A
    finished local folder that `verify(folder)` rejects (by raising) is not reused: it is built again."""
    rel = f"{stage}/{name}-{fp}"
    if removed := remove_stale_temporaries(root.work / stage):
        Progress(stage).report(f"removed {removed} unfinished folders of builds that were killed", final=True)
    if root.is_complete(rel) and _verified(root, rel, verify):
        info = root.read_info(rel)
        return StageResult(name, rel, root.location(rel), fp, info["counts"], True, 0.0, info.get("extra", {}))
    started = time.monotonic()
    try:
        with building(root.work / rel, marker_of(rel)) as tmp:
            counts, info = build(tmp)
            seconds = round(time.monotonic() - started, 2)
            write_info(
                tmp, {"stage": stage, "name": name, "fingerprint": fp, **info, "counts": counts, "seconds": seconds}
            )
    except Exception as e:  # Arrow, DuckDB and numpy report a failed write each in their own way
        if (written := disk_error(e, root.work / rel)) is None:
            raise
        raise WriteError(f"{written}; {rel} was not built (its partial output is removed)") from e
    root.publish(rel)
    return StageResult(name, rel, root.location(rel), fp, counts, False, seconds, info.get("extra", {}))


def _verified(root: DataRoot, rel: str, verify: Callable[[Path], None] | None) -> bool:
    folder = root.work / rel
    if verify is None or not is_complete(folder, marker_of(rel)):
        return True  # only at the URL: checked where it is downloaded and read
    try:
        verify(folder)
    except FixableError as e:  # a damaged output, said by its own check; anything else is a bug to see
        Progress(rel).report(f"failed verification, building it again: {e}", final=True)
        return False
    return True


def input_parts(root: DataRoot, result: StageResult) -> list[Path]:
    """The Parquet parts of a finished stage, in the local working copy (downloaded when only the URL has them)."""
    return parts(root.local(result.rel))


def newest_build(config, dataset: str) -> Path:
    """The local token dataset of `dataset` built last (tokens/<dataset>-<tokenizer>-<fp>/)."""
    if dataset not in config.datasets:
        raise ConfigError(f"no dataset {dataset!r} in {config.file}; datasets: {', '.join(config.datasets)}")
    prefix = f"{dataset}-{config.datasets[dataset].tokenize.tokenizer}-"
    built = [
        m.parent
        for m in (config.root.work / "tokens").glob(f"{prefix}*/{MANIFEST}")
        if m.parent.name[len(prefix) :].isalnum()
    ]
    if not built:
        raise ConfigError(
            f"dataset {dataset!r} has no token dataset under {config.root.work / 'tokens'}; build it first: "
            f"{config.build_command(dataset)}"
        )
    return max(built, key=lambda folder: (folder / MANIFEST).stat().st_mtime)
