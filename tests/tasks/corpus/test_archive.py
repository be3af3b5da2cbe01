import bz2
import io
import tarfile
import zipfile

import pytest
from helpers import SHARED_DATA

from tasks.corpus.sources.archive import ArchiveLimits, UnsafeArchiveError, extract

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
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
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
    small = ArchiveLimits(max_gb=0.001, max_ratio=1e9)
    with pytest.raises(UnsafeArchiveError, match=r"declares 5,000,000 bytes, past the limit of archives.max_gb=0.001"):
        extract(archive, tmp_path / "out", small)
    single = tmp_path / "zeros.bin.bz2"
    single.write_bytes(bz2.compress(b"\0" * 5_000_000))  # a bomb: no header tells its size
    with pytest.raises(UnsafeArchiveError, match="expands past the limit of archives.max_gb=0.001; refusing"):
        extract(single, tmp_path / "out", small)
    assert not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_by_its_expansion_ratio_in_one_line(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [(f"part{i}.txt", b"\0" * (64 << 20)) for i in range(4)])
    assert archive.stat().st_size < 1 << 20  # 256 MiB of zeros in a few hundred KB
    with pytest.raises(UnsafeArchiveError) as refused:
        extract(archive, tmp_path / "out")
    message = str(refused.value)
    assert (
        "\n" not in message and "declares 268,435,456 bytes, past the limit of archives.max_ratio=100 times" in message
    )
    assert not (tmp_path / "out").exists()
    text = make_zip(tmp_path / "text.zip", [("a.txt", "春眠不觉晓，处处闻啼鸟。".encode() * 20_000)])
    assert (extract(text, tmp_path / "text") / "a.txt").stat().st_size == 720_000  # text expands far less


def test_only_the_wanted_members_are_written(tmp_path):
    archive = make_zip(
        tmp_path / "a.zip", [("keep/a.json", b"{}"), ("skip/b.bin", b"\0" * (8 << 20)), ("c.json", b"[]")]
    )
    out = extract(archive, tmp_path / "out", ArchiveLimits(max_gb=0.001), wanted=lambda name: name.endswith(".json"))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["c.json", "keep/a.json"]


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
