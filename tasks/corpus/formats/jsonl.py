"""The source formats a corpus can be read from, and how each JSON-lines format becomes rows of the one schema.

    fmt = json_format("webtext2019zh")                        # or json_format("jsonl", FieldsConfig(text="body"))
    sql = shape_sql(fmt, corpus="webtext2019zh", source="web_text_zh_valid.json")   # over a table `numbered`

Each JSON line is parsed once by DuckDB (`json_type` and `json_extract_string` over every field path at once);
the shaping below works on those lists. Every row comes out either with the unified columns or with a reason
(broken_json, truncated_last_line, not_an_object, wrong_type:<field>, out_of_range:<field>, empty_text) for the
quarantine.

Corpus shaping (the text that filters and dedupe see; the corpus' template puts titles and questions back in front
of it for training, formats/templates.py): wiki2019zh moves the title line that opens `text` to `title`; news2016zh's
text is `content` (`desc` repeats its opening and goes to meta); baike2018qa turns `\\r` into newlines and drops a
`desc` that repeats the title; a webtext2019zh row is one answer, its question's title and desc go to meta as
question_title and question_desc; translation2019zh takes the side written in Chinese characters, whichever field
holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpt.config import ConfigError

JSON_FORMATS = ("wiki2019zh", "news2016zh", "baike2018qa", "webtext2019zh", "translation2019zh", "jsonl")
FORMATS = (*JSON_FORMATS, "thucnews", "chinese-poetry", "text", "parquet", "openwebtext")

_FIELD_NAME = re.compile(r"[^\W\d]\w*")
"""A field name (in any script): these names become JSON paths and column names of the stages' SQL."""
_TYPES = {
    "str": ("VARCHAR", "NULL"),
    "int": ("UBIGINT", "BIGINT", "NULL"),
    "id": ("UBIGINT", "BIGINT", "VARCHAR", "NULL"),  # an integer or a string, stored as a string
    "any": None,
}


@dataclass
class FieldsConfig:
    """Which fields of a `jsonl` line or columns of a `parquet` file hold what."""

    text: str = "text"
    """Field with the training text."""
    title: str = ""
    """Field with a title (optional)."""
    meta: list[str] = field(default_factory=list)
    """Fields kept as metadata (strings); they can be used in the corpus' `where` filter."""

    def __post_init__(self):
        for key, name in [("text", self.text), ("title", self.title), *(("meta", m) for m in self.meta)]:
            if name and not _FIELD_NAME.fullmatch(name):
                raise ConfigError(f"fields.{key}: {name!r} is not a field name (letters, digits and _ only)")


@dataclass(frozen=True)
class JsonFormat:
    """Fields to read (name -> str | int | id | any) and SQL for each output column, with `{field}` placeholders."""

    fields: dict[str, str]
    text: str
    title: str
    meta: dict[str, str]
    """Meta key -> SQL; the key is also a column of the corpus' `where` filter."""


def _slot(name: str) -> str:
    return "{" + name + "}"


CJK_CLASS = "\u4e00-\u9fff\u3400-\u4dbf"
"""The CJK ideographs counted as Chinese text (unified ideographs and extension A)."""


def _cjk_count(sql: str) -> str:
    return f"length(regexp_replace({sql}, '[^{CJK_CLASS}]', '', 'g'))"


_SWAPPED = f"({_cjk_count('{english}')} > {_cjk_count('{chinese}')})"

_KNOWN = {
    "wiki2019zh": JsonFormat(
        fields={"id": "id", "url": "str", "title": "str", "text": "str"},
        text="CASE WHEN starts_with({text}, {title} || chr(10)) "
        "THEN ltrim(substr({text}, length({title}) + 2), chr(10)) ELSE {text} END",
        title="{title}",
        meta={"id": "{id}", "url": "{url}"},
    ),
    "news2016zh": JsonFormat(
        fields={f: "str" for f in ("keywords", "title", "desc", "source", "time", "content")} | {"news_id": "id"},
        text="{content}",
        title="{title}",
        meta={k: _slot(k) for k in ("news_id", "keywords", "source", "time", "desc")},
    ),
    "baike2018qa": JsonFormat(
        fields={"qid": "id", "category": "str", "title": "str", "desc": "str", "answer": "str"},
        text="replace(replace({answer}, chr(13) || chr(10), chr(10)), chr(13), chr(10))",
        title="{title}",
        meta={
            "qid": "{qid}",
            "category": "{category}",
            "desc": "CASE WHEN {desc} IN ('', {title}) THEN NULL ELSE {desc} END",
        },
    ),
    "webtext2019zh": JsonFormat(
        fields={"qid": "id", "title": "str", "desc": "str", "topic": "str", "star": "int", "content": "str"}
        | {"answer_id": "id", "answerer_tags": "str"},
        text="{content}",
        title="NULL",
        meta={
            "qid": "{qid}",
            "question_title": "{title}",
            "question_desc": "{desc}",
            "topic": "{topic}",
            "star": "{star}::BIGINT",
            "answer_id": "{answer_id}",
            "answerer_tags": "{answerer_tags}",
        },
    ),
    "translation2019zh": JsonFormat(
        fields={"english": "str", "chinese": "str"},
        text=f"CASE WHEN {_SWAPPED} THEN {{english}} ELSE {{chinese}} END",
        title="NULL",
        meta={"swapped": _SWAPPED, "english": f"CASE WHEN {_SWAPPED} THEN {{chinese}} ELSE {{english}} END"},
    ),
}

META_TYPES = {"star": "BIGINT", "swapped": "BOOLEAN"}
"""Meta keys that are not strings, by name; used to type the columns of `where` filters."""

FORMAT_META = {name: list(fmt.meta) for name, fmt in _KNOWN.items()} | {
    "thucnews": ["category"],
    "chinese-poetry": ["author", "type"],
}
"""Meta keys each fixed format writes."""


def json_format(name: str, fields: FieldsConfig | None = None) -> JsonFormat:
    """The shaping of a JSON-lines format; `jsonl` is built from the field mapping."""
    if name in _KNOWN:
        return _KNOWN[name]
    if name != "jsonl":
        raise ConfigError(f"unknown JSON-lines format {name!r}; known: {', '.join(JSON_FORMATS)}")
    fields = fields or FieldsConfig()
    wanted = {fields.text: "str"} | ({fields.title: "str"} if fields.title else {})
    wanted |= {m: "any" for m in fields.meta if m not in wanted}
    return JsonFormat(
        fields=wanted,
        text=_slot(fields.text),
        title=_slot(fields.title) if fields.title else "NULL",
        meta={m: _slot(m) for m in fields.meta},
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _checks(name: str, kind: str, i: int) -> str:
    """SQL CASE branches giving the reason a field's value cannot be used: its JSON type (t[i + 2]), or an integer
    past what a signed 64-bit column holds (its text is v[i + 1])."""
    if _TYPES[kind] is None:
        return ""
    check = f"WHEN NOT coalesce(t[{i + 2}] IN {_TYPES[kind]}, true) THEN 'wrong_type:{name}'"
    if kind == "int":
        check += f" WHEN t[{i + 2}] = 'UBIGINT' AND try_cast(v[{i + 1}] AS BIGINT) IS NULL THEN 'out_of_range:{name}'"
    return check


def shape_sql(fmt: JsonFormat, corpus: str, source: str) -> str:
    """SQL over the table `numbered` (line_no, line) giving the schema's columns and a `reason` (NULL: keep).

    `$last` is the number of an unterminated last line (or -1): a parse failure there reads as truncation."""
    names = list(fmt.fields)
    paths = "[" + ", ".join(_quote(f"$.{name}") for name in names) + "]"
    slot = {name: f"v[{i + 1}]" for i, name in enumerate(names)}
    checks = " ".join(_checks(name, kind, i) for i, (name, kind) in enumerate(fmt.fields.items()))
    meta = ", ".join(f"{_quote(k)}, {sql.format(**slot)}" for k, sql in fmt.meta.items())
    return f"""
    WITH parsed AS (
        SELECT line_no, line, try(json_type(line, ['$', {paths[1:]})) AS t FROM numbered
    ), typed AS (
        SELECT line_no, t, CASE WHEN t IS NOT NULL THEN json_extract_string(line, {paths}) END AS v FROM parsed
    ), shaped AS (
        SELECT line_no, v,
            CASE WHEN t IS NULL THEN CASE WHEN line_no = $last THEN 'truncated_last_line' ELSE 'broken_json' END
                 WHEN t[1] <> 'OBJECT' THEN 'not_an_object'
                 {checks}
            END AS reason
        FROM typed
    ), projected AS (
        SELECT line_no, reason,
            CASE WHEN reason IS NULL THEN {fmt.text.format(**slot)} END AS text,
            CASE WHEN reason IS NULL THEN {fmt.title.format(**slot)} END AS title,
            CASE WHEN reason IS NULL THEN {f"json_object({meta})" if meta else "NULL"} END AS meta
        FROM shaped
    )
    SELECT
        left(md5({_quote(corpus)} || chr(31) || {_quote(source)} || chr(31) || line_no::VARCHAR), 16) AS doc_id,
        {_quote(corpus)} AS corpus, text, title, {_quote(source)} AS source_file, line_no AS source_line,
        meta::VARCHAR AS meta,
        coalesce(reason, CASE WHEN text IS NULL OR trim(text) = '' THEN 'empty_text' END) AS reason
    FROM projected
    """
