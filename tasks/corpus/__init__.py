"""The build-corpus stages, one module each, named in run order; each holds its pure function and ends with its
Prefect task.

    stage1_raw       sources -> raw/                              downloads, extractions    fetch_sources
    stage2_ingest    raw/ -> corpus/<corpus>-<fp>/                one Parquet schema        ingest_corpus
    stage3_filter    corpus/ -> filtered/<corpus>-<fp>/           `where`, quality rules    filter_corpus
    stage4_dedupe    filtered/ -> deduped/<dataset>-<fp>/         exact and near copies     dedupe_dataset
    stage5_bpe       deduped/ -> tokenizers/<dataset>-bpe<v>-<fp>/ a trained tokenizer      bpe_dataset
    stage6_tokenize  deduped/ -> tokens/<dataset>-<tok>-<fp>/     train/val shards          tokenize_dataset
    stage7_report    the counts of every stage, as the flow run's markdown artifact        publish_report

settings.py holds the keys of pipelines.yaml the stages own (sources, quality rules, `where` words, dedupe,
tokenize) and imports no stage, so loading pipelines.yaml loads none of them. Each stage reads only the outputs of
the stages before it; what they read and measure text with lives one level down: sources/ (download, archive,
identity) for raw, formats/ (jsonl, lines, readers, poetry, templates) for ingest, and text/ for the rest: rules,
stats, variants and where (the `where` filter parsed by DuckDB) for filter; sketch, tables and near_duplicates (the
out-of-core near-duplicate search) for dedupe; split (the train/val split by content and the documents rendered
through their templates) for bpe and tokenize. A stage takes its tokenizer as a file: a model's tokenizer by
reference is resolved before the stage runs (tasks/registry.py tokenizer_file).
"""
