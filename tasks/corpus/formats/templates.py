"""How a document becomes the text the model reads: a template per corpus, filled from its text, title and meta.

    template = Template(DEFAULT_TEMPLATES["webtext2019zh"])     # "{question_title}\n{question_desc}\n{text}"
    template.render("答案……", None, {"question_title": "问题", "question_desc": "问题"})   # "问题\n答案……"
    template.fields                                              # {"question_title", "question_desc", "text"}

A template is lines of literal text and `{field}`s: `text`, `title` or a meta key of the corpus' format. A line whose
fields are all empty is left out, and so is a line equal to the one kept before it (a question's description that
repeats its title). The corpus stages keep `text` apart from the title and meta, so the quality rules and dedupe
look at the text alone (two answers to one question are not duplicates because they share the question); the
tokens stage (and the bpe stage) read the rendered text.
"""

from __future__ import annotations

import string
from functools import cached_property

DEFAULT_TEMPLATES = {
    "wiki2019zh": "{title}\n{text}",
    "news2016zh": "{title}\n{text}",
    "thucnews": "{title}\n{text}",
    "baike2018qa": "{title}\n{desc}\n{text}",
    "webtext2019zh": "{question_title}\n{question_desc}\n{text}",
    "chinese-poetry": "{title}\n{author}\n{text}",
}
"""Headline then body for news, the title line for wiki, the question then the answer for Q&A, title and author
then the poem. Every other format: `{text}`."""
PLAIN = "{text}"


class Template:
    def __init__(self, spec: str, needs_text: bool = True):
        self.spec = spec
        self.lines = [list(string.Formatter().parse(line)) for line in spec.split("\n")]
        if needs_text and "text" not in self.fields:
            raise ValueError(f"template {spec!r} leaves out {{text}}, the document itself")

    @cached_property
    def fields(self) -> set[str]:
        return {name for line in self.lines for _, name, _, _ in line if name is not None}

    def render(self, text: str, title: str | None, meta: dict | None) -> str:
        values = {key: _value(value) for key, value in {**(meta or {}), "title": title, "text": text}.items()}
        kept: list[str] = []
        for line in self.lines:
            names = [name for _, name, _, _ in line if name is not None]
            if names and not any(values.get(name) for name in names):
                continue  # every field of the line is empty
            rendered = "".join(
                literal + (values.get(name, "") if name is not None else "") for literal, name, _, _ in line
            )
            if not kept or rendered != kept[-1]:
                kept.append(rendered)
        return "\n".join(kept)


def _value(value) -> str:
    return "" if value is None else str(value).strip()


def corpus_template(format_name: str, spec: str = "") -> Template:
    """The corpus' own template, or its format's default."""
    return Template(spec or DEFAULT_TEMPLATES.get(format_name, PLAIN))
