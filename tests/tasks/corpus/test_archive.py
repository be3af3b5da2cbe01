import bz2
import io
import tarfile
import zipfile

import pytest
from helpers import SHARED_DATA

from tasks.corpus.sources.archive import UnsafeArchiveError, extract

THUCNEWS_ZIP = SHARED_DATA / "samples" / "thucnews" / "THUCNews.zip"
CATEGORIES = set("财经 彩票 房产 股票 家居 教育 科技 社会 时尚 时政 体育 星座 游戏 娱乐".split())  # noqa: SIM905


def test_thucnews_gbk_names_are_decoded_and_macosx_skipped(tmp_path):
    out = extract(THUCNEWS_ZIP, tmp_path / "thucnews")
    assert {p.name for p in (out / "THUCNews").iterdir()} == CATEGORIES
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 70
    assert not [p for p in out.rglob("*") if "__MACOSX" in p.parts or p.name.startswith("._")]
    assert all(p.read_text(encoding="utf-8").strip() for p in files)


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("bad", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_zip_escapes_are_refused_and_nothing_is_written(tmp_path, bad):
    archive = make_zip(tmp_path / "bad.zip", [("ok.txt", b"fine"), (bad, b"x")])
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "links.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("innocent")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="link or special file"):
        extract(archive, tmp_path / "out")


def test_size_limit_counts_declared_and_written_bytes(tmp_path):
    archive = make_zip(tmp_path / "big.zip", [("zeros.bin", b"\0" * 5_000_000)])
    with pytest.raises(UnsafeArchiveError, match="declares more than"):
        extract(archive, tmp_path / "out", max_bytes=1_000_000)
    single = tmp_path / "zeros.bin.bz2"
    single.write_bytes(bz2.compress(b"\0" * 5_000_000))  # a bomb: no header tells its size
    with pytest.raises(UnsafeArchiveError, match="expands past the size limit"):
        extract(single, tmp_path / "out", max_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_tar_and_single_file_archives(tmp_path):
    archive = tmp_path / "corpus.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tf:
        data = "新华社北京电\n".encode()
        info = tarfile.TarInfo("new2016zh/news2016zh_valid.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = extract(archive, tmp_path / "out")
    assert (out / "new2016zh" / "news2016zh_valid.json").read_text(encoding="utf-8") == "新华社北京电\n"
    single = tmp_path / "a.json.bz2"
    single.write_bytes(bz2.compress(b"{}\n"))
    assert (extract(single, tmp_path / "single") / "a.json").read_bytes() == b"{}\n"
