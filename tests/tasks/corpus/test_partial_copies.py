"""Documents inside longer ones: containment measured from the sketches against a Python reference, the rule that
keeps the longest without chaining, and real poems and THUCNews articles cut short or missing lines found as copies
of their whole."""

import json
import random
import zipfile

import numpy as np
import pytest
from helpers import SHARED_DATA
from test_near_duplicates import POEMS, reference_units, search

from tasks.corpus.settings import NearConfig
from tasks.corpus.text.sketch import Sketcher, overlap


def bigrams(text: str) -> set:
    units = reference_units(text)
    return {tuple(units[i : i + 2]) for i in range(max(len(units) - 1, 1))}


def reference_containment(part: str, whole: str) -> float:
    """Share of part's bigram shingles that whole holds."""
    mine = bigrams(part)
    return len(mine & bigrams(whole)) / len(mine)


def sketched(a: str, b: str, size: int = 256) -> tuple[float, float, float]:
    found = Sketcher(2, 32, 8, size).sketch([a, b])
    first, second = (np.array(v, dtype=np.uint32) for v in found.sketch.to_pylist())
    return overlap(first, found.shingles[0], second, found.shingles[1], size)


def han(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(count))


def real_wholes() -> list[str]:
    """Poems of 全唐诗 and THUCNews articles of at least 50 characters, each once."""
    texts = []
    for name in ("poet.tang.3000.json", "poet.tang.4000.json"):
        texts += ["\n".join(p["paragraphs"]) for p in json.loads((POEMS / "全唐诗" / name).read_text())]
    with zipfile.ZipFile(SHARED_DATA / "samples" / "thucnews" / "THUCNews.zip") as z:
        texts += [z.read(n).decode() for n in z.namelist() if n.endswith(".txt") and "__MACOSX" not in n]
    return list(dict.fromkeys(t for t in texts if len(t) >= 50))


def part_of(text: str, share: float, rng: random.Random, by_lines: bool) -> str:
    """A piece of `share` of text's characters at a random place, or text with random lines removed down to it."""
    if by_lines:
        lines = text.split("\n")
        while len(lines) > 1 and sum(map(len, lines)) > share * len(text):
            lines.pop(rng.randrange(len(lines)))
        return "\n".join(lines)
    size = round(share * len(text))
    start = rng.randrange(len(text) - size + 1)
    return text[start : start + size]


def test_containment_from_sketches_equals_the_reference():
    wholes = real_wholes()
    rng = random.Random(0)
    for whole in wholes[:40]:  # short poems: whole sketches, so exact
        part = part_of(whole, 0.5, rng, by_lines=False)
        similarity, part_in_whole, whole_in_part = sketched(part, whole)
        assert similarity == pytest.approx(len(bigrams(part) & bigrams(whole)) / len(bigrams(part) | bigrams(whole)))
        assert part_in_whole == pytest.approx(reference_containment(part, whole))
        assert whole_in_part == pytest.approx(reference_containment(whole, part))
    articles = [t for t in wholes if len(t) > 1500][:5]  # beyond the sketch: estimated below both sketches' limits
    for article in articles:
        part = part_of(article, 0.4, rng, by_lines=False) + han(60, 1)
        assert sketched(part, article)[1] == pytest.approx(reference_containment(part, article), abs=0.08)


def test_a_part_is_dropped_for_the_longer_whole_whatever_their_order(tmp_path):
    whole = han(120, 1)
    part = whole[30:90]
    found = search(tmp_path / "part-first", [part, han(80, 2), whole])
    assert found.duplicate_of.tolist() == [2, -1, -1] and found.contained.tolist() == [True]
    assert found.similarity_to[0] == pytest.approx(1.0)
    found = search(tmp_path / "whole-first", [whole, part])
    assert found.duplicate_of.tolist() == [-1, 0]


def test_containment_never_chains_and_short_texts_stay(tmp_path):
    whole = han(100, 3)
    middle = whole[:80] + han(15, 4)  # about 0.84 of it inside whole
    inner = whole[60:80] + han(15, 4)  # inside middle, not inside whole
    assert reference_containment(middle, whole) >= 0.8 and reference_containment(inner, middle) == 1.0
    assert reference_containment(inner, whole) < 0.8
    found = search(tmp_path / "chain", [whole, middle, inner])
    assert found.duplicate_of.tolist() == [-1, 0, -1]  # inner's only container is dropped: it stays
    quote = whole[10:17]  # 6 bigrams: under containment_min_shingles
    found = search(tmp_path / "short", [whole, quote])
    assert found.duplicate_of.tolist() == [-1, -1]
    found = search(tmp_path / "off", [whole, whole[:50]], NearConfig(containment=0))
    assert found.duplicate_of.tolist() == [-1, -1]


def test_a_document_standing_for_a_similar_one_is_not_dropped_as_contained(tmp_path):
    whole = han(200, 5)
    part = whole[:100]
    twin = part[:95] + han(5, 6)  # similar to part (above 0.7), mostly inside whole too
    found = search(tmp_path, [part, twin, whole])
    assert found.duplicate_of.tolist() == [-1, 0, -1]  # twin goes for part, and part then stands: no chain


def test_real_texts_cut_short_or_missing_lines_are_found_as_copies_of_their_whole(tmp_path):
    wholes = real_wholes()
    kept = search(tmp_path / "as-is", wholes).duplicate_of < 0  # their own repeats (two editions of a poem) aside
    originals = [t for t, k in zip(wholes, kept, strict=True) if k]
    rng = random.Random(2)
    sources = rng.sample(range(len(originals)), 400)
    parts = [part_of(originals[s], rng.uniform(0.3, 0.9), rng, by_lines=k % 2 == 1) for k, s in enumerate(sources)]
    found = search(tmp_path / "planted", originals + parts)
    assert (found.duplicate_of[: len(originals)] < 0).all()
    leaders = found.duplicate_of[len(originals) :]
    found_whole = (leaders == np.array(sources)).sum()
    assert found_whole >= 0.98 * 400, f"{found_whole} of 400 found"


def test_anchors_are_sampled_consistently_and_counted_by_level():
    wholes = [t for t in real_wholes() if len(t) > 1000][:3]
    sketcher = Sketcher(2, 32, 8, 256, anchor_ngram=5, anchors=32)
    for whole in wholes:
        part = whole[: len(whole) // 3]
        found = sketcher.sketch([whole, part])
        anchors = [np.array(a, dtype=np.uint64) for a in found.anchors.to_pylist()]
        levels = found.anchor_level
        assert levels[0] > levels[1] and 32 <= len(anchors[0]) <= 4 * 32
        for k in range(2):
            assert len(np.unique(anchors[k])) == len(anchors[k]) == found.anchor_counts[k, 0]
            for above in range(found.anchor_counts.shape[1]):
                low = np.uint64((1 << int(levels[k] + above)) - 1)
                assert found.anchor_counts[k, above] == ((anchors[k] & low) == 0).sum()
        low = np.uint64((1 << int(levels[0])) - 1)
        reachable = anchors[1][(anchors[1] & low) == 0]  # the part's anchors at the whole's level: the whole's too
        assert len(reachable) >= 5 and np.isin(reachable, anchors[0]).all()
