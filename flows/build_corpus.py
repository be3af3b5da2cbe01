"""The `build-corpus` flow: download, read, filter, clean, deduplicate and tokenize the corpora of one dataset.

    python -m flows.build_corpus --dataset zh [--config pipelines.yaml] [--datasets.zh.dedupe.near=false ...]

Each corpus goes through raw -> corpus -> filtered in parallel with the others, then the dataset's corpora are
deduplicated together into clean/<dataset>-<fingerprint>/ and tokenized into tokens/<dataset>-<tokenizer>-<fp>/.
Finished stages are found by fingerprint and reused, so a second run costs seconds. Only downloads are retried. The
run publishes a markdown artifact with the counts per corpus and per reason and the token statistics, and returns
the path of the token dataset's manifest.json (`gpt.train`'s `data` is its folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from gpt.config import ConfigError
from gpt.shards import MANIFEST
from tasks import corpus_stages
from tasks.corpus_stages import StageResult
from tasks.download import DownloadError
from tasks.pipelines import PipelinesConfig, load_pipelines
from tasks.tokenize import statistics_markdown


def _retry_downloads(task, task_run, state) -> bool:
    """Retry only when the failure was a download (network) error."""
    try:
        state.result()
    except DownloadError:
        return True
    except Exception:
        return False
    return False


fetch_sources = task(
    corpus_stages.fetch_sources, name="fetch-sources", retries=2, retry_delay_seconds=10,
    retry_condition_fn=_retry_downloads,
)  # fmt: skip
build_corpus_stage = task(corpus_stages.build_corpus_stage, name="corpus")
build_filtered_stage = task(corpus_stages.build_filtered_stage, name="filtered")
build_clean_stage = task(corpus_stages.build_clean_stage, name="clean")
build_tokens_stage = task(corpus_stages.build_tokens_stage, name="tokens")


def report(
    dataset: str, corpora: list[StageResult], filtered: list[StageResult], clean: StageResult, tokens: StageResult
) -> str:
    """The markdown summary: rows through each stage per corpus, every drop reason, then the token statistics."""
    per_corpus = clean.extra.get("per_corpus", {})
    lines = [
        f"# build-corpus: {dataset}",
        "",
        f"Output: `{clean.location}` ({clean.counts.get('rows', 0):,} documents)",
        "",
        "| corpus | read | after filter and rules | after dedupe | cached |",
        "|---|---:|---:|---:|---|",
    ]
    for c, f in zip(corpora, filtered, strict=True):
        kept = per_corpus.get(c.name, {}).get("rows", 0)
        cached = ", ".join(s for s, r in (("corpus", c), ("filtered", f)) if r.cached) or "no"
        lines.append(f"| {c.name} | {c.counts.get('rows', 0):,} | {f.counts.get('rows', 0):,} | {kept:,} | {cached} |")
    lines += ["", "| corpus | stage | reason | documents |", "|---|---|---|---:|"]
    for c, f in zip(corpora, filtered, strict=True):
        for stage, counts in (("corpus", c.counts), ("filtered", f.counts), ("clean", per_corpus.get(c.name, {}))):
            for key, value in sorted(counts.items()):
                if key.startswith("dropped_") and value:
                    lines.append(f"| {c.name} | {stage} | {key.removeprefix('dropped_')} | {value:,} |")
    lines += ["", f"## Tokens: `{tokens.location}`", "", statistics_markdown(tokens.extra["stats"])]
    return "\n".join(lines)


@flow(name="build-corpus", log_prints=True)
def build_corpus(dataset: str, overrides: list[str] | None = None, config_path: str = "pipelines.yaml") -> str:
    """Build the token dataset `dataset` of pipelines.yaml; returns the path (or URL) of its manifest.json."""
    config: PipelinesConfig = load_pipelines(Path(config_path), overrides or [])
    if dataset not in config.datasets:
        raise ConfigError(f"no dataset {dataset!r} in {config_path}; datasets: {', '.join(config.datasets)}")
    names = config.datasets[dataset].corpora
    raw = {name: fetch_sources.submit(config, name) for name in names}
    corpora = {name: build_corpus_stage.submit(config, name, raw[name]) for name in names}
    filtered = {name: build_filtered_stage.submit(config, dataset, corpora[name]) for name in names}
    filtered_results = [filtered[name].result() for name in names]
    clean = build_clean_stage(config, dataset, filtered_results)
    tokens = build_tokens_stage(config, dataset, clean)
    markdown = report(dataset, [corpora[n].result() for n in names], filtered_results, clean, tokens)
    create_markdown_artifact(markdown, key=f"build-corpus-{_slug(dataset)}", description=f"build-corpus {dataset}")
    print(markdown)
    return f"{tokens.location}/{MANIFEST}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "dataset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.build_corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a dataset of pipelines.yaml")
    parser.add_argument("--config", default="pipelines.yaml", help="path of pipelines.yaml")
    args, overrides = parser.parse_known_args(argv)
    try:
        load_pipelines(Path(args.config), overrides)  # fail fast, before Prefect starts
        print(build_corpus(args.dataset, overrides, args.config))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
