"""The work of the flows, callable without Prefect; each stage's Prefect task sits at the end of its module.

    config.py    the pipelines.yaml root schema and its loader
    stage.py     fingerprints, completion markers, data roots, reuse-or-build of a stage folder
    parallel.py  the worker pool, DuckDB connection limits, progress lines
    registry.py  models by reference (models:/ URIs, run ids, folders) as local checkpoint folders
    corpus/      the build-corpus stages in run order: raw, ingest, filter, dedupe, tokenize, report
    training/    presets and run config, torchrun launch, MLflow tracking, run (plan + train), publish

corpus/ and training/ import nothing of each other; nothing here imports flows/ or cli/.
"""
