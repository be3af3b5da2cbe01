"""Download a source file into a content-addressed cache: resumable, retried, checksummed, mirror first.

    path = fetch("https://.../input.txt", cache_dir=Path("data/raw"), sha256="86c4...", mirror=Path("../shared/data"))

- A mirror folder (GPTFLOW_MIRROR, or the `mirror` argument) is searched first: for a URL ending in `.../a/b/c.txt`
  it looks for `c.txt`, `b/c.txt`, `a/b/c.txt`, ... under the mirror, or for the source's own `mirror_name`.
- Downloads stream into `cache/partial/`; an interrupted one resumes with `Range` + `If-Range`, so a file that
  changed on the server starts over instead of being spliced. Transient failures (connection errors, timeouts,
  HTTP 429 and 5xx) are retried with exponential backoff and end in TransientDownloadError; other HTTP errors fail
  at once. A body without a stated length is only kept once the server confirms its end (see _download).
- The finished file is checked against its sha256 (when given), written under `cache/tmp/` and renamed into
  `cache/sha256/<hex>/<name>`; a failure at any point leaves nothing in `cache/sha256/`, and a temporary whose
  writer was killed is removed by the next fetch.
- A cache hit is trusted only once its content is checked against its digest (hashed again whenever the file's
  identity changed, see identity.py); a damaged copy is fetched again, with a line saying so. A URL without a
  sha256 is checked for changes at every fetch: the mirror copy by its identity, the server by a conditional
  request (ETag / Last-Modified); a changed file is fetched again, and an unreachable server leaves the cached copy
  in use, with a line saying so.
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

from gpt.atomic import remove_stale_temporaries, temporary_name, write_text_atomic
from gpt.errors import FixableError, disk_error
from gpt.hashing import sha256_file
from tasks.corpus.sources.identity import file_identity, known_sha256, remember_sha256
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
    """The cached file of `digest`, once its content is checked; a copy that does not match is removed."""
    folder = cache_dir / "sha256" / digest
    remove_stale_temporaries(folder)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        found = known_sha256(path, cache_dir / "hashes")
        if found == digest:
            return path
        Progress(path.name).report(f"the cached copy {path} has sha256 {found}, not {digest}: fetching it again")
        path.unlink()
    return None


def _store(cache_dir: Path, source: Path, name: str, digest: str, move: bool) -> Path:
    """Put a verified file into cache/sha256/<digest>/<name>, through a temporary in cache/tmp/ that is removed
    on any failure; a full disk or a denied write names the cache folder."""
    final_dir, tmp_dir = cache_dir / "sha256" / digest, cache_dir / "tmp"
    tmp = tmp_dir / temporary_name(name)
    try:
        final_dir.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, final_dir / name)
    except OSError as e:
        if (written := disk_error(e, tmp_dir)) is None:
            raise
        raise written from e
    finally:
        tmp.unlink(missing_ok=True)
    remember_sha256(final_dir / name, digest, cache_dir / "hashes")
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


def _download(url: str, part: Path, retry: RetryPolicy, name: str, pinned: bool) -> dict[str, str]:
    """Stream `url` into `part`, resuming what is there; retries transient failures. Returns the validators the
    server sent with the file (etag, last_modified), to ask it later whether the file changed.

    A body whose end the server does not mark (no Content-Length, not chunked) ends the same way whether it is whole
    or cut short: unless the file is `pinned` by a sha256 (checked by the caller), a range request for what follows
    must then answer 416 with the file's length (or send the rest), else the download is refused."""
    meta_path = part.with_suffix(".part.json")
    delay, failures, confirming = retry.backoff_s, 0, False
    while True:
        have = part.stat().st_size if part.exists() else 0
        meta = json.loads(meta_path.read_text()) if meta_path.exists() and have else {}
        validators: dict[str, str] = meta.get("validators", {})
        validator = validators.get("etag") or validators.get("last_modified")
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
                validators = _validators(response.headers)
                write_text_atomic(meta_path, json.dumps({"url": url, "validators": validators}))
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
            return validators
        except urllib.error.HTTPError as e:
            if e.code == 416 and _length_of(e) == have:  # nothing follows the last byte: the file is whole
                meta_path.unlink(missing_ok=True)
                return validators
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


def _validators(headers) -> dict[str, str]:
    found = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
    return {k: v for k, v in found.items() if v}


def _changed_on_server(url: str, validators: dict[str, str], timeout: float) -> bool:
    """Whether the server holds another file than the one these validators came with (a conditional request)."""
    request = urllib.request.Request(quote(url, safe=URL_SAFE), headers={"User-Agent": "gptflow"})
    if "etag" in validators:
        request.add_header("If-None-Match", validators["etag"])
    if "last_modified" in validators:
        request.add_header("If-Modified-Since", validators["last_modified"])
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True  # 200: sent whole, so it changed (the body is downloaded again, resumably)
    except urllib.error.HTTPError as e:
        return e.code != 304  # another error is the download's to report


def _unchanged(url: str, record: dict, mirror_copy: Path | None, retry: RetryPolicy) -> bool:
    """Whether the file cached for an unpinned `url` is still what its mirror copy or its server holds."""
    say = Progress(Path(urlparse(url).path).name or url).report
    if mirror_copy is not None:
        same = record.get("mirror") == str(mirror_copy) and record.get("mirror_identity") == file_identity(mirror_copy)
        if not same:
            say(f"the mirror copy {mirror_copy} is not the one cached: reading it again")
        return same
    validators = {k: record[k] for k in ("etag", "last_modified") if record.get(k)}
    if not validators:
        say(f"{url}: the server gave no ETag or Last-Modified to ask whether it changed: downloading it again "
            "(a sha256 on the source pins it)")  # fmt: skip
        return False
    try:
        changed = _changed_on_server(url, validators, retry.timeout_s)
    except (OSError, http.client.HTTPException) as e:
        say(f"{url}: cannot ask the server whether it changed ({e}); using the cached copy")
        return True
    if changed:
        say(f"{url}: changed on the server since it was cached: downloading it again")
    return not changed


def _read_record(index: Path) -> dict | None:
    try:
        return json.loads(index.read_text())
    except (OSError, ValueError):
        return None


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
    remove_stale_temporaries(cache_dir / "tmp")
    index = _url_index(cache_dir, url)
    local = find_in_mirror(url, mirror, mirror_name)
    if sha256 and (hit := _cached(cache_dir, sha256)):
        return hit
    record = None if sha256 else _read_record(index)
    if record and (hit := _cached(cache_dir, record["sha256"])) and _unchanged(url, record, local, retry):
        return hit
    if local is not None:
        identity = file_identity(local)
        digest = known_sha256(local, cache_dir / "hashes")
        if sha256 and digest != sha256:
            raise DownloadError(
                f"mirror copy {local} of {url} has sha256 {digest}, expected {sha256}; replace or remove it"
            )
        path = _store(cache_dir, local, name, digest, move=False)
        origin: dict = {"mirror": str(local), "mirror_identity": identity}
    else:
        part = cache_dir / "partial" / f"{hashlib.sha1(url.encode()).hexdigest()}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        origin = _download(url, part, retry, name, pinned=bool(sha256))
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
    write_text_atomic(index, json.dumps(record | origin))
    return path
