"""Stage 7, report: documents through each stage per corpus, every drop reason, duplicates by corpus pair,
and the token statistics.

    markdown = build_report("zh", raw, corpora, filtered, deduped, tokens)   # each stage's results
    report_task(...)                                                    # also a Prefect artifact and the log
    require_documents("zh", corpora, filtered)     # EmptyDatasetError, with the counts, when nothing is kept

The task publishes the markdown as the flow run's artifact `build-corpus-<dataset>` in the Prefect UI.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from gpt.errors import FixableError
from gpt.mixture import MixtureConfig
from tasks.corpus.stage1_raw import RawFiles
from tasks.stage import StageResult


class EmptyDatasetError(FixableError, RuntimeError):
    """A build whose sources and filters leave no document; the message gives the counts that say why."""


def dropped_by_reason(counts: dict) -> list[tuple[str, int]]:
    """(reason, documents) of a stage's counts, by reason."""
    return sorted((k.removeprefix("dropped_"), v) for k, v in counts.items() if k.startswith("dropped_") and v)


def _drops(counts: dict) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in dropped_by_reason(counts))


def require_documents(dataset: str, corpora: list[StageResult], filtered: list[StageResult]) -> None:
    """Stop a build that keeps no document after reading and filtering, with each corpus' counts."""
    if any(f.counts.get("rows", 0) for f in filtered):
        return
    said = []
    for c, f in zip(corpora, filtered, strict=True):
        read = c.counts.get("lines", c.counts.get("documents_read", 0)) - c.counts.get("blank_lines", 0)
        ingest, rules = _drops(c.counts), _drops(f.counts)
        said.append(
            f"{c.name}: {read:,} records read, {c.counts.get('rows', 0):,} usable"
            + (f" (quarantined: {ingest})" if ingest else "")
            + ", none kept by the filters"
            + (f" (dropped: {rules})" if rules else "")
        )
    raise EmptyDatasetError(
        f"dataset {dataset!r} keeps no document: {'; '.join(said)}. Loosen corpora.<name>.where or "
        f"datasets.{dataset}.filter, or check the sources (unusable records are in each corpus/ folder's quarantine/)"
    )


def build_report(
    dataset: str, raw: list[RawFiles], corpora: list[StageResult], filtered: list[StageResult], deduped: StageResult,
    tokens: StageResult, mixture: MixtureConfig | None = None,
) -> str:  # fmt: skip
    """The markdown summary: warnings about the sources, rows through each stage per corpus, every drop reason, the
    token statistics, then what training will draw from each corpus."""
    per_corpus = deduped.extra.get("per_corpus", {})
    lines = [
        f"# build-corpus: {dataset}",
        "",
        f"Output: `{deduped.location}` ({deduped.counts.get('rows', 0):,} documents)",
        "",
    ]
    warnings = [f"- {r.corpus}: {w}" for r in raw for w in r.warnings]
    lines += ["Warnings:", "", *warnings, ""] if warnings else []
    lines += ["| corpus | read | after filter and rules | after dedupe | cached |", "|---|---:|---:|---:|---|"]
    for c, f in zip(corpora, filtered, strict=True):
        kept = per_corpus.get(c.name, {}).get("rows", 0)
        cached = ", ".join(s for s, r in (("ingest", c), ("filter", f)) if r.cached) or "no"
        lines.append(f"| {c.name} | {c.counts.get('rows', 0):,} | {f.counts.get('rows', 0):,} | {kept:,} | {cached} |")
    lines += ["", "| corpus | stage | reason | documents |", "|---|---|---|---:|"]
    for c, f in zip(corpora, filtered, strict=True):
        for stage, counts in (("ingest", c.counts), ("filter", f.counts), ("dedupe", per_corpus.get(c.name, {}))):
            lines += [f"| {c.name} | {stage} | {reason} | {n:,} |" for reason, n in dropped_by_reason(counts)]
    pairs = deduped.extra.get("duplicate_pairs", {})
    if pairs:
        lines += ["", "Duplicates by corpus pair (documents dropped, and the corpus of the one kept in their place):"]
        lines += ["", "| dropped from | duplicate of | documents |", "|---|---|---:|"]
        for dropped, by_kept in pairs.items():
            lines += [f"| {dropped} | {kept} | {n:,} |" for kept, n in sorted(by_kept.items(), key=lambda kv: -kv[1])]
    if "chat" in tokens.extra:
        lines += ["", f"## Conversations: `{tokens.location}`", "", conversations_markdown(tokens.extra["chat"])]
        return "\n".join(lines)
    lines += ["", f"## Tokens: `{tokens.location}`", "", statistics_markdown(tokens.extra["stats"])]
    lines += ["", mixture_markdown(tokens.extra["stats"], mixture or MixtureConfig())]
    return "\n".join(lines)


def conversations_markdown(stats: dict) -> str:
    """A conversation dataset's conversations, tokens and trained tokens (the replies) per split and task."""
    lines = ["| split | task | conversations | tokens | trained tokens |", "|---|---|---:|---:|---:|"]
    for split, tasks in stats.items():
        for task_name, n in tasks.items():
            lines.append(
                f"| {split} | {task_name} | {n['conversations']:,} | {n['tokens']:,} | {n['trained']:,} "
                f"({n['trained'] / max(n['tokens'], 1):.0%}) |"
            )
    return "\n".join(lines) + "\n"


def mixture_markdown(stats: dict, mixture: MixtureConfig) -> str:
    """Each corpus' train tokens, its share of training under the mixture and the passes over it that share makes
    for every dataset-sized stretch of training."""
    tokens = {corpus: r["train_tokens"] for corpus, r in stats["corpora"].items()}
    total = sum(tokens.values())
    try:
        shares = mixture.resolve(tokens)
    except ValueError as e:
        return f"## Training mixture\n\nThe mixture cannot be followed on these tokens: {e}\n"
    how = "as set by `mixture`" if mixture.enabled else "each corpus by its size (no `mixture` set)"
    lines = [f"## Training mixture ({how})", "", "| corpus | train tokens | share of training | passes per "
             f"{total:,} tokens trained |", "|---|---:|---:|---:|"]  # fmt: skip
    for corpus, share in shares.items():
        passes = share * total / tokens[corpus] if tokens[corpus] else 0.0
        lines.append(f"| {corpus} | {tokens[corpus]:,} | {share:.1%} | {passes:.2f} |")
    return "\n".join(lines) + "\n"


def statistics_markdown(stats: dict) -> str:
    """The tokenize stage's statistics as markdown tables."""
    lines = [
        "| corpus | documents | characters | tokens (train / val) | tokens per char | share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for corpus, r in stats["corpora"].items():
        docs, chars = r["train_docs"] + r["val_docs"], r["train_chars"] + r["val_chars"]
        lines.append(
            f"| {corpus} | {docs:,} | {chars:,} | {r['train_tokens']:,} / {r['val_tokens']:,} | "
            f"{r['tokens_per_char']} | {r['share']:.1%} |"
        )
    lines += ["", "Document lengths in tokens:", "", "| corpus | tokens | documents |", "|---|---|---:|"]
    for corpus, buckets in stats["doc_tokens_histogram"].items():
        lines += [f"| {corpus} | {bucket} | {n:,} |" for bucket, n in buckets.items()]
    if stats.get("examples"):
        lines += ["", "One document per corpus, as the model reads it (its start):"]
        for corpus, text in stats["examples"].items():
            lines += ["", f"**{corpus}**", "", "```text", text.replace("```", "ʼʼʼ"), "```"]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "dataset"


def publish_report(
    dataset: str, raw: list[RawFiles], corpora: list[StageResult], filtered: list[StageResult], deduped: StageResult,
    tokens: StageResult, mixture: MixtureConfig | None = None,
) -> str:  # fmt: skip
    """The report as the run's markdown artifact and in its log (a build whose every stage was reused logs one line
    instead: the report is as the build that made it logged it); returns the markdown."""
    markdown = build_report(dataset, raw, corpora, filtered, deduped, tokens, mixture)
    key = f"build-corpus-{_slug(dataset)}"
    create_markdown_artifact(markdown, key=key, description=f"build-corpus {dataset}")
    if all(stage.cached for stage in [*corpora, *filtered, deduped, tokens]):
        print(f"build-corpus {dataset}: every stage reused, {tokens.location}; its report is artifact {key}")
    else:
        print(markdown)
    return markdown


report_task = task(publish_report, name="report", task_run_name="report-{dataset}")
