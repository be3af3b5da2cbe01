"""Models by reference: a registered version, an MLflow run or a local checkpoint folder, as a local folder.

    client = model_client(config, [ref])                                # None when no reference needs the server
    folder = model_folder(client, "models:/gptflow-poetry@champion")   # downloaded once into ~/.cache/gptflow/models
    folder = model_folder(client, "models:/gptflow-poetry/3")           # a version number; /latest is the newest
    folder = model_folder(client, "3f2a...c9")                          # a run id: its logged model
    folder = model_folder(client, "runs/poetry-char")                   # a run folder (its best checkpoint) as it is
    version = find_version(client, "gptflow-poetry", "champion")        # None when there is none
    version = registered_version(client, "models:/gptflow-poetry@champion")   # a ConfigError when there is none
    folder = version_folder(client, version)                            # a ModelVersion already found
    tokenizer = tokenizer_file(config, "models:/gptflow-poetry@champion")   # or a dataset, checkpoint or file

Used by sampling, evaluation, export, continued training and tokenizer reuse, so every command takes the same
references, resolved here alone; a registered version is downloaded by download_version alone.
Downloads land in ~/.cache/gptflow/models/ (GPTFLOW_CACHE moves it), keyed by the version's run too: another
tracking server (or a new database) numbers its versions anew.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gpt.checkpoint import resolve_checkpoint
from gpt.config import ConfigError
from gpt.hf import HUB_ID, TOKENIZER_FILES, hub_folder
from gpt.shards import TOKENIZER_FILE

MODEL_ARTIFACT = "model"
"""The name of a run's logged model (an MLflow model whose data is the checkpoint)."""
LATEST = "latest"
_MODEL = re.compile(r"^models:/(?P<name>[^/@'\"\\]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\w+))$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def client_for(config) -> MlflowClient:
    """The MLflow client of pipelines.yaml's tracking URI (MLFLOW_TRACKING_URI when set)."""
    uri = config.tracking.uri_for(config.base)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_client(config, refs: list[str]) -> MlflowClient | None:
    """The tracking server's client when one of `refs` names a registered version or a run; None when all are local
    folders, which need no server."""
    return client_for(config) if any(map(is_tracked, refs)) else None


def is_tracked(ref: str) -> bool:
    """Whether `ref` names a registered version or a run (not a local folder)."""
    return ref.startswith(("models:/", "runs:/")) or bool(_RUN_ID.match(ref))


def find_version(client: MlflowClient, name: str, alias: str, number: str = ""):
    """The version of `name` at `alias` (or the one numbered `number`), or None when the alias, the number or the
    model does not exist.

    MLflow reserves the alias name `latest` for the newest version (models:/NAME/latest), so that is what `latest`
    means here; it is never set, and always points at the version registered last."""
    try:
        if number:
            return client.get_model_version(name, number)
        if alias == LATEST:
            found = client.search_model_versions(f"name = '{name}'", max_results=1, order_by=["version_number DESC"])
            return found[0] if found else None
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def download_version(client: MlflowClient, version, dst: Path) -> Path:
    """Download a registered version (a ModelVersion) to become the folder `dst`, whole or not at all."""
    return _download(client, client.get_model_version_download_uri(version.name, version.version), dst)


def version_folder(client: MlflowClient, version) -> Path:
    """The checkpoint folder of a registered version, downloaded once into the cache (keyed by its run too: another
    tracking server, or a new database, numbers its versions anew)."""
    target = cache_dir() / version.name / f"{version.version}-{version.run_id}"
    if not target.is_dir():
        print(f"# downloading models:/{version.name}/{version.version}", file=sys.stderr)
        download_version(client, version, target)
    return resolve_checkpoint(target)


def _download(client: MlflowClient, uri: str, dst: Path) -> Path:
    """Download runs:/ID/PATH or an artifact location to become the folder `dst` (whole, or not at all)."""
    import mlflow.artifacts

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per file floods the flow logs
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-")
    try:
        got = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=client.tracking_uri)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(got, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def run_model(client: MlflowClient, run_id: str):
    """The run's newest logged model (the checkpoint it registered)."""
    outputs = client.get_run(run_id).outputs
    models = [client.get_logged_model(o.model_id) for o in (outputs.model_outputs if outputs else [])]
    models = [m for m in models if m.name == MODEL_ARTIFACT]
    if not models:
        raise ConfigError(f"run {run_id} logged no model (only a finished, published training run has one)")
    return max(models, key=lambda m: m.creation_timestamp)


def cache_dir() -> Path:
    return Path(os.environ.get("GPTFLOW_CACHE", "~/.cache/gptflow")).expanduser() / "models"


def model_folder(client: MlflowClient | None, ref: str) -> Path:
    """The local checkpoint folder of models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH, a run id, or a local
    run, checkpoint or MLflow model folder (`client` may be None for a local folder)."""
    if not is_tracked(ref):
        return resolve_checkpoint(Path(ref).expanduser())
    if client is None:
        raise ConfigError(f"{ref}: a registered model or run needs the tracking server")
    if _RUN_ID.match(ref):
        target, uri = cache_dir() / "runs" / ref, run_model(client, ref).artifact_location
    elif ref.startswith("runs:/"):
        target = cache_dir() / "runs" / ref.removeprefix("runs:/").replace("/", "-")
        uri = ref
    elif _MODEL.match(ref):
        return version_folder(client, registered_version(client, ref))
    else:
        raise ConfigError(f"{ref!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH or a run id")
    if not target.is_dir():  # downloads are whole or nothing
        print(f"# downloading {uri}", file=sys.stderr)
        _download(client, uri, target)
    return resolve_checkpoint(target)


def registered_version(client: MlflowClient, ref: str):
    """The registered version (a ModelVersion) models:/NAME@ALIAS or models:/NAME/VERSION names; a ConfigError when
    the reference has another form or names no version."""
    match = _MODEL.match(ref)
    if match is None:
        raise ConfigError(f"{ref!r}: expected a registered model, models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, number = match["name"], match["alias"] or LATEST, match["version"]
    found = find_version(client, name, alias, "" if number in (None, LATEST) else number)
    if found is None:
        raise ConfigError(f"{ref}: registered model {name!r} has no version {number or f'at {alias!r}'}")
    return found


def tokenizer_file(config, ref: str, key: str = "reuse_tokenizer") -> Path:
    """The tokenizer.json of a registered model or run (models:/NAME@ALIAS, models:/NAME/VERSION, a run id), of a
    token dataset, checkpoint or Hugging Face model folder (relative to pipelines.yaml), of a Hugging Face hub
    repository (Qwen/Qwen3-0.6B-Base), or such a file itself: what `tokenize.reuse_tokenizer` and
    `tokenize.hf_tokenizer` (`key`, named in errors) name."""
    if is_tracked(ref):
        return model_folder(client_for(config), ref) / TOKENIZER_FILE
    path = config.path(ref)
    if not path.exists() and HUB_ID.fullmatch(ref):
        return hub_folder(ref, TOKENIZER_FILES, key) / TOKENIZER_FILE
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(
            f"{key}: {ref} is not a registered model, a hub id, a token dataset, a checkpoint or model folder, or a "
            "tokenizer.json"
        )
    return file
