import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import SHARED_DATA
from test_ingest import read_output

from tasks.corpus.formats.jsonl import FieldsConfig
from tasks.corpus.settings import SourceConfig
from tasks.corpus.stage1_raw import resolve_source
from tasks.corpus.stage2_ingest import IngestOptions, ingest_files

THUCNEWS_ZIP = SHARED_DATA / "samples" / "thucnews" / "THUCNews.zip"


def ingest(tmp_path, files, fmt, **options):
    out = tmp_path / "out"
    counts = ingest_files(files, fmt, IngestOptions(fmt, **options), out)
    return counts, *read_output(out)


def test_thucnews_sample_headline_body_and_category(tmp_path):
    found = resolve_source(SourceConfig(path=str(THUCNEWS_ZIP), members=["THUCNews/*/*.txt"]), tmp_path / "raw", None)
    counts, rows, bad = ingest(tmp_path, found.files, "thucnews")
    assert len(rows) == 70 and bad == [] and counts["documents_read"] == 70
    categories = {json.loads(r["meta"])["category"] for r in rows}
    assert len(categories) == 14 and "体育" in categories
    for row in rows:
        assert row["title"] and not row["text"].startswith(row["title"]) and row["source_line"] is None
        assert row["source_file"].startswith("THUCNews/")


def test_text_split_by_file_line_and_paragraph(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("第一段第一行\n第一段第二行\n\n第二段\n", encoding="utf-8")
    files = [(path, "book.txt")]
    assert [r["text"] for r in ingest(tmp_path / "a", files, "text")[1]] == [path.read_text(encoding="utf-8")]
    lines = ingest(tmp_path / "b", files, "text", split="line")[1]
    assert [(r["text"], r["source_line"]) for r in lines] == [("第一段第一行", 1), ("第一段第二行", 2), ("第二段", 4)]
    paragraphs = ingest(tmp_path / "c", files, "text", split="paragraph")[1]
    assert [(r["text"], r["source_line"]) for r in paragraphs] == [("第一段第一行\n第一段第二行", 1), ("第二段", 4)]


def test_jsonl_and_parquet_with_a_field_mapping(tmp_path):
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text('{"body": "正文一", "head": "标题", "likes": 7}\n{"body": 5}\n', encoding="utf-8")
    fields = FieldsConfig(text="body", title="head", meta=["likes"])
    _, rows, bad = ingest(tmp_path / "j", [(jsonl, jsonl.name)], "jsonl", fields=fields)
    assert [(r["text"], r["title"], json.loads(r["meta"])) for r in rows] == [("正文一", "标题", {"likes": "7"})]
    assert [b["reason"] for b in bad] == ["wrong_type:body"]
    table = pa.table({"content": ["一", None, "三"], "tag": ["a", "b", None]})
    pq.write_table(table, tmp_path / "t.parquet")
    fields = FieldsConfig(text="content", meta=["tag"])
    _, rows, bad = ingest(tmp_path / "p", [(tmp_path / "t.parquet", "t.parquet")], "parquet", fields=fields)
    assert [(r["text"], r["source_line"], json.loads(r["meta"])) for r in rows] == [
        ("一", 1, {"tag": "a"}),
        ("三", 3, {"tag": None}),
    ]
    assert [(b["reason"], b["line"]) for b in bad] == [("empty_text", 2)]


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_openwebtext_subset_tars_are_streamed(tmp_path):
    inner = _tar({"0001.txt": b"First web page.", "0002.txt": b"Second page.", "0003.txt": b"  "}, mode="w:xz")
    subset = tmp_path / "urlsf_subset00.tar"
    subset.write_bytes(_tar({"openwebtext/urlsf_subset00-1_data.xz": inner}))
    _, rows, bad = ingest(tmp_path, [(subset, subset.name)], "openwebtext")
    assert [r["text"] for r in rows] == ["First web page.", "Second page."]
    assert rows[0]["source_file"] == "urlsf_subset00.tar:openwebtext/urlsf_subset00-1_data.xz:0001.txt"
    assert [b["reason"] for b in bad] == ["empty_text"]
