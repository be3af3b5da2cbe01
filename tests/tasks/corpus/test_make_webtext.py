"""benchmarks/make_webtext.py: same seed, same bytes; webtext2019zh fields; every planted copy is what truth says.

.venv/bin/python -m pytest -q tests/tasks/test_make_webtext.py
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO

from tasks.corpus.settings import NearConfig
from tasks.corpus.text.near_duplicates import find_near_duplicates
from tasks.corpus.text.stats import fold_text
from tasks.parallel import DuckDBLimits

SCRIPT = REPO / "benchmarks" / "make_webtext.py"
FIELDS = {
    "qid": int,
    "title": str,
    "desc": str,
    "topic": str,
    "star": int,
    "content": str,
    "answer_id": int,
    "answerer_tags": str,
}
MB = 2.0


def load_generator():
    """benchmarks/ is not a package: load the script as module `make_webtext`."""
    if "make_webtext" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_webtext", SCRIPT)
        sys.modules["make_webtext"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["make_webtext"])
    return sys.modules["make_webtext"]


def five_grams(text: str) -> set[str]:
    return {text[i : i + 5] for i in range(max(1, len(text) - 4))}


def jaccard(a: str, b: str) -> float:
    x, y = five_grams(a), five_grams(b)
    return len(x & y) / len(x | y)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """(path, rows, truth) of about 2 MB written with seed 0."""
    path = tmp_path_factory.mktemp("webtext") / "webtext.json"
    load_generator().generate(path, MB, seed=0)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return path, rows, json.loads(path.with_suffix(".truth.json").read_text(encoding="utf-8"))


def test_the_command_line_writes_the_same_bytes_for_the_same_seed(sample, tmp_path):
    path, _, _ = sample
    again, other = tmp_path / "again.json", tmp_path / "other.json"
    subprocess.run([sys.executable, SCRIPT, again, "--mb", str(MB), "--seed", "0"], check=True, cwd=REPO)
    assert again.read_bytes() == path.read_bytes()
    assert again.with_suffix(".truth.json").read_bytes() == path.with_suffix(".truth.json").read_bytes()
    load_generator().generate(other, MB, seed=1)
    assert other.read_bytes() != path.read_bytes()


def test_rows_have_the_webtext_fields_and_shapes(sample):
    path, rows, truth = sample
    data = path.read_bytes()
    assert truth["rows"] == len(rows) > 1000 and truth["bytes"] == len(data) and MB * 1e6 <= len(data) < MB * 1e6 + 1e4
    assert b"\\u" not in data  # written with ensure_ascii=False
    for row in rows:
        assert list(row) == list(FIELDS)
        assert all(type(row[name]) is kind for name, kind in FIELDS.items())
        assert row["star"] >= 3 and row["content"].strip()
    assert len({row["answer_id"] for row in rows}) == len(rows)
    questions = {}
    for row in rows:
        assert questions.setdefault(row["qid"], (row["title"], row["desc"], row["topic"])) == (
            row["title"],
            row["desc"],
            row["topic"],
        )
    assert len(questions) < len(rows) / 2  # several answers per question
    lengths = sorted(len(row["content"]) for row in rows)
    assert lengths[0] < 40 and 150 < lengths[len(lengths) // 2] < 500 and lengths[-1] > 2000
    contents = [row["content"] for row in rows]
    assert any("\n" in text for text in contents) and any("<br>" in text for text in contents)
    assert all(mark in "".join(contents) for mark in "，。！？、“”")
    assert any("<br>" in row["desc"] for row in rows) and any(row["desc"] == "" for row in rows)
    assert any(row["answerer_tags"] == "" for row in rows) and any(row["answerer_tags"] for row in rows)
    stars = [row["star"] for row in rows]
    assert sum(3 <= star <= 20 for star in stars) > 0.8 * len(stars) and max(stars) > 200


def test_planted_copies_are_what_the_truth_says(sample):
    _, rows, truth = sample
    position = {row["answer_id"]: i for i, row in enumerate(rows)}
    counts = {kind: sum(c["kind"] == kind for c in truth["copies"]) for kind in ("exact", "normalized", "near")}
    assert truth["counts"] == counts and counts["exact"] > 0
    assert 0.015 < counts["normalized"] / len(rows) < 0.05 and 0.015 < counts["near"] / len(rows) < 0.05
    for copy in truth["copies"]:
        assert position[copy["of"]] < position[copy["answer_id"]]
        text, source = rows[position[copy["answer_id"]]]["content"], rows[position[copy["of"]]]["content"]
        if copy["kind"] == "exact":
            assert text == source
        elif copy["kind"] == "normalized":
            assert text != source and fold_text(text) == fold_text(source)
        else:
            assert len(source) >= 200 and fold_text(text) != fold_text(source)
            assert jaccard(text, source) >= 0.8, (copy, jaccard(text, source))


def test_only_planted_copies_are_near_duplicates(sample, tmp_path):
    """The near search at a low threshold (0.5) joins no two answers unless one is a planted copy of the other."""
    _, rows, truth = sample
    source = {copy["answer_id"]: copy["of"] for copy in truth["copies"]}
    group = [source.get(row["answer_id"], row["answer_id"]) for row in rows]
    part = tmp_path / "answers.parquet"
    pq.write_table(pa.table({"text": [row["content"] for row in rows]}), part)
    everything = [(part, np.arange(len(rows)), 0)]
    found = find_near_duplicates(everything, len(rows), NearConfig(threshold=0.5), tmp_path / "spill", DuckDBLimits())
    pairs = found.pairs.tolist()
    assert all(group[i] == group[j] for i, j in pairs)
    assert len({group[j] for _, j in pairs}) >= truth["counts"]["near"] + truth["counts"]["exact"]
