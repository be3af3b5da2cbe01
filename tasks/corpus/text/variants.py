"""One form per Chinese character for duplicate detection: traditional and variant forms folded to the simplified one.

    han_variants()["劍"], han_variants()["劒"], han_variants()["鴈"]   # "剑", "剑", "雁"

Two editions of the same text differ in more than traditional against simplified characters: an edition may write
鴈 for 雁, 緜 for 绵 or 劒 for 剑, forms that OpenCC's t2s leaves alone. Each Han character is sent through OpenCC's
t2s on its own (no phrase context) and through the zh-hans table of MediaWiki's Chinese converter (the `zhconv`
package), which also maps such variants, until nothing changes. The result only ever decides what counts as the
same text (exact keys and near-duplicate shingles); the training text keeps the characters it was written with.
"""

from __future__ import annotations

from functools import cache

import opencc
import zhconv

HAN_BLOCKS = (
    (0x3400, 0x4DBF),  # Extension A
    (0x4E00, 0x9FFF),  # Unified Ideographs
    (0xF900, 0xFAFF),  # Compatibility Ideographs
    (0x20000, 0x323AF),  # Extensions B to H
)
MAX_STEPS = 8


@cache
def han_variants() -> dict[str, str]:
    """Han character -> the one character it folds to, for every character that folds to another."""
    chars = [chr(cp) for first, last in HAN_BLOCKS for cp in range(first, last + 1)]
    t2s = opencc.OpenCC("t2s")

    def once(cs: list[str]) -> list[str]:
        simplified = t2s.convert("\n".join(cs)).split("\n")  # one character per line: no phrase spans two
        return [zhconv.convert(c, "zh-hans") for c in simplified]

    mapping = {c: f for c, f in zip(chars, once(chars), strict=True) if f != c and len(f) == 1}
    for _ in range(MAX_STEPS):  # a variant of a variant: follow to the end
        targets = sorted(set(mapping.values()))
        further = {t: f for t, f in zip(targets, once(targets), strict=True) if f != t and len(f) == 1}
        if not further:
            return mapping
        mapping = {c: further.get(f, f) for c, f in mapping.items() if further.get(f, f) != c}
    raise RuntimeError(f"Han variant chains longer than {MAX_STEPS} steps; the conversion tables loop")
