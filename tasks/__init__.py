"""The work of the flows, callable without Prefect; each stage's Prefect task sits at the end of its module.

    config.py    the pipelines.yaml root schema and its loader (imports no stage: corpus/settings.py holds theirs)
    stage.py     fingerprints, completion markers, data roots, reuse-or-build of a stage folder
    parallel.py  the worker pool, DuckDB connection limits, progress lines
    registry.py  models by reference (models:/ URIs, run ids, folders) as local checkpoint folders, and their
                 tokenizers; the one place a reference is resolved and a registered version downloaded
    failures.py  a flow's expected failures as one line, without retries
    corpus/      the build-corpus stages, stage1_raw.py to stage7_report.py, and their settings and helpers
    training/    presets and run config, torchrun launch, MLflow tracking, run (plan + train), publish, nights

corpus/ and training/ import nothing of each other; nothing here imports flows/ or cli/.
"""
