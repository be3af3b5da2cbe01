"""What a file is, cheaply: its stat identity, and its sha256 remembered under that identity.

    identity = file_identity(Path("THUCNews.zip"))      # size, mtime_ns, ctime_ns, inode
    digest = known_sha256(path, memo_dir)               # hashed again only when the identity changed
    remember_sha256(path, digest, memo_dir)             # a file whose digest was just checked (a new cache entry)

The identity holds the inode change time, which no user tool can set back: a file edited to the same size with its
modification time restored still changes identity, and so is hashed again. A rename or a new hard link changes it
too (harmless: one more hash).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gpt.atomic import write_text_atomic
from gpt.hashing import sha256_file


def file_identity(path: Path) -> dict[str, int]:
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino}


def _memo(path: Path, memo_dir: Path) -> Path:
    return memo_dir / f"{hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()}.json"


def known_sha256(path: Path, memo_dir: Path) -> str:
    """The sha256 of `path`, from the memo when the file's identity is the one it was hashed under."""
    memo = _memo(path, memo_dir)
    identity = file_identity(path)
    try:
        known = json.loads(memo.read_text())
        if known.get("identity") == identity:
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(path)
    if file_identity(path) == identity:  # not changed while it was read
        remember_sha256(path, digest, memo_dir)
    return digest


def remember_sha256(path: Path, digest: str, memo_dir: Path) -> None:
    memo_dir.mkdir(parents=True, exist_ok=True)
    record = {"path": str(Path(path).resolve()), "identity": file_identity(path), "sha256": digest}
    write_text_atomic(_memo(path, memo_dir), json.dumps(record))
