"""Safe extraction of downloaded archives: zip, tar (plain, .gz, .bz2, .xz) and single .gz / .bz2 files.

    folder = extract(Path("raw/THUCNews.zip"), Path("raw/THUCNews.zip.d"), max_bytes=20 * 2**30)

Refused before anything is written: members with absolute paths or `..`, links and device files, and archives that
expand past `max_bytes` (counted from the headers, then enforced while writing, so a lying header cannot slip
through). Zip member names stored in GBK without the UTF-8 flag (THUCNews) are decoded; macOS `__MACOSX/` trees and
`._*` resource files are skipped. The folder is written under a temporary name and renamed into place.
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
from gpt.errors import FixableError

DEFAULT_MAX_BYTES = 64 * 2**30
_UTF8_FLAG = 0x800


class UnsafeArchiveError(FixableError, RuntimeError):
    """An archive that would write outside its folder, make links, or expand past the size limit."""


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


def _copy_limited(src: BinaryIO, dst: BinaryIO, budget: list[int], archive: Path) -> None:
    while block := src.read(1 << 20):
        budget[0] -= len(block)
        if budget[0] < 0:
            raise UnsafeArchiveError(f"{archive} expands past the size limit; refusing to extract further")
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


def _write_members(members: list[_Member], tmp: Path, budget: list[int], archive: Path) -> None:
    """Check every member first (paths, links, declared size), then write them."""
    if sum(m.size for m in members) > budget[0]:
        raise UnsafeArchiveError(f"{archive} declares more than {budget[0]:,} bytes; refusing")
    for member in members:
        target = tmp.joinpath(*member.path.parts)
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with member.open() as src, open(target, "wb") as dst:
            _copy_limited(src, dst, budget, archive)


def extract(archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Extract `archive` into the folder `dest` (replacing it); returns `dest`."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    if kind is None:
        raise ValueError(f"{archive} is not a zip, tar, .gz or .bz2 archive")
    budget = [max_bytes]
    with atomic_dir(dest) as tmp:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _write_members(list(_zip_members(archive, zf)), tmp, budget, archive)
        elif kind == "tar":
            with tarfile.open(archive) as tf:
                _write_members(list(_tar_members(archive, tf)), tmp, budget, archive)
        else:
            opener = gzip.open if kind == "gz" else bz2.open
            with opener(archive, "rb") as src, open(tmp / archive.stem, "wb") as dst:
                _copy_limited(src, dst, budget, archive)
    return dest
