"""Safe extraction of downloaded archives: zip, tar (plain, .gz, .bz2, .xz) and single .gz / .bz2 files.

    folder = extract(Path("raw/THUCNews.zip"), Path("raw/extracted/x"), ArchiveLimits(max_gb=20), wanted=None)
    folder = extract(archive, dest, wanted=lambda name: name.startswith("wiki_zh/AA/"))   # only those members

Refused before anything is written: members with absolute paths or `..`, links and device files, and archives whose
wanted members expand past the limits (ArchiveLimits: a size, and a ratio to the archive's own size that text never
reaches and a zip bomb always does), counted from the headers, then enforced while writing, so a lying header cannot
slip through. Only the wanted members are written. Zip member names stored in GBK without the UTF-8 flag (THUCNews)
are decoded; macOS `__MACOSX/` trees and `._*` resource files are skipped. The folder is written under a temporary
name and renamed into place.
"""

from __future__ import annotations

import bz2
import gzip
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gpt.atomic import atomic_dir
from gpt.config import ConfigError
from gpt.errors import FixableError

_UTF8_FLAG = 0x800
RATIO_FLOOR_BYTES = 1 << 20
"""An archive may always expand to this much, whatever its ratio (a tiny archive of repetitive text)."""


class UnsafeArchiveError(FixableError, RuntimeError):
    """An archive that would write outside its folder, make links, or expand past the limits."""


@dataclass(frozen=True)
class ArchiveLimits:
    """How far an archive may expand (pipelines.yaml `archives`); past either limit it is refused unextracted."""

    max_gb: float = 64.0
    """Most gigabytes (10^9 bytes) the members read from one archive may expand to (news2016zh, the largest corpus,
    is 9 GB of text)."""
    max_ratio: float = 100.0
    """Most bytes written per byte of archive. Chinese text compresses 2 to 4 times; a zip bomb expands a
    thousand times or more."""

    def __post_init__(self):
        if self.max_gb <= 0 or self.max_ratio < 1:
            raise ConfigError(f"archives: max_gb must be above 0 and max_ratio 1 or more, got {self}")

    def budget(self, archive: Path) -> tuple[int, str]:
        """The bytes `archive` may expand to, and the setting that sets them."""
        by_size = int(self.max_gb * 1e9)
        by_ratio = max(int(self.max_ratio * archive.stat().st_size), RATIO_FLOOR_BYTES)
        if by_ratio < by_size:
            return by_ratio, f"archives.max_ratio={self.max_ratio:g} times its {archive.stat().st_size:,} bytes"
        return by_size, f"archives.max_gb={self.max_gb:g}"


_TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")


def archive_kind(path: Path) -> str | None:
    """'zip', 'tar', 'gz' or 'bz2' (one compressed file), or None for a plain file."""
    name = path.name.lower()
    if zipfile.is_zipfile(path):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if name.endswith((".gz", ".bz2")):
        return name.rsplit(".", 1)[1]
    return None


def zip_member_name(info: zipfile.ZipInfo) -> str:
    """The real name of a zip member: names without the UTF-8 flag are often GBK read as cp437."""
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or (bool(parts) and parts[-1].startswith("._"))


def _checked(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} climbs out with '..'; refusing to extract")
    return path


@dataclass
class _Budget:
    left: int
    setting: str

    def refuse(self, archive: Path, what: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{archive} {what} past the limit of {self.setting}; refusing to extract it (raise the limit in "
            "pipelines.yaml `archives` if you trust it)"
        )


def _copy_limited(src: BinaryIO, dst: BinaryIO, budget: _Budget, archive: Path) -> None:
    while block := src.read(1 << 20):
        budget.left -= len(block)
        if budget.left < 0:
            raise budget.refuse(archive, "expands")
        dst.write(block)


@dataclass(frozen=True)
class _Member:
    path: PurePosixPath
    is_dir: bool
    size: int
    open: Callable[[], BinaryIO]


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        name = zip_member_name(info)
        if _skipped(name):
            continue
        mode = info.external_attr >> 16
        if mode and (mode & 0o170000) == 0o120000:
            raise UnsafeArchiveError(f"{archive}: member {name!r} is a symbolic link; refusing to extract")
        yield _Member(_checked(name, archive), info.is_dir(), info.file_size, partial(zf.open, info))


def _tar_members(archive: Path, tf: tarfile.TarFile) -> Iterator[_Member]:
    for info in tf.getmembers():
        if _skipped(info.name):
            continue
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a link or special file; refusing")
        yield _Member(_checked(info.name, archive), info.isdir(), info.size, partial(tf.extractfile, info))


def _write_members(
    members: list[_Member], tmp: Path, budget: _Budget, archive: Path, wanted: Callable[[str], bool] | None
) -> None:
    """Check every member first (paths, links), keep the wanted ones, check their declared size, then write them."""
    if wanted is not None:
        members = [m for m in members if not m.is_dir and wanted(m.path.as_posix())]
    if (declared := sum(m.size for m in members)) > budget.left:
        raise budget.refuse(archive, f"declares {declared:,} bytes,")
    for member in members:
        target = tmp.joinpath(*member.path.parts)
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with member.open() as src, open(target, "wb") as dst:
            _copy_limited(src, dst, budget, archive)


def extract(
    archive: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits(), wanted: Callable[[str], bool] | None = None
) -> Path:
    """Extract `archive` (its members whose name `wanted` accepts, or all) into the folder `dest` (replacing it);
    returns `dest`."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    if kind is None:
        raise ValueError(f"{archive} is not a zip, tar, .gz or .bz2 archive")
    budget = _Budget(*limits.budget(archive))
    with atomic_dir(dest) as tmp:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _write_members(list(_zip_members(archive, zf)), tmp, budget, archive, wanted)
        elif kind == "tar":
            with tarfile.open(archive) as tf:
                _write_members(list(_tar_members(archive, tf)), tmp, budget, archive, wanted)
        else:
            opener = gzip.open if kind == "gz" else bz2.open
            with opener(archive, "rb") as src, open(tmp / archive.stem, "wb") as dst:
                _copy_limited(src, dst, budget, archive)
    return dest
