"""The chinese-poetry database (github.com/chinese-poetry/chinese-poetry): JSON files of poems.

    for docs in read_poetry(files, reject):     # files: [(Path, "全唐诗/poet.tang.0.json"), ...]
        docs                                    # a list of Doc, one per poem

A file is a JSON array of poems (全唐诗's poet.tang.*.json, 宋词's ci.song.*.json, ...) or an anthology object whose
`content` holds groups of poems (蒙学/tangshisanbaishou.json: {"content": [{"type": "五言絕句", "content": [...]}]}).
A poem's text is its `paragraphs`, one per line, without the editorial notes in parentheses (`（京本作「作」）`,
`(七絃 一作：七絲)`: readings of other editions, not part of the poem). Its title is `title`, `rhythmic` (a ci's
tune) or the anthology's `subchapter` or `chapter`; `author`, and an anthology group's `type`, go to meta. A poem's
line is its position in the file (1-based), so its doc_id does not depend on the reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from tasks.corpus.formats.readers import Doc, Reject, batched, decode

_NOTE = re.compile(r"[（(][^（）()]*[）)]")


def _poems(value: object, group: str | None) -> Iterator[tuple[object, str | None]]:
    """Every poem record of a file's JSON value, with its anthology group's type."""
    if isinstance(value, list):
        for item in value:
            yield item, group
    elif isinstance(value, dict) and isinstance(value.get("content"), list):
        for item in value["content"]:
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                yield from _poems(item["content"], item.get("type") if isinstance(item.get("type"), str) else group)
            else:
                yield item, group
    else:
        yield value, group


def _poem_docs(files: list[tuple[Path, str]], reject: Reject) -> Iterator[Doc]:
    for path, name in files:
        text = decode(path.read_bytes(), name, reject)
        if text is None:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            reject("broken_json", name, None, f"{e}: {text[:200]}")
            continue
        for line, (record, group) in enumerate(_poems(value, None), start=1):
            if not isinstance(record, dict):
                reject("not_an_object", name, line, json.dumps(record, ensure_ascii=False)[:1000])
                continue
            paragraphs = record.get("paragraphs")
            if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
                reject("wrong_type:paragraphs", name, line, json.dumps(record, ensure_ascii=False)[:1000])
                continue
            lines = [stripped for p in paragraphs if (stripped := _NOTE.sub("", p).strip())]
            if not lines:
                reject("empty_text", name, line, json.dumps(record, ensure_ascii=False)[:1000])
                continue
            title = next(
                (t for key in ("title", "rhythmic", "subchapter", "chapter") if isinstance(t := record.get(key), str)),
                None,
            )
            author = record.get("author")
            meta = {"author": author if isinstance(author, str) else None, "type": group}
            yield Doc("\n".join(lines), title, name, line, {k: v for k, v in meta.items() if v} or None)


def read_poetry(files: list[tuple[Path, str]], reject: Reject) -> Iterator[list[Doc]]:
    return batched(_poem_docs(files, reject))
