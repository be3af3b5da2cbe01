"""The build-corpus stages, in run order; each module holds its pure function and ends with its Prefect task.

    raw       sources -> raw/                     downloads and extractions              raw.fetch_sources
    ingest    raw/ -> corpus/<corpus>-<fp>/        one Parquet schema, bad records kept   ingest.ingest_corpus
    filter    corpus/ -> filtered/<corpus>-<fp>/   `where` and the quality rules          filter.filter_corpus
    dedupe    filtered/ -> deduped/<dataset>-<fp>/ exact and near duplicates, all corpora dedupe.dedupe_dataset
              (its out-of-core near-duplicate search: near_duplicates.find_near_duplicates)
    bpe       deduped/ -> tokenizers/<dataset>-bpe<vocab>-<fp>/  a trained tokenizer     bpe.bpe_dataset
    tokenize  deduped/ -> tokens/<dataset>-<tokenizer>-<fp>/  train/val shards, manifest  tokenize.tokenize_dataset
    report    the counts of every stage as the flow run's markdown artifact              report.publish_report

Each stage reads only the outputs of the stages before it. What they read and measure text with lives beside them:
sources/ (download, archive, identity) for raw, formats/ (jsonl, lines, readers, poetry) for ingest, where (a
`where` filter: one checked expression) for filter, text/ (rules, stats, variants, sketch, tables) for filter, dedupe
and tokenize, and split (the `tokenize` settings, the train/val split by content and the documents rendered through
their templates) for bpe and tokenize.
"""
