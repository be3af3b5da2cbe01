"""Sources: a URL with a range of numbers is one source per file, found under a mirror folder or downloaded."""

from urllib.parse import quote

import pytest

from gpt.config import ConfigError
from tasks.corpus.settings import SourceConfig
from tasks.corpus.stage1_raw import SourceError, resolve_source


def test_a_range_spells_out_one_url_per_number_with_its_mirror_path():
    source = SourceConfig(url="https://x.org/诗/poet.{0..2000..1000}.json", mirror_name="poems/诗/")
    assert [(s.url, s.mirror_name) for s in source.expand()] == [
        ("https://x.org/诗/poet.0.json", "poems/诗/poet.0.json"),
        ("https://x.org/诗/poet.1000.json", "poems/诗/poet.1000.json"),
        ("https://x.org/诗/poet.2000.json", "poems/诗/poet.2000.json"),
    ]
    assert [s.url for s in SourceConfig(url="https://x.org/a{1..2}/b{8..9}.txt").expand()] == [
        "https://x.org/a1/b8.txt", "https://x.org/a1/b9.txt", "https://x.org/a2/b8.txt", "https://x.org/a2/b9.txt",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("url", "sha256", "message"),
    [
        ("https://x.org/p.{0..9}.json", "0" * 64, "one sha256 cannot pin them"),
        ("https://x.org/p.{9..0}.json", "", r"the range \{9..0\} names no file"),
        ("https://x.org/p.{0..9..0}.json", "", "names no file"),
    ],
)
def test_ranges_that_cannot_work_are_config_errors(url, sha256, message):
    with pytest.raises(ConfigError, match=message):
        SourceConfig(url=url, sha256=sha256)


def test_a_path_in_chinese_characters_is_requested_percent_encoded(file_server, tmp_path):
    for n in (0, 1000):
        file_server.files[quote(f"/全唐诗/poet.tang.{n}.json")] = f"[{n}]".encode()
    source = SourceConfig(url=f"{file_server.url}/全唐诗/poet.tang.{{0..1000..1000}}.json")
    found = [resolve_source(one, tmp_path / "raw", mirror=None) for one in source.expand()]
    assert [f.files[0][0].read_text() for f in found] == ["[0]", "[1000]"]
    assert [f.files[0][1] for f in found] == ["poet.tang.0.json", "poet.tang.1000.json"]


def test_a_mirror_folder_holds_the_files_of_a_range(file_server, tmp_path):
    mirror = tmp_path / "mirror" / "poems" / "全唐诗"
    mirror.mkdir(parents=True)
    for n in (0, 1000):
        (mirror / f"poet.tang.{n}.json").write_text(f"[{n}]")
    source = SourceConfig(
        url=f"{file_server.url}/master/全唐诗/poet.tang.{{0..1000..1000}}.json", mirror_name="poems/全唐诗/"
    )
    found = [resolve_source(one, tmp_path / "raw", mirror=tmp_path / "mirror") for one in source.expand()]
    assert [f.files[0][0].read_text() for f in found] == ["[0]", "[1000]"]
    assert not file_server.requests


def test_an_archive_source_extracts_only_its_members(tmp_path):
    import zipfile

    archive = tmp_path / "new2016zh.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("new2016zh/news2016zh_valid.json", "{}\n")
        zf.writestr("new2016zh/news2016zh_train.json", "{}\n" * 1000)
    found = resolve_source(SourceConfig(path=str(archive), members=["*_valid.json"]), tmp_path / "raw", mirror=None)
    assert [name for _, name in found.files] == ["new2016zh/news2016zh_valid.json"]
    extracted = found.files[0][0].parents[1]
    assert sorted(p.name for p in extracted.rglob("*") if p.is_file()) == ["news2016zh_valid.json"]
    with pytest.raises(SourceError, match=r"no file matches members pattern '\*_test.json'"):
        resolve_source(SourceConfig(path=str(archive), members=["*_test.json"]), tmp_path / "raw", mirror=None)
