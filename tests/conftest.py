"""Shared test set-up: offline tiktoken, no telemetry, and small datasets and an open base model built from
../shared/data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from file_server import FileServer
from helpers import SHAKESPEARE, SHARED_DATA, tiny_settings
from hf_base import make_hf_base, poems

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED_DATA / "tiktoken"))
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    if not SHAKESPEARE.is_file():
        pytest.fail(f"test data missing: {SHAKESPEARE} (set GPTFLOW_SHARED_DATA to the shared data folder)")
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def char_dataset(tmp_path_factory, shakespeare_text) -> Path:
    """A char-level dataset of the first 200,000 characters of Tiny Shakespeare."""
    from gpt.prepare_text import prepare_text

    folder = tmp_path_factory.mktemp("data")
    src = folder / "input.txt"
    src.write_text(shakespeare_text[:200_000], encoding="utf-8")
    prepare_text(src, folder / "shakespeare_char", "char")
    return folder / "shakespeare_char"


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """The open base model of tests/hf_base.py, its tokenizer trained on 3,000 Tang poems, in a folder named as the
    hub's Qwen/Qwen3-0.6B-Base. Built once a session and shared: a test reads it and changes only a copy."""
    return make_hf_base(tmp_path_factory.mktemp("hf") / "Qwen3-0.6B-Base", poems(3000))


@pytest.fixture
def tiny(char_dataset, tmp_path):
    """tiny(**overrides) -> (TrainConfig, path of the same config as JSON): a model whose steps take milliseconds."""
    from gpt.config import TrainConfig, from_dict

    def make(out_dir: Path | None = None, **extra):
        settings = tiny_settings(char_dataset, out_dir or tmp_path / "run", **extra)
        path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.json')))}.json"
        path.write_text(json.dumps(settings), encoding="utf-8")
        return from_dict(TrainConfig, settings), path

    return make


@pytest.fixture
def file_server():
    """A real HTTP server on 127.0.0.1 (see tests/file_server.py)."""
    server = FileServer()
    yield server
    server.close()
