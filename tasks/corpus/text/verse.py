"""How poem-shaped a text is: the share of its lines (runs of Han characters between punctuation or line breaks)
that hold 5 or 7 characters, the lines of classical Chinese verse.

    verse_line_share("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。")   # 1.0
    verse_line_share("今天天气很好，我们去公园散步吧。")                       # 0.0
"""

from __future__ import annotations

import re

_LINE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
VERSE_LENGTHS = (5, 7)


def verse_lines(text: str) -> list[str]:
    """The runs of Han characters of a text, split at everything else (punctuation, spaces, line breaks)."""
    return _LINE.findall(text)


def verse_line_share(text: str) -> float:
    """The share of the text's Han-character runs that are 5 or 7 characters long (0 for a text without any)."""
    lines = verse_lines(text)
    return sum(len(line) in VERSE_LENGTHS for line in lines) / len(lines) if lines else 0.0
