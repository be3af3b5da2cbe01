"""What a night of continued training starts from and trains on.

    night = start_night(config, tracker, "chinese-gpt2", alias="champion")   # the parent, downloaded; the run folder
    data = night_data(night, config.root.local(tokens.rel))                  # base dataset, cursor, new documents
    finish_night(night.out_dir)                                                # published: never resumed again

A night carries on the parent's whole training state (gpt.train's continue_from): weights, optimizer, step and
data cursor. Its dataset is rebuilt with the parent's tokenizer, so new text never changes the vocabulary (a char
vocabulary maps unseen characters to its unknown token). It trains first on the documents that are new since the
dataset the parent last met (told apart by their content keys in train.npz and eval.npz), with a `replay` share of
each batch going on through the old data, then goes on through the old data from the parent's cursor. The old data
is the dataset the parent's cursor counts in (its base), kept until one pass over it is done; then the night's own
dataset becomes the base, from its start. The base's evaluation text stays the same while it is the base, so every
night and the champion are compared on the same documents.

A night that fails, times out or is cancelled leaves its run folder with night.json unpublished; the next attempt
from the same parent resumes that folder from its newest checkpoint instead of starting over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from gpt.checkpoint import read_meta, resolve_checkpoint
from gpt.data import TokenWindows
from gpt.shards import TokenDataset, token_dtype, write_manifest, write_shard
from tasks.registry import download_version
from tasks.training.presets import ContinueConfig, run_folder
from tasks.training.run import new_run_name, parent_version
from tasks.training.tracking import Tracker

NIGHT_FILE = "night.json"
KNOWN_TAG = "known_dataset"
"""Registered-version tag: the dataset whose documents the version has met (or was scheduled to meet)."""


@dataclass(frozen=True)
class Night:
    run_name: str
    out_dir: Path
    parent: object
    """The registered version carried on (an MLflow ModelVersion)."""
    weights: Path
    """The parent's checkpoint, downloaded: weights, training state, tokenizer."""

    @property
    def step(self) -> int:
        return read_meta(self.weights)["step"]

    def engine_settings(self, data: NightData, steps: int, cont: ContinueConfig) -> dict:
        """gpt.train keys of the night: carry the parent on for `steps` steps at the constant `cont.lr` (and its
        Muon matrices at the same share of their own rate). A version registered without its training state
        (state.pt) starts from its weights with a new optimizer instead."""
        if (self.weights / "state.pt").is_file():
            start = {"continue_from": str(self.weights), "max_iters": self.step + steps}
        else:
            print(f"version {self.parent.version} holds no training state: its weights start a new optimizer")
            start = {"init_from": str(self.weights), "max_iters": steps}
        fresh = {"fresh_data": str(data.fresh or ""), "replay": cont.replay}
        rates = {"lr": cont.lr, "min_lr": cont.lr, "lr_schedule": "constant"}
        trained = read_meta(self.weights)["config"]
        if trained.get("optimizer") == "muon":
            rates["muon_lr"] = trained["muon_lr"] * cont.lr / trained["lr"]
        return start | fresh | rates


@dataclass(frozen=True)
class NightData:
    base: Path
    """The dataset the cursor counts in: trained on after the new documents, and evaluated on."""
    cursor_goes_on: bool
    """False when the base is new this night (the cursor starts at its beginning)."""
    fresh: Path | None
    """A token dataset of the new documents (None: there are none)."""
    new_documents: int
    known: Path
    """The dataset whose documents the night has met: the next night's reference for what is new."""

    def tags(self) -> dict[str, str]:
        return {
            KNOWN_TAG: str(self.known), "base_dataset": str(self.base), "cursor_goes_on": str(self.cursor_goes_on),
            "new_documents": str(self.new_documents),
        }  # fmt: skip


def start_night(config, tracker: Tracker, preset: str, alias: str) -> Night:
    """The version at `alias` of the preset's registered model, downloaded with its training state into the night's
    run folder: an unfinished earlier attempt's folder for the same version, else a new one."""
    parent = parent_version(config, tracker, preset, alias)
    unfinished = unfinished_night(run_folder(config, preset, ""), str(parent.version))
    run_name = unfinished.name if unfinished else new_run_name(preset)
    out_dir = run_folder(config, preset, run_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    parent_model = out_dir / "parent"  # downloaded whole or not at all
    if not parent_model.is_dir():
        download_version(tracker.client, parent, parent_model)
    (out_dir / NIGHT_FILE).write_text(json.dumps({"parent_version": str(parent.version), "published": False}))
    if unfinished is not None:
        print(f"resuming the unfinished night from version {parent.version} in {out_dir}")
    return Night(run_name, out_dir, parent, resolve_checkpoint(parent_model))


def unfinished_night(preset_runs: Path, parent_version: str) -> Path | None:
    """The newest run folder of a night from `parent_version` that was never published."""
    found = []
    for marker in preset_runs.glob(f"*/{NIGHT_FILE}"):
        night = json.loads(marker.read_text())
        if night["parent_version"] == parent_version and not night["published"]:
            found.append(marker.parent)
    return max(found, key=lambda p: (p / NIGHT_FILE).stat().st_mtime) if found else None


def finish_night(out_dir: Path) -> None:
    """Mark the night of run folder `out_dir` published (a folder that holds no night is left as it is)."""
    marker = out_dir / NIGHT_FILE
    if marker.is_file():
        marker.write_text(json.dumps(json.loads(marker.read_text()) | {"published": True}))


def document_keys(dataset: Path) -> np.ndarray:
    """The content keys of every document of a token dataset (train and val), sorted."""
    keys = []
    for name in ("train.npz", "eval.npz"):
        if (dataset / name).is_file():
            with np.load(dataset / name) as index:
                keys.append(index["key"])
    if not keys:
        raise FileNotFoundError(f"{dataset} has no document index (train.npz); rebuild it with build-corpus")
    return np.unique(np.concatenate(keys))


def write_fresh(known: Path, now: Path, out: Path, block_size: int) -> tuple[Path | None, int]:
    """The train documents of `now` that `known` lacks, as a token dataset in `out` (train split only); returns it
    (None when there are none) and their count. The stream is wrapped a context's worth at both ends, so that the
    windows of any epoch offset cover every new token."""
    dataset = TokenDataset.open(now)
    with np.load(now / "train.npz") as index:
        start, tokens, keys = index["start"], index["tokens"], index["key"]
    new = np.flatnonzero(~np.isin(keys, document_keys(known)))
    if not len(new):
        return None, 0
    stream = np.concatenate([dataset.read("train", start[k], start[k] + tokens[k] + 1) for k in new.tolist()])
    wrapped = stream[np.arange(-block_size, len(stream) + 2 * block_size) % len(stream)]
    out.mkdir(parents=True, exist_ok=True)
    entry = write_shard(out / "train-00000.bin", wrapped, token_dtype(dataset.vocab_size))
    write_manifest(out, dataset.tokenizer(), {"train": [entry]}, created_by=f"new documents of {now} since {known}")
    return out, len(new)


def night_data(night: Night, now: Path, known: Path | None = None) -> NightData:
    """Where the night's data comes from: the parent's base dataset and cursor, or `now` once the base is done;
    the documents of `now` that the parent has not met (`known`: the dataset it met last, from its tags)."""
    meta = read_meta(night.weights)
    block, seed = meta["model"]["block_size"], meta["config"]["seed"]
    base = Path(meta["dataset"]["path"])
    known = known or Path(night.parent.tags.get(KNOWN_TAG) or base)
    goes_on = (base / "manifest.json").is_file()  # a base removed from the data root cannot go on
    if goes_on:
        windows = TokenWindows(TokenDataset.open(base).shard_paths("train"), block, seed).num_windows
        goes_on = meta.get("cursor", 0) < windows  # one pass over the base is done: the night's dataset is next
    if not goes_on:
        base = now
    fresh, count = (None, 0) if known == now else write_fresh(known, now, night.out_dir / "fresh", block)
    print(
        f"night from version {night.parent.version}: {count} new documents since {known.name}; then "
        + (f"{base.name} from sample {meta.get('cursor', 0):,}" if goes_on else f"{base.name} from its start")
    )
    return NightData(base, goes_on, fresh, count, now)


night_data_task = task(night_data, name="night-data", cache_policy=NO_CACHE)
"""No cache key: the night's parent, a ModelVersion read from a tracking server, holds protobuf lists that do not
pickle, so Prefect cannot hash it."""
