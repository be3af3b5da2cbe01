"""Chinese quality rules, applied by the filter stage: tidy each document, then keep it or drop it with a reason.

    rules = rules_for("qa", {"min_chars": 10})           # the kind's defaults, then overrides
    kept, dropped = apply_rules(table, rules, counts)    # Arrow tables of the corpus schema; counts: a Counter
    # kept gets `exact_key` (for the dedupe stage) and `chars`; dropped gets `reason`

Tidying: `<br>` and `<p>` become line breaks, other HTML tags and common entities go (strip_markup); `\\r\\n` and
`\\r` become `\\n`; control characters are removed, and so are bidi controls and invisible format characters
(INVISIBLE: text that reads differently from what it holds; counted as `removed_invisible_chars`); spaces at line
ends, full-width indentation and runs of blank lines are folded; optionally traditional characters become
simplified ones (OpenCC, `t2s`).

Rules, checked in this order, each a reason in the counts: control_chars (on the raw text), too_short, too_long,
low_cjk_share, repeated_lines, repeated_ngrams, spam. Kinds of text have their own defaults: short QA answers
(`qa`), long articles (`article`), single sentences (`sentence`) and English text (`english`).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gpt.config import ConfigError
from tasks.corpus.settings import QualityRules
from tasks.corpus.text.stats import scan_raw, text_stats

INVISIBLE = "\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
"""Zero-width space, bidi marks, embeddings, overrides and isolates, word joiner, zero-width no-break space (BOM)."""
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\ufffd{INVISIBLE}]")
_BREAK_TAGS = re.compile(r"<\s*(?:br|/?p)\s*/?\s*>", re.IGNORECASE)
_OTHER_TAGS = re.compile(r"</?(?:p|div|span|a|b|i|u|em|strong|font|img|ul|ol|li|table|tr|td|th|h[1-6])\b[^<>]*>", re.I)
_ENTITY = re.compile(r"&(?:nbsp|amp|lt|gt|quot|apos|#\d{1,6}|#x[0-9a-fA-F]{1,5});")
_LINE_EDGES = re.compile(r"[ \t]+\n|\n[ \t\u3000]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


@cache
def _converter():
    try:
        import opencc
    except ImportError as e:
        raise ConfigError("to_simplified needs the OpenCC package: pip install opencc") from e
    return opencc.OpenCC("t2s")


def tidy(text: str, rules: QualityRules) -> str:
    """Markup, line breaks, control characters and whitespace folded; the words themselves untouched."""
    if rules.strip_markup and ("<" in text or "&" in text):
        text = _BREAK_TAGS.sub("\n", text)
        text = _OTHER_TAGS.sub("", text)
        text = _ENTITY.sub(lambda m: html.unescape(m.group()).replace("\xa0", " "), text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if "\n" in text:
        text = _LINE_EDGES.sub(lambda m: "\n", text)
        text = _BLANK_RUNS.sub("\n\n", text)
    if rules.to_simplified:
        text = _converter().convert(text)
    return text.strip()


def _spam_pattern(phrases: list[str]) -> str:
    return "|".join(re.escape(phrase) for phrase in phrases)


def apply_rules(table: pa.Table, rules: QualityRules, counts: Counter | None = None) -> tuple[pa.Table, pa.Table]:
    """(kept rows with tidied text, `chars` and `exact_key`; dropped rows' doc_id, source and `reason`).

    Only the documents that tidying would change (found by scan_raw) go through Python; every statistic comes from
    the compiled kernels of text/stats.py."""
    raw = table.column("text").combine_chunks()
    scan = scan_raw(raw, rules.strip_markup)
    if counts is not None:
        counts["removed_invisible_chars"] += int(scan.invisible.sum())
    untidy = scan.untidy | rules.to_simplified
    texts = raw
    if untidy.any():
        tidied = pa.array([tidy(t, rules) for t in raw.filter(pa.array(untidy)).to_pylist()], raw.type)
        texts = pc.replace_with_mask(raw, pa.array(untidy), tidied)
    stats = text_stats(
        texts, rules.ngram, ngrams=rules.max_repeated_ngram_share < 1, lines=rules.max_repeated_line_share < 1
    )
    chars = stats.chars
    reasons = np.full(len(raw), None, dtype=object)

    def drop(mask: np.ndarray, reason: str) -> None:
        reasons[mask & (reasons == None)] = reason  # noqa: E711 - elementwise comparison

    drop(scan.controls > rules.max_control_chars, "control_chars")
    drop(chars < rules.min_chars, "too_short")
    if rules.max_chars:
        drop(chars > rules.max_chars, "too_long")
    if rules.min_cjk_share > 0:
        drop(stats.cjk < rules.min_cjk_share * np.maximum(chars, 1), "low_cjk_share")
    drop(stats.repeated_line_share > rules.max_repeated_line_share, "repeated_lines")
    drop(stats.repeated_ngram_share > rules.max_repeated_ngram_share, "repeated_ngrams")
    if rules.spam_phrases:
        hits = pc.count_substring_regex(texts, _spam_pattern(rules.spam_phrases)).to_numpy(zero_copy_only=False)
        drop(hits > rules.max_spam_hits, "spam")
    keep = reasons == None  # noqa: E711
    keys = stats.exact_keys[keep]
    kept = table.set_column(table.schema.get_field_index("text"), "text", texts)
    kept = kept.filter(pa.array(keep)).append_column("chars", pa.array(chars[keep]))
    kept = kept.append_column(
        "exact_key",
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(keys), [None, pa.py_buffer(keys.tobytes())]),
    )
    dropped = table.select(["doc_id", "source_file", "source_line"]).filter(pa.array(~keep))
    dropped = dropped.append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
    return kept, dropped
