"""Where stage outputs live: a local folder, or any fsspec URL (s3://, gs://, az://, ...) with a local working copy.

    root = DataRoot("s3://bucket/gptflow", work=Path("~/.cache/gptflow/work/..."))
    root.is_complete("corpus/webtext2019zh-ab12")   # its marker here or at the URL
    root.local("corpus/webtext2019zh-ab12")         # its folder in the working copy, downloaded if only at the URL
    root.publish("corpus/webtext2019zh-ab12")       # upload a finished local folder, its marker last

Stages are always built in the working copy (DuckDB and Parquet read and write local files at full speed); with a
URL root each finished folder is then uploaded file by file and its `_SUCCESS` marker written last, so another
machine sees a folder only once it is whole. A stage found complete at the URL is a cache hit: nothing is downloaded
unless a later stage has to be built from it. raw/ (downloads) and tmp/ (DuckDB spill) stay in the working copy.
With a local root the working copy is the root itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gpt.atomic import atomic_dir, write_text_atomic
from gpt.config import ConfigError
from tasks.stage import INFO, MARKER, is_complete, read_info


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
        if is_complete(self.work / rel):
            return True
        return bool(self.url) and self.fs.exists(f"{self.url}/{rel}/{MARKER}")

    def read_info(self, rel: str) -> dict:
        if is_complete(self.work / rel):
            return read_info(self.work / rel)
        return json.loads(self.fs.cat_file(f"{self.url}/{rel}/{INFO}").decode("utf-8"))

    def local(self, rel: str) -> Path:
        """The local copy of a complete stage folder, downloaded first when only the URL has it."""
        folder = self.work / rel
        if is_complete(folder) or not self.url:
            return folder
        remote = f"{self.url}/{rel}"
        files = [f for f in self.fs.find(remote) if not f.endswith(f"/{MARKER}")]
        print(f"download {remote}: {len(files)} files", file=sys.stderr, flush=True)
        with atomic_dir(folder) as tmp:
            prefix = self.fs._strip_protocol(remote).rstrip("/") + "/"
            for name in files:
                target = tmp / self.fs._strip_protocol(name).removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(name, str(target))
        write_text_atomic(folder / MARKER, "")
        return folder

    def publish(self, rel: str) -> None:
        """Upload the finished local folder `rel` to the URL (nothing to do for a local root)."""
        if not self.url:
            return
        folder, remote = self.work / rel, f"{self.url}/{rel}"
        if self.fs.exists(remote):  # a crashed upload: start clean so that no stale file survives
            self.fs.rm(remote, recursive=True)
        files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER]
        print(f"upload {remote}: {len(files)} files", file=sys.stderr, flush=True)
        for path in files:
            self.fs.put_file(str(path), f"{remote}/{path.relative_to(folder).as_posix()}")
        self.fs.pipe_file(f"{remote}/{MARKER}", b"")
