"""Deterministic webtext2019zh-shaped benchmark data with planted duplicates, and the list of what was planted.

    python benchmarks/make_webtext.py /tmp/webtext500.json --mb 500 --seed 0

Writes about `--mb` megabytes (10^6 bytes) of JSON lines with the fields of webtext2019zh (qid, title, desc, topic,
star, content, answer_id, answerer_tags): one row per answer, so a question's title, desc and topic repeat on each
of its answers. Among the answers are copies of earlier answers, each listed in /tmp/webtext500.truth.json as
{"answer_id": copy, "of": source, "kind": ...} next to the counts, rows and bytes written:
- "normalized", about 3%: spaces, line breaks, punctuation (full-width to half-width, or dropped) or letter case
  changed, so equal to the source after tasks.corpus.text.stats.fold_text;
- "near", about 3%: an answer of 200+ characters with about 5% of its characters substituted, inserted or deleted in
  one run per 400 characters, so that their character 5-gram Jaccard similarity is about 0.85 to 0.9;
- "exact", about 0.3%: byte-identical content.
Text is Zipf-distributed words (a few dozen common ones, then thousands of 1-4 character words made of the 3,755
common characters of GB 2312 level 1) with full-width punctuation, built a chunk of questions at a time with numpy.
Copy sources come from a bounded uniform sample of earlier answers, so memory does not grow with the size asked
for. The same seed and size give byte-identical files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COMMON_WORDS = (  # words separated by spaces
    "的 是 了 我 不 在 有 人 这 个 也 就 都 和 你 他 要 说 会 对 很 到 上 去 能 好 还 没 又 把 让 被 给 从 但 而 "
    "我们 一个 没有 什么 自己 因为 所以 但是 如果 这个 就是 还是 知道 觉得 时候 现在 其实 问题 已经 可能 需要 "
    "工作 朋友 孩子 喜欢 比较 一些 他们 这样 真的 一定 非常 可以 不是 应该 事情 当然 而且 东西 生活 时间"
)
ASCII_WORDS = "AI App iPhone Python GPU CPU Java Excel PPT IT NBA Windows Linux Google Kindle PhD MBA offer bug 2019"
TAG_SUFFIXES = "工程师 学生 医生 律师 研究员 爱好者 设计师 产品经理 老师 程序员 作家 摄影师 创业者 博士"
PUNCTUATION = ("“", "”", "，", "。", "！", "？", "、", "：", "；")
# piece ids: the empty piece, quotes, punctuation, line breaks, then the words
OPEN, CLOSE, COMMA, PERIOD, BANG, ASK, PAUSE, COLON, SEMICOLON = range(1, 10)
NEWLINE, BR, WORD0 = 10, 11, 12
AFTER_WORD = (0, COMMA, PERIOD, BANG, ASK, PAUSE, COLON, SEMICOLON)
AFTER_WORD_P = (0.775, 0.11, 0.07, 0.012, 0.012, 0.015, 0.004, 0.002)
SENTENCE_ENDS = (PERIOD, BANG, ASK)
QUOTED = 0.008  # share of words in “”
TABLE_SIZE = 1 << 20  # entries of a sampling table: drawing is one random integer and a look-up
BREAK_AFTER_SENTENCE = 0.25  # in answers that have line breaks

QUESTIONS_PER_CHUNK = 512
RESERVOIR = 10_000  # earlier answers kept as copy sources, per pool
NEAR_MIN_CHARS = 200
RATES = (("exact", 0.003), ("normalized", 0.03), ("near", 0.03))

_HALF_WIDTH = str.maketrans("，。！？、：；“”", ',.!?,:;""')
_NO_PUNCTUATION = dict.fromkeys(map(ord, "，。！？、：；“”"))


@dataclass(frozen=True)
class Vocabulary:
    """Pieces of text by id (the empty piece, quotes, punctuation, line breaks, words) and tables to draw them."""

    codes: np.ndarray  # uint32 code points of all pieces back to back
    offsets: np.ndarray  # where each piece starts in `codes`
    lengths: np.ndarray
    words: np.ndarray  # sampling table of piece ids: Zipf over the words, most frequent first
    after_word: np.ndarray  # sampling table of the piece after a word: nothing or punctuation
    mean_token: float  # characters per word with its quotes and punctuation
    chars: str  # the CJK characters the generated words are made of, most frequent first
    topics: list[str]
    topic_table: np.ndarray
    tags: list[str]
    tag_table: np.ndarray


def _table(p: np.ndarray) -> np.ndarray:
    """A table to draw i with probability p[i] (rounded to a multiple of 2**-20) from one integer below 2**20."""
    cdf = np.cumsum(p) / np.sum(p)
    return np.searchsorted(cdf, (np.arange(TABLE_SIZE) + 0.5) / TABLE_SIZE).astype(np.int32)


def _zipf(n: int, shift: float) -> np.ndarray:
    return _table(1.0 / (np.arange(n) + shift))


def _draw(rng: np.random.Generator, table: np.ndarray, size: int) -> np.ndarray:
    return table[rng.integers(0, TABLE_SIZE, size)]


def vocabulary() -> Vocabulary:
    """The fixed vocabulary: the same whatever the seed."""
    rng = np.random.default_rng(2019)
    codes = itertools.product(range(0xB0, 0xD8), range(0xA1, 0xFF))  # GB 2312 rows 16-55: 3,755 characters
    level1 = [bytes(code).decode("gb2312") for code in codes if code < (0xD7, 0xFA)]
    chars = "".join(level1[k] for k in rng.permutation(len(level1)))
    char_table = _zipf(len(chars), 8.0)
    common = dict.fromkeys(COMMON_WORDS.split())
    made: dict[str, None] = {}
    for size, count in ((1, 900), (2, 3200), (3, 900), (4, 500)):
        picks = _draw(rng, char_table, count * size).reshape(count, size)
        made.update(dict.fromkeys("".join(chars[k] for k in row) for row in picks.tolist()))
    rest = [w for w in [*made, *ASCII_WORDS.split()] if w not in common]
    ordered = list(common) + [rest[k] for k in rng.permutation(len(rest))]
    pieces = ["", *PUNCTUATION, "\n", "<br>", *ordered]
    lengths = np.array([len(p) for p in pieces], dtype=np.int32)
    middle = ordered[len(common) :]
    topic_words = rng.choice(len(middle), (2000, 2))
    topics = dict.fromkeys(middle[a] + (middle[b] if a % 2 else "") for a, b in topic_words.tolist())
    suffixes = TAG_SUFFIXES.split()
    tags = dict.fromkeys(middle[a] + suffixes[b % len(suffixes)] for a, b in topic_words[:600].tolist())
    words = WORD0 + _zipf(len(ordered), 2.7)
    after_word = np.array(AFTER_WORD)[_table(np.array(AFTER_WORD_P))]
    return Vocabulary(
        codes=np.frombuffer("".join(pieces).encode("utf-32-le"), dtype=np.uint32),
        offsets=np.cumsum(lengths) - lengths,
        lengths=lengths,
        words=words,
        after_word=after_word,
        mean_token=float(lengths[words].mean() + 2 * QUOTED + np.mean(after_word > 0)),
        chars=chars,
        topics=list(topics),
        topic_table=_zipf(len(topics), 5.0),
        tags=list(tags),
        tag_table=_zipf(len(tags), 3.0),
    )


def _lengths(rng: np.random.Generator, n: int, median: float, sigma: float, low: int, high: int) -> np.ndarray:
    """Log-normal lengths in characters: most near the median, a long tail, cut to [low, high]."""
    return np.clip(np.rint(median * np.exp(sigma * rng.standard_normal(n))), low, high).astype(np.int64)


def texts(
    vocab: Vocabulary,
    rng: np.random.Generator,
    lengths: np.ndarray,
    ending: int,
    end_p: float,
    newline: float = 0.0,
    br: float = 0.0,
) -> list[str]:
    """One text of about each length: words with punctuation, ending in `ending` with probability end_p.

    A share `newline` of the texts break lines after some sentences with "\\n", a share `br` with "<br>"."""
    n, goal = len(lengths), np.cumsum(lengths)
    if not n:
        return []
    tokens = int(goal[-1] / vocab.mean_token * 1.15) + 64
    while True:  # a token: [open quote, word, close quote, punctuation, line break], all but the word maybe empty
        word = _draw(rng, vocab.words, tokens)
        quoted = rng.random(tokens) < QUOTED
        after = _draw(rng, vocab.after_word, tokens)
        ends = np.searchsorted(np.cumsum(vocab.lengths[word] + 2 * quoted + (after > 0)), goal)  # each last token
        if ends[-1] < tokens:
            break
        tokens *= 2
    tokens = ends[-1] + 1
    word, quoted, after = word[:tokens], quoted[:tokens], after[:tokens]
    after[ends] = np.where(rng.random(n) < end_p, ending, after[ends])
    style = rng.choice((0, NEWLINE, BR), n, p=(1 - newline - br, newline, br))
    breaks = np.isin(after, SENTENCE_ENDS) & (rng.random(tokens) < BREAK_AFTER_SENTENCE)
    breaks[ends] = False
    text_of_token = np.repeat(np.arange(n), np.diff(ends, prepend=-1))
    slots = np.stack([quoted * OPEN, word, quoted * CLOSE, after, np.where(breaks, style[text_of_token], 0)], axis=1)

    sizes = vocab.lengths[slots]
    bounds = np.concatenate([[0], np.cumsum(sizes.sum(axis=1))[ends]]).tolist()
    flat, sizes = slots.ravel(), sizes.ravel()
    starts = np.cumsum(sizes) - sizes
    joined = vocab.codes[np.repeat(vocab.offsets[flat] - starts, sizes) + np.arange(bounds[-1])]
    whole = joined.tobytes().decode("utf-32-le")
    return [whole[a:b] for a, b in itertools.pairwise(bounds)]


def rows(vocab: Vocabulary, rng: np.random.Generator) -> Iterator[dict]:
    """Answers without end, a chunk of questions at a time; ids grow with gaps."""
    qid, answer_id = 60_000_000, 500_000_000
    while True:
        q = QUESTIONS_PER_CHUNK
        answers = np.minimum(rng.geometric(0.3, q), 40)
        n = int(answers.sum())
        qids = (qid + np.cumsum(rng.integers(1, 50, q))).tolist()
        titles = texts(vocab, rng, _lengths(rng, q, 14, 0.4, 5, 60), ASK, 0.85)
        has_desc = np.flatnonzero(rng.random(q) < 0.45).tolist()
        filled = texts(vocab, rng, _lengths(rng, len(has_desc), 50, 0.9, 4, 800), ASK, 0.3, br=0.4)
        descs = [""] * q
        for k, desc in zip(has_desc, filled, strict=True):
            descs[k] = desc
        topics = _draw(rng, vocab.topic_table, q).tolist()
        question = np.repeat(np.arange(q), answers).tolist()
        stars = (3 + np.minimum(rng.pareto(1.2, n) * 4, 300_000)).astype(np.int64).tolist()
        contents = texts(vocab, rng, _lengths(rng, n, 280, 1.05, 10, 3000), PERIOD, 0.7, newline=0.2, br=0.1)
        ids = (answer_id + np.cumsum(rng.integers(1, 40, n))).tolist()
        tags = np.where(rng.random(n) < 0.45, -1, _draw(rng, vocab.tag_table, n)).tolist()
        for i, k in enumerate(question):
            yield {
                "qid": qids[k],
                "title": titles[k],
                "desc": descs[k],
                "topic": vocab.topics[topics[k]],
                "star": stars[i],
                "content": contents[i],
                "answer_id": ids[i],
                "answerer_tags": vocab.tags[tags[i]] if tags[i] >= 0 else "",
            }
        qid, answer_id = qids[-1], ids[-1]


class Reservoir:
    """A uniform sample of at most `size` of the items offered so far (Algorithm R)."""

    def __init__(self, size: int):
        self.size, self.seen, self.items = size, 0, []

    def offer(self, r: random.Random, item: tuple[int, str]) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif (k := r.randrange(self.seen)) < self.size:
            self.items[k] = item


def normalized_copy(r: random.Random, text: str) -> str:
    """`text` with changes fold_text folds away: spaces, line breaks, punctuation width or presence, case."""
    out = text
    for change in r.sample(("spaces", "lines", "half", "drop", "case"), r.randint(1, 3)):
        if change == "spaces":
            cuts = sorted(r.randrange(len(out) + 1) for _ in range(1 + len(out) // 80))
            out = " ".join(out[a:b] for a, b in zip([0, *cuts], [*cuts, len(out)], strict=True))
        elif change == "lines":
            out = out.replace("\n", r.choice(("", " ", "\n\n", "\r\n"))) if "\n" in out else out.replace("。", "。\n")
        elif change == "half":
            out = out.translate(_HALF_WIDTH)
        elif change == "drop":
            out = out.translate(_NO_PUNCTUATION)
        else:
            out = "<br>".join(part.swapcase() for part in out.split("<br>"))
    return out if out != text else " " + text


def near_copy(r: random.Random, text: str, chars: str) -> str:
    """`text` with 4-6% of its characters edited in one run per 400 characters (at most 4), the first substituted."""
    runs = min(1 + len(text) // 400, 4)
    budget = max(runs, round(len(text) * r.uniform(0.04, 0.06)))
    segment = len(text) // runs
    out = text
    for k in reversed(range(runs)):  # back to front: the positions of earlier segments stay put
        size = budget // runs + (k < budget % runs)
        at = k * segment + r.randrange(segment - size)
        kind = "substitute" if k == 0 else r.choice(("substitute", "insert", "delete"))
        fresh = "" if kind == "delete" else "".join(r.choice(chars) for _ in range(size))
        out = out[:at] + fresh + out[at + (0 if kind == "insert" else size) :]
    return out


def generate(out: Path, mb: float, seed: int = 0) -> dict:
    """Write about `mb` * 10^6 bytes of rows to `out`, and the planted copies to out.with_suffix(".truth.json")."""
    vocab = vocabulary()
    r = random.Random(seed)
    pools = {"all": Reservoir(RESERVOIR), "long": Reservoir(RESERVOIR)}
    copies: list[dict] = []
    target, written, count = int(mb * 1e6), 0, 0
    with out.open("wb", buffering=16 << 20) as f:
        for row in rows(vocab, np.random.default_rng(seed)):
            if written >= target:  # the last row is the one that reaches the size
                break
            u, kind = r.random(), None
            for name, rate in RATES:
                if u < rate:
                    kind = name
                    break
                u -= rate
            pool = pools["long" if kind == "near" else "all"]
            if kind and pool.items:
                source_id, source = pool.items[r.randrange(len(pool.items))]
                if kind == "normalized":
                    row["content"] = normalized_copy(r, source)
                elif kind == "near":
                    row["content"] = near_copy(r, source, vocab.chars)
                else:
                    row["content"] = source
                copies.append({"answer_id": row["answer_id"], "of": source_id, "kind": kind})
            else:
                item = (row["answer_id"], row["content"])
                pools["all"].offer(r, item)
                if len(item[1]) >= NEAR_MIN_CHARS:
                    pools["long"].offer(r, item)
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
            f.write(line)
            written += len(line)
            count += 1
    counts = Counter(c["kind"] for c in copies)
    truth = {
        "seed": seed,
        "rows": count,
        "bytes": written,
        "counts": {name: counts[name] for name, _ in RATES},
        "copies": copies,
    }
    out.with_suffix(".truth.json").write_text(json.dumps(truth) + "\n", encoding="utf-8")
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON-lines file to write; the truth goes next to it as .truth.json")
    parser.add_argument("--mb", type=float, default=500.0, help="megabytes (10^6 bytes) to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    truth = generate(args.out, args.mb, args.seed)
    seconds = time.perf_counter() - t0
    planted = ", ".join(f"{kind} {n:,}" for kind, n in truth["counts"].items())
    print(
        f"{truth['rows']:,} rows, {truth['bytes'] / 1e6:.1f} MB in {seconds:.1f} s "
        f"({truth['bytes'] / 1e6 / seconds:.1f} MB/s); planted copies: {planted}"
    )


if __name__ == "__main__":
    main()
