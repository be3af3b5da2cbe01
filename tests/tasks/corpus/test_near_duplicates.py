"""The near-duplicate search: shingles and sketches against a Python reference, verified pairs without chaining,
planted copies in real Chinese text, and recall against datasketch's MinHashLSH on the same shingles."""

import importlib.util
import json
import random
import unicodedata
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO, SHARED_DATA

from tasks.corpus.settings import NearConfig
from tasks.corpus.text.near_duplicates import find_near_duplicates
from tasks.corpus.text.sketch import Sketcher, overlap
from tasks.corpus.text.stats import fold_text
from tasks.parallel import DuckDBLimits

POEMS = SHARED_DATA / "chinese-poetry"
REFERENCE = REPO / "benchmarks" / "near_duplicates_reference.py"
SPACELESS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI")


def reference_units(text: str) -> list[str]:
    """Units as the docs describe them: each character of a spaceless script, each run of letters or digits."""
    units, word = [], ""
    for c in map(fold_text, text):  # folded one by one: a space or a comma folds to "" and ends a word
        if c and unicodedata.category(c)[0] in "LN" and not unicodedata.name(c, "").startswith(SPACELESS):
            word += c
            continue
        units += [word] if word else []
        units, word = units + ([c] if c else []), ""
    return units + ([word] if word else [])


def reference_jaccard(a: str, b: str, n: int = 2) -> float:
    sets = []
    for text in (a, b):
        units = reference_units(text)
        sets.append({tuple(units[i : i + n]) for i in range(max(len(units) - n + 1, 1))} if units else set())
    return len(sets[0] & sets[1]) / len(sets[0] | sets[1])


def sketched_jaccard(a: str, b: str, size: int = 256) -> float:
    found = Sketcher(2, 32, 8, size).sketch([a, b])
    first, second = (np.array(v, dtype=np.uint32) for v in found.sketch.to_pylist())
    return overlap(first, found.shingles[0], second, found.shingles[1], size)[0]


def edit(text: str, share: float, seed: int) -> str:
    """A copy with `share` of its Han characters (at least one) replaced by others, at random places."""
    rng = random.Random(seed)
    chars = list(text)
    places = [i for i, c in enumerate(chars) if "\u4e00" <= c <= "\u9fff"]
    for i in rng.sample(places, max(1, round(len(places) * share))):
        chars[i] = chr(0x4E00 + (ord(chars[i]) - 0x4E00 + rng.randrange(1, 20000)) % 20000)
    return "".join(chars)


def tang_poems(count: int) -> list[str]:
    poems = json.loads((POEMS / "全唐诗" / "poet.tang.3000.json").read_text())
    return ["\n".join(p["paragraphs"]) for p in poems if len("".join(p["paragraphs"])) >= 20][:count]


def test_sketch_similarity_equals_the_reference_on_short_texts():
    rng = random.Random(0)
    poems = tang_poems(60)
    for a, b in zip(poems, [*poems[1:], poems[0]], strict=True):
        assert sketched_jaccard(a, b) == pytest.approx(reference_jaccard(a, b))
        copy = edit(a, 0.05, rng.randrange(1000))
        assert sketched_jaccard(a, copy) == pytest.approx(reference_jaccard(a, copy))


def test_long_texts_get_the_bottom_k_estimate():
    article = "".join(tang_poems(400))[:6000]
    copy = edit(article, 0.1, 3)
    truth = reference_jaccard(article, copy)
    assert 0.6 < truth < 0.9
    assert sketched_jaccard(article, copy, size=256) == pytest.approx(truth, abs=0.06)
    assert sketched_jaccard(article, copy, size=100_000) == pytest.approx(truth)


def test_words_are_units_in_english_and_characters_in_chinese():
    assert reference_jaccard("the cat sat on the mat", "The cat sat on the hat!") == pytest.approx(4 / 6)
    assert sketched_jaccard("the cat sat on the mat", "The cat sat on the hat!") == pytest.approx(4 / 6)
    assert sketched_jaccard("GPT2模型", "gpt 2 模型") < 1  # "gpt2" is one word, "gpt" and "2" are two
    assert sketched_jaccard("白日依山尽，黄河入海流。", "白日依山盡\n黃河入海流") == 1.0
    assert sketched_jaccard("早鴈拂金河，緜緜思遠道。", "早雁拂金河，绵绵思远道。") == 1.0


def write_parts(tmp_path, texts: list[str], per_part: int) -> list[tuple]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, first in enumerate(range(0, len(texts), per_part)):
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(pa.table({"text": texts[first : first + per_part]}), path)
        rows = np.arange(min(per_part, len(texts) - first))
        parts.append((path, rows, first))
    return parts


def search(tmp_path, texts: list[str], config: NearConfig | None = None, per_part: int = 1000):
    """The search over texts; `.duplicate_of` and `.similarity_to` give every document's leader (-1) and similarity."""
    parts = write_parts(tmp_path, texts, per_part)
    found = find_near_duplicates(parts, len(texts), config or NearConfig(), tmp_path / "spill", DuckDBLimits(), 2)
    found.duplicate_of = np.full(len(texts), -1)
    found.duplicate_of[found.docs] = found.leaders
    found.similarity_to = np.zeros(len(texts))
    found.similarity_to[found.docs] = found.similarity
    return found


def test_pairs_are_verified_and_similarity_never_chains(tmp_path):
    base = "".join(chr(0x4E00 + 37 * i) for i in range(100))
    middle = base[:20] + "甲乙丙丁戊己庚辛壬" + base[29:]
    far = middle[:60] + "子丑寅卯辰巳午未申" + middle[69:]
    assert reference_jaccard(base, middle) >= 0.7 and reference_jaccard(middle, far) >= 0.7
    assert reference_jaccard(base, far) < 0.7
    found = search(tmp_path, [base, middle, far, "无关的句子"])
    assert found.duplicate_of.tolist() == [-1, 0, -1, -1]  # far is like middle only, and middle is gone
    assert found.similarity_to[1] == pytest.approx(reference_jaccard(base, middle))
    assert sorted(map(tuple, found.pairs.tolist())) == [(0, 1), (1, 2)]


def real_texts() -> list[str]:
    lines = (SHARED_DATA / "samples" / "translation2019zh" / "translation2019zh_valid.json").read_text().splitlines()
    sentences = [json.loads(line)["chinese"] for line in lines]
    with zipfile.ZipFile(SHARED_DATA / "samples" / "thucnews" / "THUCNews.zip") as z:
        articles = [
            z.read(n).decode("utf-8") for n in z.namelist() if n.endswith(".txt") and not n.startswith("__MACOSX")
        ]
    return [t for t in sentences + articles + tang_poems(500) if len(t) >= 10]


def test_one_changed_character_is_found_from_thirteen_characters_on():
    sentence = "大连是中国最美丽的城市之一。"
    assert reference_jaccard(sentence, sentence.replace("城", "都")) >= 0.7  # 13 characters: 10 of 14 bigrams
    assert reference_jaccard(sentence[1:], sentence[1:].replace("城", "都")) < 0.7  # 12 characters: 9 of 13


def test_copies_of_real_text_with_two_percent_edits_are_all_found(tmp_path):
    texts = list(dict.fromkeys(real_texts()))
    repeats = search(tmp_path / "as-is", texts).duplicate_of
    for i in np.flatnonzero(repeats >= 0):  # the samples' own near duplicates (two editions of a poem) are real
        assert reference_jaccard(texts[i], texts[repeats[i]]) >= 0.7
    assert (repeats >= 0).sum() < 0.01 * len(texts)
    originals = [t for t, r in zip(texts, repeats, strict=True) if r < 0]
    long_enough = [i for i, t in enumerate(originals) if len(t) >= 50]  # 2% is one character or more
    sources = random.Random(1).sample(long_enough, 300)
    found = search(tmp_path / "planted", originals + [edit(originals[s], 0.02, seed) for seed, s in enumerate(sources)])
    assert found.duplicate_of[len(originals) :].tolist() == sources
    assert (found.duplicate_of[: len(originals)] < 0).all()
    assert (found.similarity_to[len(originals) :] >= 0.7).all()


def test_a_bucket_of_many_copies_keeps_the_first_and_bounds_the_pairs(tmp_path):
    base = tang_poems(1)[0] * 3
    texts = [base] + [edit(base, 0.01, seed) for seed in range(300)]
    found = search(tmp_path, texts, NearConfig(bucket_peers=4), per_part=50)
    assert (found.duplicate_of[1:] == 0).all() and found.duplicate_of[0] == -1
    assert found.candidates <= 2 * 4 * len(texts)  # each with about its bucket peers, never all n^2 / 2 pairs


def test_documents_without_words_are_left_out(tmp_path):
    found = search(tmp_path, ["……", "。。。", "", "白日依山尽"])
    assert found.duplicate_of.tolist() == [-1, -1, -1, -1] and found.candidates == 0


def reference_script():
    spec = importlib.util.spec_from_file_location("near_duplicates_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recall_against_datasketch_on_the_same_shingles(tmp_path):
    """datasketch's MinHashLSH at the same threshold, fed the same shingle hashes, with its candidates verified by
    the same exact Jaccard (benchmarks/near_duplicates_reference.py): the pairs it finds are found here too."""
    pytest.importorskip("datasketch")
    reference_of = reference_script()
    poems = json.loads((POEMS / "宋词" / "ci.song.1000.json").read_text())
    texts = ["\n".join(p["paragraphs"]) for p in poems]
    rng = random.Random(2)
    texts += [edit(texts[s], rng.choice([0.02, 0.05, 0.1, 0.15]), s) for s in rng.sample(range(len(texts)), 200)]
    shingles = Sketcher(2, 8, 1, 1 << 20).sketch(texts).sketch.to_pylist()
    reference = reference_of.with_datasketch(shingles, 0.7)
    found, _ = reference_of.with_gptflow(texts, tmp_path, 0.7)
    assert len(reference) >= 100
    assert len(reference & found) / len(reference) >= 0.97
    sets = [set(v) for v in shingles]
    assert all(reference_of.exact(sets[i], sets[j]) >= 0.7 for i, j in found - reference)  # datasketch's misses
