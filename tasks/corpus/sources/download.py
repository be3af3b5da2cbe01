"""Download a source file into a content-addressed cache: resumable, retried, checksummed, mirror first.

    path = fetch("https://.../input.txt", cache_dir=Path("data/raw"), sha256="86c4...", mirror=Path("../shared/data"))

- A mirror folder (GPTFLOW_MIRROR, or the `mirror` argument) is searched first: for a URL ending in `.../a/b/c.txt`
  it looks for `c.txt`, `b/c.txt`, `a/b/c.txt`, ... under the mirror, or for the source's own `mirror_name`.
- Downloads stream into `cache/partial/`; an interrupted one resumes with `Range` + `If-Range`, so a file that
  changed on the server starts over instead of being spliced. Transient failures (connection errors, timeouts,
  HTTP 429 and 5xx) are retried with exponential backoff and end in TransientDownloadError; other HTTP errors fail
  at once. A body without a stated length is only kept once the server confirms its end (see _download).
- The finished file is checked against its sha256 (when given) and renamed into `cache/sha256/<hex>/<name>`; a
  mismatch deletes the download and leaves nothing in the cache. A second fetch of a known URL touches no network.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from gpt.atomic import write_text_atomic
from gpt.errors import FixableError, disk_error
from gpt.hashing import sha256_file
from tasks.parallel import Progress

CHUNK = 1 << 20
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
"""Characters a URL keeps as they are when sent; the rest (a path in Chinese characters) is percent-encoded."""
LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class DownloadError(FixableError, RuntimeError):
    """A download that cannot succeed as configured; the message says what and where."""


class TransientDownloadError(DownloadError):
    """A download that kept failing on the network or the server (connections, timeouts, HTTP 429 and 5xx): the
    only kind worth trying again later."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    """Tries in all, the first included."""
    backoff_s: float = 1.0
    """Wait before the second try; doubles after each failure."""
    timeout_s: float = 60.0
    """Socket timeout for connecting and for each read."""


def _cached(cache_dir: Path, digest: str) -> Path | None:
    folder = cache_dir / "sha256" / digest
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return files[0] if files else None


def _store(cache_dir: Path, source: Path, name: str, digest: str, move: bool) -> Path:
    """Put a verified file into cache/sha256/<digest>/<name> atomically."""
    final_dir = cache_dir / "sha256" / digest
    final_dir.mkdir(parents=True, exist_ok=True)
    tmp = final_dir / f".{name}.tmp-{os.getpid()}"
    if move:
        os.replace(source, tmp)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, final_dir / name)
    return final_dir / name


def _url_index(cache_dir: Path, url: str) -> Path:
    return cache_dir / "urls" / f"{hashlib.sha1(url.encode()).hexdigest()}.json"


def mirror_candidates(url: str, mirror_name: str | None = None) -> list[str]:
    """Relative paths under a mirror folder that may hold this URL's file, most specific last."""
    if mirror_name:
        return [mirror_name]
    parts = [unquote(p) for p in urlparse(url).path.split("/") if p]
    return ["/".join(parts[i:]) for i in range(len(parts) - 1, -1, -1)]


def find_in_mirror(url: str, mirror: Path | None, mirror_name: str | None = None) -> Path | None:
    if mirror is None or not mirror.is_dir():
        return None
    for rel in mirror_candidates(url, mirror_name):
        if (mirror / rel).is_file():
            return mirror / rel
    return None


def _progress_line(progress: Progress, done: int, start: int, total: int | None) -> str:
    """Megabytes so far (of the total), rate and time left."""
    rate = progress.rate(done - start)
    if total:
        eta = (total - done) / rate if rate > 0 else float("inf")
        return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB {rate / 1e6:.2f} MB/s ETA {eta:.0f}s"
    return f"{done / 1e6:.1f} MB {rate / 1e6:.2f} MB/s"


def _download(url: str, part: Path, retry: RetryPolicy, name: str, pinned: bool) -> None:
    """Stream `url` into `part`, resuming what is there; retries transient failures.

    A body whose end the server does not mark (no Content-Length, not chunked) ends the same way whether it is whole
    or cut short: unless the file is `pinned` by a sha256 (checked by the caller), a range request for what follows
    must then answer 416 with the file's length (or send the rest), else the download is refused."""
    meta_path = part.with_suffix(".part.json")
    delay, failures, confirming = retry.backoff_s, 0, False
    while True:
        have = part.stat().st_size if part.exists() else 0
        validator = json.loads(meta_path.read_text()).get("validator") if meta_path.exists() and have else None
        request = urllib.request.Request(quote(url, safe=URL_SAFE), headers={"User-Agent": "gptflow"})
        if have and validator:
            request.add_header("Range", f"bytes={have}-")
            request.add_header("If-Range", validator)
        elif confirming:
            raise DownloadError(_unconfirmed(url, "sends no ETag or Last-Modified to ask with"))
        try:
            with urllib.request.urlopen(request, timeout=retry.timeout_s) as response:
                resumed = response.status == 206
                if confirming and not resumed:
                    raise DownloadError(_unconfirmed(url, "ignores range requests"))
                if not resumed:
                    have = 0  # a full answer: the server ignored the range or the file changed
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                tag = response.headers.get("ETag") or response.headers.get("Last-Modified")
                write_text_atomic(meta_path, json.dumps({"url": url, "validator": tag}))
                progress, done = Progress(name, every=1.0), have
                with open(part, "ab" if resumed else "wb") as fh:
                    while block := response.read(CHUNK):
                        fh.write(block)
                        done += len(block)
                        progress.report(_progress_line(progress, done, have, total))
                if total is not None and part.stat().st_size != total:
                    raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")
                progress.report(_progress_line(progress, done, have, total) + " done", final=True)
                if total is None and not response.chunked and not pinned:
                    confirming = True  # ask for what follows the last byte: 416 with this length means none
                    continue
            meta_path.unlink(missing_ok=True)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416 and _length_of(e) == have:  # nothing follows the last byte: the file is whole
                meta_path.unlink(missing_ok=True)
                return
            if e.code == 416:  # the partial file is not a prefix of what the server has: start over
                part.unlink(missing_ok=True)
                failure: Exception = e
            elif e.code not in TRANSIENT_HTTP:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check the URL in pipelines.yaml") from e
            else:
                failure = e
        except (OSError, http.client.HTTPException) as e:  # connection refused, reset, timed out, cut short
            if getattr(e, "errno", None) in LOCAL_ERRNOS:  # writing here failed, not the network: no retry helps
                raise disk_error(e, part.parent) from e
            failure = e
        failures += 1
        if failures == retry.attempts:
            raise TransientDownloadError(f"{url}: gave up after {failures} tries; last error: {failure}") from failure
        Progress(name).report(f"{failure}; retrying in {delay:.0f}s ({failures}/{retry.attempts})")
        time.sleep(delay)
        delay *= 2


def _length_of(error: urllib.error.HTTPError) -> int | None:
    """The file length a 416 answer states (`Content-Range: bytes */N`), if it states one."""
    found = re.fullmatch(r"bytes \*/(\d+)", error.headers.get("Content-Range", "") if error.headers else "")
    return int(found.group(1)) if found else None


def _unconfirmed(url: str, why: str) -> str:
    return (
        f"{url}: the server marks no end to the file (no Content-Length, not chunked) and {why}, so a transfer cut "
        "short cannot be told from a whole one; add the file's sha256 to the source in pipelines.yaml, or download "
        "it yourself and use `path:`"
    )


def fetch(
    url: str,
    cache_dir: Path,
    sha256: str | None = None,
    mirror: Path | None = None,
    mirror_name: str | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Path:
    """The cached file for `url`, downloading it (or copying it from the mirror) when needed."""
    cache_dir = Path(cache_dir)
    name = Path(urlparse(url).path).name or "download"
    if sha256 and (hit := _cached(cache_dir, sha256)):
        return hit
    index = _url_index(cache_dir, url)
    if not sha256 and index.exists() and (hit := _cached(cache_dir, json.loads(index.read_text())["sha256"])):
        return hit
    local = find_in_mirror(url, mirror, mirror_name)
    if local is not None:
        digest = sha256_file(local)
        if sha256 and digest != sha256:
            raise DownloadError(
                f"mirror copy {local} of {url} has sha256 {digest}, expected {sha256}; replace or remove it"
            )
        path = _store(cache_dir, local, name, digest, move=False)
    else:
        part = cache_dir / "partial" / f"{hashlib.sha1(url.encode()).hexdigest()}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        _download(url, part, retry, name, pinned=bool(sha256))
        digest = sha256_file(part)
        if sha256 and digest != sha256:
            part.unlink()
            raise DownloadError(
                f"{url} downloaded with sha256 {digest}, expected {sha256}; nothing was kept in the cache. "
                "The file may have changed upstream: check it and update sha256 in pipelines.yaml."
            )
        path = _store(cache_dir, part, name, digest, move=True)
    index.parent.mkdir(parents=True, exist_ok=True)
    record = {"url": url, "sha256": digest, "bytes": path.stat().st_size, "file": str(path.relative_to(cache_dir))}
    write_text_atomic(index, json.dumps(record))
    return path
