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
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gpt.atomic import atomic_dir

DEFAULT_MAX_BYTES = 64 * 2**30
_UTF8_FLAG = 0x800


class UnsafeArchiveError(RuntimeError):
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


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[tuple[PurePosixPath, zipfile.ZipInfo]]:
    for info in zf.infolist():
        name = zip_member_name(info)
        if _skipped(name):
            continue
        mode = info.external_attr >> 16
        if mode and (mode & 0o170000) == 0o120000:
            raise UnsafeArchiveError(f"{archive}: member {name!r} is a symbolic link; refusing to extract")
        yield _checked(name, archive), info


def _tar_members(archive: Path, tf: tarfile.TarFile) -> Iterator[tuple[PurePosixPath, tarfile.TarInfo]]:
    for info in tf.getmembers():
        if _skipped(info.name):
            continue
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a link or special file; refusing")
        yield _checked(info.name, archive), info


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
                members = list(_zip_members(archive, zf))
                if sum(info.file_size for _, info in members) > max_bytes:
                    raise UnsafeArchiveError(f"{archive} declares more than {max_bytes:,} bytes; refusing")
                for path, info in members:
                    target = tmp.joinpath(*path.parts)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        _copy_limited(src, dst, budget, archive)
        elif kind == "tar":
            with tarfile.open(archive) as tf:
                members = list(_tar_members(archive, tf))
                if sum(info.size for _, info in members) > max_bytes:
                    raise UnsafeArchiveError(f"{archive} declares more than {max_bytes:,} bytes; refusing")
                for path, info in members:
                    target = tmp.joinpath(*path.parts)
                    if info.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(info) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                        _copy_limited(src, dst, budget, archive)
        else:
            opener = gzip.open if kind == "gz" else bz2.open
            with opener(archive, "rb") as src, open(tmp / archive.stem, "wb") as dst:
                _copy_limited(src, dst, budget, archive)
    return dest
