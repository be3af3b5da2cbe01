import hashlib
import os

import pytest

from tasks.corpus.sources.download import (
    DownloadError,
    RetryPolicy,
    TransientDownloadError,
    fetch,
    mirror_candidates,
)  # fmt: skip

FAST = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=5)


def payload(n: int = 3_000_000) -> bytes:
    return os.urandom(n)


def cache_files(cache):
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())


def test_dropped_connection_resumes_to_a_correct_file(file_server, tmp_path):
    body = payload()
    file_server.files["/data/big.bin"] = body
    file_server.drop_after["/data/big.bin"] = 1_000_000
    digest = hashlib.sha256(body).hexdigest()
    path = fetch(f"{file_server.url}/data/big.bin", tmp_path / "cache", sha256=digest, retry=FAST)
    assert path.read_bytes() == body
    assert path == tmp_path / "cache" / "sha256" / digest / "big.bin"
    resumed = file_server.requests[-1]
    assert resumed["range"] == "bytes=1000000-" and resumed["if-range"].startswith('"')
    assert len(file_server.requests) == 2


def test_changed_file_on_the_server_restarts_instead_of_splicing(file_server, tmp_path):
    first, second = payload(500_000), payload(500_000)
    url = f"{file_server.url}/f.bin"
    file_server.files["/f.bin"] = first
    file_server.drop_after["/f.bin"] = 100_000
    file_server.status["/f.bin"] = 503  # the retry meets a server error, then the file changes
    with pytest.raises(DownloadError, match="gave up after 1 tries"):
        fetch(url, tmp_path / "cache", retry=RetryPolicy(attempts=1, backoff_s=0.01, timeout_s=5))
    del file_server.status["/f.bin"]
    file_server.drop_after["/f.bin"] = 100_000
    with pytest.raises(DownloadError):
        fetch(url, tmp_path / "cache", retry=RetryPolicy(attempts=1, backoff_s=0.01, timeout_s=5))
    file_server.files["/f.bin"] = second  # a new ETag: If-Range no longer matches, the server sends it whole
    assert fetch(url, tmp_path / "cache", retry=FAST).read_bytes() == second
    assert file_server.requests[-1].get("range") == "bytes=100000-"


def test_sha256_mismatch_leaves_nothing_in_the_cache(file_server, tmp_path):
    file_server.files["/x.json"] = b'{"a": 1}\n'
    with pytest.raises(DownloadError, match="expected 0000.*nothing was kept in the cache"):
        fetch(f"{file_server.url}/x.json", tmp_path / "cache", sha256="0" * 64, retry=FAST)
    assert [f for f in cache_files(tmp_path / "cache") if not f.startswith("partial/")] == []
    assert cache_files(tmp_path / "cache") == []


def test_permanent_errors_fail_at_once_transient_ones_retry(file_server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{file_server.url}/missing", tmp_path / "cache", retry=FAST)
    assert len(file_server.requests) == 1
    file_server.files["/busy"] = b"ok"
    file_server.status["/busy"] = 503
    with pytest.raises(TransientDownloadError, match="gave up after 3 tries.*503"):
        fetch(f"{file_server.url}/busy", tmp_path / "cache", retry=FAST)
    assert len(file_server.requests) == 4


def test_a_body_without_a_length_is_kept_only_once_the_server_confirms_its_end(file_server, tmp_path):
    body = payload(7_244)
    file_server.files["/whole.txt"] = file_server.files["/cut.txt"] = file_server.files["/norange.txt"] = body
    file_server.unsized |= {"/whole.txt", "/cut.txt", "/norange.txt"}
    assert fetch(f"{file_server.url}/whole.txt", tmp_path / "a", retry=FAST).read_bytes() == body
    assert file_server.requests[-1]["range"] == "bytes=7244-"  # answered 416 */7244: nothing follows

    file_server.drop_after["/cut.txt"] = 2_000  # the connection closes cleanly after 2,000 bytes
    assert fetch(f"{file_server.url}/cut.txt", tmp_path / "b", retry=FAST).read_bytes() == body
    assert [r.get("range") for r in file_server.requests[-3:]] == [None, "bytes=2000-", "bytes=7244-"]

    file_server.drop_after["/norange.txt"] = 2_000
    file_server.no_ranges.add("/norange.txt")
    with pytest.raises(DownloadError, match="cannot be told from a whole one; add the file's sha256") as failed:
        fetch(f"{file_server.url}/norange.txt", tmp_path / "c", retry=FAST)
    assert not isinstance(failed.value, TransientDownloadError)
    assert not (tmp_path / "c" / "sha256").exists() and not (tmp_path / "c" / "urls").exists()
    digest = hashlib.sha256(body).hexdigest()  # pinned: the checksum decides, no confirmation needed
    assert fetch(f"{file_server.url}/norange.txt", tmp_path / "c", sha256=digest, retry=FAST).read_bytes() == body


def test_second_fetch_is_a_cache_hit_without_network(file_server, tmp_path):
    file_server.files["/a.txt"] = b"hello"
    url = f"{file_server.url}/a.txt"
    first = fetch(url, tmp_path / "cache", retry=FAST)
    file_server.close()
    assert fetch(url, tmp_path / "cache", retry=FAST) == first
    assert fetch(url, tmp_path / "cache", sha256=hashlib.sha256(b"hello").hexdigest()) == first


def test_mirror_is_searched_first(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "tinyshakespeare").mkdir(parents=True)
    (mirror / "tinyshakespeare" / "input.txt").write_text("To be")
    url = "https://example.invalid/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    path = fetch(url, tmp_path / "cache", mirror=mirror)
    assert path.read_text() == "To be"
    with pytest.raises(DownloadError, match="mirror copy .* expected"):
        fetch(url, tmp_path / "cache2", sha256="1" * 64, mirror=mirror)
    assert mirror_candidates("https://h/a/b/c.zip") == ["c.zip", "b/c.zip", "a/b/c.zip"]
