"""Readers for the formats that are not JSON lines: THUCNews articles, plain text, Parquet and OpenWebText.

    for docs in read_thucnews(files, reject):            # files: [(Path, "THUCNews/体育/0.txt"), ...]
        docs                                             # a list of Doc, one per article

Each reader yields lists of `Doc` (text, title, source name, line or row, meta) and calls `reject(reason, name,
line, raw)` for everything it cannot use, so the caller counts and quarantines it. Formats:
- thucnews: one article per file; line 1 is the headline, the body follows; the category is the folder name.
- text: `split` decides what a document is: the whole file, each line, or each blank-line separated paragraph.
- parquet: one document per row; `fields` names the text, title and meta columns.
- openwebtext: `.parquet` files (column `text`), `.txt` files (one document each), or the original tarballs
  (`urlsf_subset*.tar` holding `*_data.xz` tars of `.txt` documents), streamed without unpacking to disk.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from tasks.corpus.formats.jsonl import FieldsConfig
from tasks.corpus.formats.lines import BOM, LineStats, read_lines

Reject = Callable[[str, str, int | None, str], None]
BATCH_DOCS = 5_000


@dataclass(frozen=True)
class Doc:
    text: str
    title: str | None
    source: str
    line: int | None
    meta: dict | None = None


def decode(data: bytes, name: str, reject: Reject) -> str | None:
    try:
        return data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        reject("invalid_utf8", name, None, data[:200].decode("utf-8", errors="replace"))
        return None


def batched(docs: Iterator[Doc]) -> Iterator[list[Doc]]:
    batch: list[Doc] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= BATCH_DOCS:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_file(path: Path, name: str, reject: Reject, max_bytes: int) -> str | None:
    """A one-document file's text; a file past `max_bytes` (0: no limit) is rejected unread."""
    if max_bytes and (size := path.stat().st_size) > max_bytes:
        with open(path, "rb") as fh:
            reject("file_too_long", name, None, f"{size:,} bytes: " + fh.read(200).decode("utf-8", errors="replace"))
        return None
    return decode(path.read_bytes(), name, reject)


def _thucnews_docs(files: list[tuple[Path, str]], reject: Reject, max_bytes: int) -> Iterator[Doc]:
    for path, name in files:
        text = _read_file(path, name, reject, max_bytes)
        if text is None:
            continue
        headline, _, body = text.replace("\r\n", "\n").partition("\n")
        if not body.strip():
            reject("empty_text", name, None, text[:200])
            continue
        category = PurePosixPath(name).parent.name or None
        yield Doc(body.strip("\n"), headline.strip() or None, name, None, {"category": category})


def read_thucnews(files: list[tuple[Path, str]], reject: Reject, max_bytes: int = 0) -> Iterator[list[Doc]]:
    return batched(_thucnews_docs(files, reject, max_bytes))


def _text_docs(files: list[tuple[Path, str]], split: str, reject: Reject, max_bytes: int) -> Iterator[Doc]:
    for path, name in files:
        if split == "file":
            text = _read_file(path, name, reject, max_bytes)
            if text is not None and text.strip():
                yield Doc(text, None, name, None)
            elif text is not None:
                reject("empty_text", name, None, "")
            continue
        stats = LineStats()
        paragraph: list[str] = []
        start = previous = 0
        for batch in read_lines(path, stats, max_line_bytes=max_bytes):
            for line_no, reason, raw in batch.rejected:
                reject(reason, name, line_no, raw.decode("utf-8", errors="replace"))
            numbers, lines = batch.table.column("line_no").to_pylist(), batch.table.column("line").to_pylist()
            for line_no, line in zip(numbers, lines, strict=True):
                if split == "line":
                    yield Doc(line, None, name, line_no)
                    continue
                if paragraph and line_no != previous + 1:  # a blank or rejected line ended the paragraph
                    yield Doc("\n".join(paragraph), None, name, start)
                    paragraph = []
                if not paragraph:
                    start = line_no
                paragraph.append(line)
                previous = line_no
        if paragraph:
            yield Doc("\n".join(paragraph), None, name, start)


def read_text(files: list[tuple[Path, str]], split: str, reject: Reject, max_bytes: int = 0) -> Iterator[list[Doc]]:
    """Documents of plain text files; a line (or a one-document file) past `max_bytes` is rejected unread."""
    return batched(_text_docs(files, split, reject, max_bytes))


def read_parquet(path: Path, name: str, fields: FieldsConfig, reject: Reject) -> Iterator[list[Doc]]:
    columns = [c for c in dict.fromkeys([fields.text, fields.title, *fields.meta]) if c]
    parquet = pq.ParquetFile(path)
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        raise ValueError(f"{name}: no column {', '.join(missing)}; it has {', '.join(parquet.schema_arrow.names)}")
    row = 0
    for batch in parquet.iter_batches(batch_size=BATCH_DOCS, columns=columns):
        values = batch.to_pydict()
        docs = []
        for i, text in enumerate(values[fields.text]):
            row += 1
            if not isinstance(text, str) or not text.strip():
                reject("empty_text" if text is None or isinstance(text, str) else "wrong_type:text", name, row, "")
                continue
            title = values[fields.title][i] if fields.title else None
            meta = {m: None if values[m][i] is None else str(values[m][i]) for m in fields.meta} or None
            docs.append(Doc(text, str(title) if title is not None else None, name, row, meta))
        yield docs


def _tar_docs(tf: tarfile.TarFile, name: str, reject: Reject) -> Iterator[Doc]:
    """`.txt` members of a tar as documents; `.xz` members (OpenWebText's subsets) are tars of their own."""
    for member in tf:
        fh = tf.extractfile(member) if member.isfile() else None
        if fh is None:
            continue
        inner = f"{name}:{member.name}"
        if member.name.endswith(".xz"):
            with tarfile.open(fileobj=fh, mode="r|xz") as nested:
                yield from _tar_docs(nested, inner, reject)
        elif member.name.endswith(".txt"):
            text = decode(fh.read(), inner, reject)
            if text is not None and text.strip():
                yield Doc(text, None, inner, None)
            elif text is not None:
                reject("empty_text", inner, None, "")


def read_openwebtext(files: list[tuple[Path, str]], reject: Reject) -> Iterator[list[Doc]]:
    plain = [(p, n) for p, n in files if n.endswith(".txt")]
    if plain:
        yield from read_text(plain, "file", reject)
    for path, name in files:
        if name.endswith(".parquet"):
            yield from read_parquet(path, name, FieldsConfig(text="text"), reject)
        elif name.endswith((".xz", ".tar", ".tar.gz", ".tgz")):
            with tarfile.open(path, "r|*") as tf:
                yield from batched(_tar_docs(tf, name, reject))


def meta_json(meta: dict | None) -> str | None:
    return json.dumps(meta, ensure_ascii=False) if meta else None
