"""The stages of build-corpus as plain functions: each finds its fingerprinted output or builds it.

    raw = fetch_sources(config, "webtext2019zh")                  # raw/: downloads and extractions
    corpus = build_corpus_stage(config, "webtext2019zh", raw)     # corpus/webtext2019zh-<fp>/
    filtered = build_filtered_stage(config, "zh", corpus)         # filtered/webtext2019zh-<fp>/
    clean = build_clean_stage(config, "zh", [filtered, ...])      # clean/zh-<fp>/
    tokens = build_tokens_stage(config, "zh", clean)             # tokens/zh-gpt2-<fp>/ (manifest.json, shards)

Every result says where its output is, its fingerprint, its counts, and whether it was already there (a cache hit).
Outputs are built in the local working copy and published to the data root (tasks/dataroot.py).
The Prefect flow in flows/build_corpus.py wraps each in a task; these functions know nothing of Prefect.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tasks.clean import clean_corpus
from tasks.dedupe import dedupe_dataset
from tasks.ingest import IngestOptions, ingest_corpus
from tasks.pipelines import PipelinesConfig
from tasks.sources import resolve_source
from tasks.stage import building, fingerprint, parts, write_info
from tasks.tokenize import tokenize_dataset


@dataclass(frozen=True)
class RawFiles:
    corpus: str
    files: list[tuple[Path, str]]
    fingerprints: list[str]


@dataclass(frozen=True)
class StageResult:
    name: str
    rel: str
    """The output folder relative to the data root: <stage>/<name>-<fingerprint>."""
    location: str
    """The output folder as people find it: a local path, or a URL under a URL data root."""
    fingerprint: str
    counts: dict
    cached: bool
    seconds: float
    extra: dict = field(default_factory=dict)


def _workers(config: PipelinesConfig) -> int:
    return config.workers or os.cpu_count() or 1


def fetch_sources(config: PipelinesConfig, corpus: str) -> RawFiles:
    """Download (or find) and extract every source of a corpus."""
    raw_dir = config.work / "raw"
    files, prints = [], []
    for source in config.corpora[corpus].sources:
        found = resolve_source(source, raw_dir, config.mirror_dir, config.base)
        files.extend(found.files)
        prints.append(found.fingerprint)
    return RawFiles(corpus, files, prints)


def _reuse_or_build(config: PipelinesConfig, stage: str, name: str, fp: str, build) -> StageResult:
    root, rel = config.root, f"{stage}/{name}-{fp}"
    if root.is_complete(rel):
        info = root.read_info(rel)
        return StageResult(name, rel, root.location(rel), fp, info["counts"], True, 0.0, info.get("extra", {}))
    started = time.monotonic()
    with building(root.work / rel) as tmp:
        counts, info = build(tmp)
        seconds = round(time.monotonic() - started, 2)
        write_info(tmp, {"stage": stage, "name": name, "fingerprint": fp, **info, "counts": counts, "seconds": seconds})
    root.publish(rel)
    return StageResult(name, rel, root.location(rel), fp, counts, False, seconds, info.get("extra", {}))


def input_parts(config: PipelinesConfig, result: StageResult) -> list[Path]:
    """The Parquet parts of a finished stage, in the local working copy (downloaded when only the URL has them)."""
    return parts(config.root.local(result.rel))


def build_corpus_stage(config: PipelinesConfig, corpus: str, raw: RawFiles) -> StageResult:
    """Read the raw files of a corpus into Parquet parts of the one schema."""
    cfg = config.corpora[corpus]
    settings = {"format": cfg.format, "fields": dataclasses.asdict(cfg.fields), "split": cfg.split}
    fp = fingerprint("corpus", settings, raw.fingerprints)
    options = IngestOptions(cfg.format, cfg.fields, cfg.split, config.duckdb_limits)

    def build(tmp: Path):
        counts = ingest_corpus(raw.files, corpus, options, tmp, _workers(config))
        return dict(counts), {"settings": settings, "inputs": raw.fingerprints, "files": len(raw.files)}

    return _reuse_or_build(config, "corpus", corpus, fp, build)


def build_filtered_stage(config: PipelinesConfig, dataset: str, corpus: StageResult) -> StageResult:
    """The corpus' where filter and quality rules (as the dataset sets them)."""
    cfg = config.corpora[corpus.name]
    rules = config.clean_rules(dataset, corpus.name)
    settings = {"where": cfg.where, "rules": dataclasses.asdict(rules), "kind": cfg.resolved_kind}
    fp = fingerprint("filtered", settings, [corpus.fingerprint])

    def build(tmp: Path):
        inputs = input_parts(config, corpus)
        counts = clean_corpus(inputs, corpus.name, cfg.where, cfg.meta_keys, rules, tmp, _workers(config))
        return dict(counts), {"settings": settings, "inputs": [corpus.fingerprint]}

    return _reuse_or_build(config, "filtered", corpus.name, fp, build)


def build_clean_stage(config: PipelinesConfig, dataset: str, filtered: list[StageResult]) -> StageResult:
    """Exact and near-duplicate removal across the dataset's corpora."""
    dedupe = config.datasets[dataset].dedupe
    settings = {"dedupe": dataclasses.asdict(dedupe), "corpora": [f.name for f in filtered]}
    inputs = [f.fingerprint for f in filtered]
    fp = fingerprint("clean", settings, inputs)

    def build(tmp: Path):
        per_corpus = dedupe_dataset([(f.name, input_parts(config, f)) for f in filtered], dedupe, tmp, _workers(config))
        totals = {k: sum(c.get(k, 0) for c in per_corpus.values()) for k in ("rows_in", "rows")}
        extra = {"per_corpus": {name: dict(c) for name, c in per_corpus.items()}}
        return totals, {"settings": settings, "inputs": inputs, "extra": extra}

    return _reuse_or_build(config, "clean", dataset, fp, build)


def build_tokens_stage(config: PipelinesConfig, dataset: str, clean: StageResult) -> StageResult:
    """The clean dataset tokenized into train and val shards (a corpus of one document is split by position)."""
    tokenize = config.datasets[dataset].tokenize
    settings = dataclasses.asdict(tokenize)
    fp = fingerprint("tokens", settings, [clean.fingerprint])
    single_doc = {name for name, counts in clean.extra.get("per_corpus", {}).items() if counts.get("rows") == 1}
    rebuild = f"python -m flows.build_corpus --dataset {dataset}"

    def build(tmp: Path):
        stats = tokenize_dataset(input_parts(config, clean), tokenize, tmp, _workers(config), rebuild, single_doc)
        return stats["total"], {"settings": settings, "inputs": [clean.fingerprint], "extra": {"stats": stats}}

    return _reuse_or_build(config, "tokens", f"{dataset}-{tokenize.tokenizer}", fp, build)
