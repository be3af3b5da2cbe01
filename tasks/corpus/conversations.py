"""The conversations stage of a conversation dataset (`datasets.<name>.conversations`): each deduplicated document
becomes the conversations its corpus' templates make of it, stored as Parquet messages in conversations/.

    result = conversations_dataset(config, "demo-chat", deduped)   # StageResult of conversations/demo-chat-<fp>/
    # part-00000.parquet ...: corpus, task, doc_id, exact_key, messages [{role, content}, ...]

Documents went through the same filter and dedupe stages as any dataset's, so no two conversations come from near
duplicates. A conversation keeps its document's `exact_key`, which the tokens stage splits by, exactly as it splits
documents: a conversation is held out when its document is held out from a pretraining dataset of the same
`val_fraction` and `split_seed` (neither raised for `min_val_docs`), so a base trained on that dataset never trained
on the text of a held-out conversation. A template
with `best_of` keeps, of the documents sharing that field, the one ranked first by `rank_by` (DuckDB, over every part
at once); a conversation whose user turn or reply comes out empty is left out.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task

from tasks.corpus.formats.templates import Template
from tasks.corpus.settings import ConversationConfig
from tasks.parallel import Progress
from tasks.stage import PARQUET, ROW_GROUP_ROWS, StageResult, fingerprint, input_parts, reuse_or_build

if TYPE_CHECKING:
    from tasks.config import PipelinesConfig

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema(
    [("corpus", pa.string()), ("task", pa.string()), ("doc_id", pa.string()), ("exact_key", pa.binary(16)),
     ("messages", pa.list_(MESSAGE))]
)  # fmt: skip


@cache
def _template(spec: str) -> Template:
    return Template(spec, needs_text=False)


def render_messages(conversation: ConversationConfig, text: str, title: str | None, meta: dict | None) -> list[dict]:
    """The messages a document makes with `conversation`'s templates; [] when the user turn or the reply is empty."""
    messages = [
        {"role": role, "content": _template(spec).render(text, title, meta)}
        for role, spec in conversation.templates.items()
    ]
    if any(not m["content"] for m in messages if m["role"] != "system"):
        return []
    return [m for m in messages if m["content"]]


def best_documents(parts: list[Path], corpus: str, conversation: ConversationConfig, limits) -> set[str]:
    """The doc_ids that rank first by `rank_by` among the documents of `corpus` sharing their `best_of` value (ties:
    the smallest doc_id); a document without that value is a group of its own."""
    con = limits.connect(reads=parts)
    rows = con.execute(
        """
        SELECT doc_id FROM read_parquet($parts)
        WHERE corpus = $corpus
        QUALIFY row_number() OVER (
            PARTITION BY coalesce(json_extract_string(meta, $group), doc_id)
            ORDER BY TRY_CAST(json_extract_string(meta, $rank) AS DOUBLE) DESC NULLS LAST, doc_id
        ) = 1
        """,
        {"parts": [p.as_posix() for p in parts], "corpus": corpus,
         "group": f"$.{conversation.best_of}", "rank": f"$.{conversation.rank_by}"},
    ).fetchall()  # fmt: skip
    con.close()
    return {doc_id for (doc_id,) in rows}


def write_conversations(parts: list[Path], conversations: dict[str, list[ConversationConfig]], out: Path,
                        limits) -> dict:  # fmt: skip
    """Every conversation of the documents in `parts` into out/part-*.parquet; returns the conversations per corpus
    and task (`per_corpus`), and those left out as empty (`left_out_empty`)."""
    chosen = {
        (corpus, k): best_documents(parts, corpus, c, limits)
        for corpus, listed in conversations.items()
        for k, c in enumerate(listed)
        if c.best_of
    }
    counts: dict[str, dict[str, int]] = {}  # conversations per corpus and task
    empty: dict[str, dict[str, int]] = {}  # left out per corpus and task: a user turn or reply came out empty
    rows: list[dict] = []
    written = 0
    progress = Progress("conversations")

    def flush() -> None:
        nonlocal written
        if rows:
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            pq.write_table(table, out / f"part-{written:05d}.parquet", row_group_size=ROW_GROUP_ROWS, **PARQUET)
            written += 1
            rows.clear()

    for part in parts:
        reader = pq.ParquetFile(part)
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=["doc_id", "corpus", "text", "title", "meta", "exact_key"])
            for row in table.to_pylist():
                meta = json.loads(row["meta"]) if row["meta"] else None
                for k, conversation in enumerate(conversations.get(row["corpus"], [])):
                    if (picked := chosen.get((row["corpus"], k))) is not None and row["doc_id"] not in picked:
                        continue
                    messages = render_messages(conversation, row["text"], row["title"], meta)
                    tally = (counts if messages else empty).setdefault(row["corpus"], {})
                    tally[conversation.task] = tally.get(conversation.task, 0) + 1
                    if messages:
                        rows.append({**{c: row[c] for c in ("corpus", "doc_id", "exact_key")},
                                     "task": conversation.task, "messages": messages})  # fmt: skip
            if len(rows) >= 5 * ROW_GROUP_ROWS:
                flush()
            progress.report(f"{sum(n for tasks in counts.values() for n in tasks.values()):,} conversations")
    flush()
    return {"per_corpus": counts, "left_out_empty": empty}


def conversations_dataset(config: PipelinesConfig, dataset: str, deduped: StageResult) -> StageResult:
    """The conversations of a conversation dataset: conversations/<dataset>-<fp>/."""
    conversations = config.datasets[dataset].conversations
    settings = {corpus: [dataclasses.asdict(c) for c in listed] for corpus, listed in conversations.items()}
    fp = fingerprint("conversations", settings, [deduped.fingerprint])

    def build(tmp: Path):
        counts = write_conversations(input_parts(config.root, deduped), conversations, tmp, config.duckdb_limits)
        total = sum(n for tasks in counts["per_corpus"].values() for n in tasks.values())
        return {"conversations": total}, {"settings": settings, "inputs": [deduped.fingerprint], "extra": counts}

    return reuse_or_build(config.root, "conversations", dataset, fp, build)


conversations_task = task(conversations_dataset, name="conversations", task_run_name="conversations-{dataset}")
