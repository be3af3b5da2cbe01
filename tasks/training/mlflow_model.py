"""A checkpoint logged as an MLflow model: the python_function flavor (gpt/pyfunc.py), with the checkpoint as its
data, its own copy of the engine (gpt/) as its code, a signature and an input example.

    model = log_model(client, experiment_id, run_id, ckpt, Generation(max_new_tokens=120), "春望\\n杜甫\\n", step)
    client.create_model_version(name, model.artifact_location, run_id=run_id, model_id=model.model_id)

A chat checkpoint (fine-tuned on conversations) is logged with the signature of MLflow's chat models instead: chat
requests in, chat completions out (gpt/pyfunc.py), the example its user's message, `generation` the settings of
requests that leave them out (the model's model_config) and the default seed.

The model then serves as it is (`mlflow models serve -m models:/NAME@champion --env-manager local`), loads with
mlflow.pyfunc.load_model, and still holds everything sampling, evaluation and continued training read (the
checkpoint's weights, meta, tokenizer and training state in data/checkpoint).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA, CHAT_MODEL_OUTPUT_SCHEMA
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

import gpt
from gpt.checkpoint import read_meta
from gpt.pyfunc import Generation, is_chat
from tasks.registry import MODEL_ARTIFACT

EXAMPLE_TOKENS = 8  # the input example's max_new_tokens: MLflow runs it once to check the model loads and predicts
REQUIREMENTS = ("mlflow", "torch", "numpy", "tiktoken", "tokenizers", "safetensors", "pyyaml")
_PARAM_TYPES = {"int": "long", "float": "double", "int | None": "long"}  # Generation's field types


def signature(generation: Generation) -> ModelSignature:
    """Prompts in, generated texts out; the generation settings as params with `generation`'s defaults."""
    params = [
        ParamSpec(name, _PARAM_TYPES[field.type], getattr(generation, name))
        for name, field in Generation.__dataclass_fields__.items()
    ]
    return ModelSignature(Schema([ColSpec("string")]), Schema([ColSpec("string")]), ParamSchema(params))


def chat_signature(generation: Generation) -> ModelSignature:
    """MLflow's chat schemas (OpenAI-style requests and completions), and the seed as a param, the one setting those
    requests lack (served, a request's top-level `seed`)."""
    seed = ParamSpec("seed", "long", generation.seed)
    return ModelSignature(CHAT_MODEL_INPUT_SCHEMA, CHAT_MODEL_OUTPUT_SCHEMA, ParamSchema([seed]))


def interface(ckpt: Path, generation: Generation, example: str) -> dict:
    """save_model's signature and input example for `ckpt`: prompts, or chat requests with the model_config that
    fills in what they leave out."""
    if not is_chat(ckpt):
        return {"signature": signature(generation), "input_example": ([example], {"max_new_tokens": EXAMPLE_TOKENS})}
    request = {"messages": [{"role": "user", "content": example}], "max_tokens": EXAMPLE_TOKENS}
    return {"signature": chat_signature(generation), "input_example": request, "model_config": asdict(generation)}


def requirements() -> list[str]:
    """What the model needs to load, pinned to the versions it was logged with (torch without a +cpu/+cu suffix,
    so the same requirement installs the right build on each machine)."""
    pins = []
    for package in REQUIREMENTS:
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def log_model(client: MlflowClient, experiment_id: str, run_id: str, ckpt: Path, generation: Generation, example: str,
              step: int, tags: dict[str, str] | None = None) -> LoggedModel:  # fmt: skip
    """Log `ckpt` as a model of the run (a LoggedModel of its experiment with `tags`, output of the run at `step`)."""
    logged = client.create_logged_model(
        experiment_id, name=MODEL_ARTIFACT, source_run_id=run_id, tags=tags, model_type=read_meta(ckpt)["model"]["arch"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        data, folder = Path(tmp) / "checkpoint", Path(tmp) / MODEL_ARTIFACT  # the model's data/checkpoint
        shutil.copytree(ckpt, data)
        mlflow.pyfunc.save_model(
            folder, loader_module="gpt.pyfunc", data_path=str(data), code_paths=[str(Path(gpt.__file__).parent)],
            mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id,
                               model_uuid=logged.model_id),
            pip_requirements=requirements(), **interface(ckpt, generation, example),
        )  # fmt: skip
        for cache in folder.rglob("__pycache__"):
            shutil.rmtree(cache)
        client.log_model_artifacts(logged.model_id, str(folder))
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    return client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
