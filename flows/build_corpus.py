"""The `build-corpus` flow: download, read, filter, deduplicate and tokenize the corpora of one dataset.

    prefect deployment run build-corpus/zh
    gptflow build-corpus --dataset zh [--config pipelines.yaml] [--datasets.zh.dedupe.near=false ...]

Each corpus goes through raw -> corpus/ -> filtered/ in parallel with the others, then the dataset's corpora are
deduplicated together into deduped/<dataset>-<fp>/, a dataset with `tokenizer: bpe` trains its own BPE on its train
documents into tokenizers/<dataset>-bpe<vocab>-<fp>/, and the dataset is tokenized into
tokens/<dataset>-<tokenizer>-<fp>/ (the stages: tasks/corpus/). A dataset of conversations makes its documents into
conversations/<dataset>-<fp>/ and tokenizes those with the chat template and its mask (tasks/corpus/chat_tokens.py).
Finished stages are found by fingerprint and reused, so a second run costs seconds. The run publishes a markdown
report (counts per corpus, stage and reason; token statistics) and returns the tokens stage's result: `location` is
the token dataset's folder, which `gpt.train` reads as `data`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.config import load_pipelines
from tasks.corpus.chat_tokens import tokenize_chat_task
from tasks.corpus.conversations import conversations_task
from tasks.corpus.stage1_raw import raw_task
from tasks.corpus.stage2_ingest import ingest_task
from tasks.corpus.stage3_filter import check_filters, filter_task
from tasks.corpus.stage4_dedupe import dedupe_task
from tasks.corpus.stage5_bpe import bpe_task, trained_tokenizer
from tasks.corpus.stage6_tokenize import tokenize_task
from tasks.corpus.stage7_report import report_task, require_documents
from tasks.failures import fails_in_one_line
from tasks.registry import tokenizer_file
from tasks.stage import StageResult


@flow(name="build-corpus", log_prints=True)
@fails_in_one_line
def build_corpus(
    dataset: str, overrides: list[str] | None = None, config_path: str = "pipelines.yaml", tokenizer: str = ""
) -> StageResult:
    """Build the token dataset `dataset` of pipelines.yaml; returns the tokens stage's result. `tokenizer` ("" : the
    dataset's `tokenize.reuse_tokenizer`) encodes it with an existing model's tokenizer: a registered model or run,
    a token dataset or checkpoint folder, or a tokenizer.json."""
    config = load_pipelines(Path(config_path), overrides or [])
    names = config.dataset(dataset).corpora
    check_filters(config, names)
    raw = {name: raw_task.submit(config, name) for name in names}
    ingested = {name: ingest_task.submit(config, dataset, name, raw[name]) for name in names}
    filtered = {name: filter_task.submit(config, dataset, ingested[name]) for name in names}
    # results in stage order: a failure ends the run with its own error, not with a later stage left waiting
    raw_results = [raw[name].result() for name in names]
    ingest_results = [ingested[name].result() for name in names]
    filter_results = [filtered[name].result() for name in names]
    require_documents(dataset, ingest_results, filter_results)
    deduped = dedupe_task(config, dataset, filter_results)
    tokenize = config.datasets[dataset].tokenize
    if reuse := tokenizer or tokenize.reuse_tokenizer:
        encoder = tokenizer_file(config, reuse)
    elif tokenize.tokenizer == "hf":
        encoder = tokenizer_file(config, tokenize.hf_tokenizer, "hf_tokenizer")
    elif tokenize.tokenizer == "bpe" and not config.datasets[dataset].conversations:
        encoder = trained_tokenizer(config, bpe_task(config, dataset, deduped))
    else:
        encoder = None  # tiktoken's, or the characters the tokens stage counts
    if config.datasets[dataset].conversations:
        conversations = conversations_task(config, dataset, deduped)
        tokens = tokenize_chat_task(config, dataset, conversations, encoder)
    else:
        tokens = tokenize_task(config, dataset, deduped, encoder)
    report_task(dataset, raw_results, ingest_results, filter_results, deduped, tokens, config.dataset(dataset).mixture)
    return tokens
