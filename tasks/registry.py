"""Models by reference: a registered version, an MLflow run or a local checkpoint folder, as a local folder.

    folder = model_folder(client, "models:/gptflow-poetry@champion")   # downloaded once into ~/.cache/gptflow/models
    folder = model_folder(client, "models:/gptflow-poetry/3")           # a version number; /latest is the newest
    folder = model_folder(client, "3f2a...c9")                          # a run id: its logged model
    folder = model_folder(client, "runs/poetry-char")                   # a run folder (its best checkpoint) as it is
    version = find_version(client, "gptflow-poetry", "champion")        # None when there is none

Used by sampling, evaluation, continued training and tokenizer reuse, so every command takes the same references.
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

MODEL_ARTIFACT = "model"
"""The name of a run's logged model (an MLflow model whose data is the checkpoint)."""
LATEST = "latest"
_MODEL = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\w+))$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def client_for(config) -> MlflowClient:
    """The MLflow client of pipelines.yaml's tracking URI (MLFLOW_TRACKING_URI when set)."""
    uri = config.tracking.uri_for(config.base)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


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


def download_model(client: MlflowClient, uri: str, dst: Path) -> Path:
    """Download models:/NAME/VERSION, runs:/ID/PATH or an artifact location to become the folder `dst` (whole, or
    not at all)."""
    import mlflow.artifacts

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per file floods the flow logs
    if uri.startswith("models:/"):
        name, version = uri.removeprefix("models:/").split("/")
        uri = client.get_model_version_download_uri(name, version)
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
    elif match := _MODEL.match(ref):
        name, alias, number = match["name"], match["alias"] or LATEST, match["version"]
        found = find_version(client, name, alias, "" if number in (None, LATEST) else number)
        if found is None:
            raise ConfigError(f"{ref}: registered model {name!r} has no version {number or f'at {alias!r}'}")
        target = cache_dir() / name / f"{found.version}-{found.run_id}"
        uri = f"models:/{name}/{found.version}"
    else:
        raise ConfigError(f"{ref!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH or a run id")
    if not target.is_dir():  # downloads are whole or nothing
        print(f"# downloading {uri}", file=sys.stderr)
        download_model(client, uri, target)
    return resolve_checkpoint(target)
