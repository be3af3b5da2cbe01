"""Stage 1, raw: the sources of a corpus (`corpora.<name>.sources`) as local files in raw/, downloaded and
extracted as needed.

    raw = fetch_sources(config, "thucnews")     # RawFiles: [(Path, "THUCNews/体育/0.txt"), ...] and fingerprints
    found = resolve_source(SourceConfig(url="https://.../THUCNews.zip"), raw_dir=Path("data/raw"), mirror=None)
    found.files          # the files to read, with names stable across machines
    found.fingerprint    # sha256 of the download or local file (stat-keyed for folders)

A source is a URL (fetched into `raw/sha256/<hex>/`, mirror first, see sources/download.py) or a local path: a
file, a folder, or an archive (zip, tar, .gz, .bz2), whose wanted members are extracted once into
`raw/extracted/<sha256>[-<members>]/` (within the `archives` limits, sources/archive.py). `members` picks files
inside a folder or archive by glob pattern; each pattern must match, so a wrong archive fails here. A local file is
known by its sha256, hashed again whenever its identity (size, mtime, ctime, inode) changed, and a folder by the
identities of its files. A downloaded source without sha256 is reported (size and digest, to pin it). The task
`raw` retries downloads that kept failing on the network, twice, 10 s apart (never a wrong checksum or a 4xx); it is
tagged `download`, so `prefect concurrency-limit create download 1` makes the corpora of a build download one at a
time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task

from gpt.atomic import remove_stale_temporaries
from gpt.errors import FixableError
from tasks.corpus.settings import SourceConfig
from tasks.corpus.sources.archive import ArchiveLimits, archive_kind, extract
from tasks.corpus.sources.download import TransientDownloadError, fetch
from tasks.corpus.sources.identity import file_identity, known_sha256

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig


class SourceError(FixableError, RuntimeError):
    """A source that cannot be read as configured; the message names it and says what to change."""


@dataclass(frozen=True)
class SourceFiles:
    files: list[tuple[Path, str]]
    """(local path, name inside the source) of every file to read, sorted by name."""
    fingerprint: str
    """Changes whenever the content may have changed."""
    warning: str = ""
    """What the build report should tell about this source (a download that no sha256 pins)."""


def _folder_fingerprint(files: list[tuple[Path, str]]) -> str:
    h = hashlib.sha256()
    for path, name in files:
        h.update(f"{name}\0{json.dumps(file_identity(path), sort_keys=True)}\n".encode())
    return h.hexdigest()


def _member_matches(name: str, pattern: str) -> bool:
    """A `members` pattern matches a file's path inside its source, or its name alone."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.rsplit("/", 1)[-1], pattern)


def _select(root: Path, members: list[str], label: str) -> list[tuple[Path, str]]:
    found = sorted(
        (p, p.relative_to(root).as_posix())
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not members:
        return found
    chosen: dict[str, Path] = {}
    for pattern in members:
        hits = [(p, n) for p, n in found if _member_matches(n, pattern)]
        if not hits:
            sample = ", ".join(n for _, n in found[:8]) + (" ..." if len(found) > 8 else "")
            raise SourceError(f"{label}: no file matches members pattern {pattern!r}; it holds: {sample or 'nothing'}")
        chosen.update({n: p for p, n in hits})
    return sorted((p, n) for n, p in chosen.items())


def _extracted(archive: Path, digest: str, src: SourceConfig, raw_dir: Path, limits: ArchiveLimits) -> Path:
    """The folder holding the archive's wanted members, extracted on first use."""
    if not src.members:
        folder, wanted = raw_dir / "extracted" / digest, None
    else:
        key = hashlib.sha256(json.dumps(sorted(src.members)).encode()).hexdigest()[:12]
        folder = raw_dir / "extracted" / f"{digest}-{key}"

        def wanted(name: str) -> bool:
            return any(_member_matches(name, pattern) for pattern in src.members)

    remove_stale_temporaries(folder.parent)
    if not folder.is_dir():
        extract(archive, folder, limits, wanted)
    return folder


def resolve_source(
    src: SourceConfig,
    raw_dir: Path,
    mirror: Path | None,
    base: Path = Path("."),
    limits: ArchiveLimits | None = None,
) -> SourceFiles:
    """The files of one source, downloaded, checked and extracted into `raw_dir` as needed."""
    warning = ""
    if src.url:
        local = fetch(src.url, raw_dir, sha256=src.sha256 or None, mirror=mirror, mirror_name=src.mirror_name or None)
        digest = local.parent.name
        if not src.sha256:
            warning = (
                f"{src.url} has no sha256 in pipelines.yaml: got {local.stat().st_size:,} bytes with sha256 {digest}; "
                "add it to the source to pin the file"
            )
    else:
        local = (base / os.path.expanduser(src.path)).resolve()
        if not local.exists():
            raise SourceError(f"{src.path}: no such file or folder (resolved to {local}); fix 'path' in pipelines.yaml")
        if local.is_dir():
            files = _select(local, src.members, src.label)
            return SourceFiles(files, _folder_fingerprint(files))
        digest = known_sha256(local, raw_dir / "hashes")
        if src.sha256 and digest != src.sha256:
            raise SourceError(f"{local} has sha256 {digest}, expected {src.sha256}; replace the file or fix sha256")
    if archive_kind(local) is None:
        if src.members and not any(fnmatch.fnmatchcase(local.name, m) for m in src.members):
            raise SourceError(f"{src.label}: a single file {local.name!r} matches none of members {src.members}")
        return SourceFiles([(local, local.name)], digest, warning)
    folder = _extracted(local, digest, src, raw_dir, limits or ArchiveLimits())
    return SourceFiles(_select(folder, src.members, src.label), digest, warning)


@dataclass(frozen=True)
class RawFiles:
    corpus: str
    files: list[tuple[Path, str]]
    fingerprints: list[str]
    warnings: list[str]


def fetch_sources(config: PipelinesConfig, corpus: str) -> RawFiles:
    """Download (or find) and extract every source of a corpus."""
    raw_dir = config.work / "raw"
    files, prints, warnings = [], [], []
    for source in config.corpora[corpus].sources:
        unpinned = 0
        for one in source.expand():
            found = resolve_source(one, raw_dir, config.mirror_dir, config.base, config.archives)
            files.extend(found.files)
            prints.append(found.fingerprint)
            unpinned += bool(found.warning)
            warnings += [found.warning] if found.warning and one.url == source.url else []
        if unpinned and len(source.expand()) > 1:
            warnings.append(f"{source.url}: {unpinned} files without sha256 (list them one by one with sha256 to pin)")
    return RawFiles(corpus, files, prints, warnings)


def _retry_downloads(task, task_run, state) -> bool:
    """Retry only a download that kept failing on the network or the server, never a wrong checksum or a 4xx."""
    try:
        state.result()
    except TransientDownloadError:
        return True
    except Exception:
        return False
    return False


raw_task = task(
    fetch_sources, name="raw", task_run_name="raw-{corpus}", tags={"download"}, retries=2, retry_delay_seconds=10,
    retry_condition_fn=_retry_downloads,
)  # fmt: skip
