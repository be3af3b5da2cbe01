"""A chat checkpoint registered as an MLflow model (tasks/training/mlflow_model.py, gpt/pyfunc.py): it takes chat
requests and answers with chat completions in the OpenAI shape of MLflow's chat models, loaded with mlflow.pyfunc and
served by `mlflow models serve`; against a real MLflow registry in a sqlite file.

    .venv/bin/python -m pytest tests/gpt/test_chat_serving.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest
from chat_model import POEM, TITLE, make_chat_checkpoint
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA, ChatCompletionResponse
from servers import model_server

from gpt.chat import ChatError
from gpt.checkpoint import read_meta, resolve_checkpoint
from gpt.pyfunc import Generation
from tasks.training.mlflow_model import interface, log_model

NAME = "gptflow-chat"
ASKED = [{"role": "user", "content": TITLE}]
ANSWERED = [{"index": 0, "message": {"role": "assistant", "content": POEM}, "finish_reason": "stop"}]
PROMPT_TOKENS = 5  # <|user|> 春 望 <|end|> <|assistant|>
ENV = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """(tracking URI, folder, chat checkpoint): the tiny chat model logged as a run's model with greedy replies of
    up to 40 tokens as its defaults, registered as gptflow-chat at alias champion."""
    folder = tmp_path_factory.mktemp("chat-registry")
    ckpt = make_chat_checkpoint(folder / "run")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("chat", artifact_location=str(folder / "artifacts"))
    run_id = client.create_run(experiment_id).info.run_id
    model = log_model(client, experiment_id, run_id, ckpt, Generation(max_new_tokens=40, temperature=0), TITLE, 60)
    client.create_registered_model(NAME)
    version = client.create_model_version(NAME, model.artifact_location, run_id, model_id=model.model_id)
    client.set_registered_model_alias(NAME, "champion", version.version)
    return uri, folder, ckpt


@pytest.fixture
def chat_model(registry, monkeypatch):
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry[0])
    return mlflow.pyfunc.load_model(f"models:/{NAME}@champion")


def request(**fields) -> dict:
    return {"messages": ASKED, **fields}


def test_a_chat_model_answers_a_chat_request_with_a_chat_completion(chat_model):
    assert chat_model.metadata.signature.inputs == CHAT_MODEL_INPUT_SCHEMA
    answer = chat_model.predict(request(max_tokens=60, temperature=0.0))
    assert ChatCompletionResponse.from_dict(answer).to_dict() == answer  # MLflow's own shape, nothing more
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert answer["choices"] == ANSWERED
    generated = len(POEM) + 1  # a char model: a token per character, then the end of the turn
    assert answer["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": generated,
                               "total_tokens": PROMPT_TOKENS + generated}  # fmt: skip
    assert chat_model.predict({"messages": ASKED})["choices"] == answer["choices"]  # the logged defaults: greedy


def test_a_reply_stops_at_max_tokens_or_a_stop_string_and_comes_n_times(chat_model):
    cut = chat_model.predict(request(max_tokens=3, temperature=0.0))
    assert cut["choices"][0]["message"]["content"] == POEM[:3] and cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 3
    line = chat_model.predict(request(stop=["\n"], temperature=0.0))
    assert line["choices"][0]["message"]["content"] == POEM.split("\n")[0]
    assert line["choices"][0]["finish_reason"] == "stop"
    sampled = [chat_model.predict(request(temperature=1.5, n=2), params={"seed": 3}) for _ in range(2)]
    assert [c["index"] for c in sampled[0]["choices"]] == [0, 1]
    assert sampled[0]["choices"] == sampled[1]["choices"]  # the same seed, the same replies


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"messages": [{"role": "robot", "content": TITLE}]}, "role 'robot' is not one of system, user, assistant"),
        ({"messages": [*ASKED, {"role": "assistant", "content": POEM}]}, "the last message must be the user's"),
        ({"messages": ASKED, "n": 9}, "n must be between 1 and 8"),
        ({"messages": ASKED, "max_tokens": 100_000}, "max_tokens must be between 1 and 8192"),
        ({"messages": ASKED, "n": 0}, "n must be between 1 and 8"),
        ({"messages": ASKED, "stream": True}, "stream is not served"),
    ],
    ids=["unknown-role", "assistant-last", "too-many-replies", "too-long-a-reply", "no-reply", "stream"],
)
def test_a_request_that_is_no_conversation_or_asks_too_much_is_a_bad_request(chat_model, request_, error):
    with pytest.raises(MlflowException, match=error) as raised:
        chat_model.predict(request_)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE" and isinstance(raised.value.__cause__, ChatError)


def test_content_that_is_not_text_fails_the_check_of_the_chat_schema(chat_model):
    with pytest.raises(MlflowException, match="`content`. Expected type string"):
        chat_model.predict({"messages": [{"role": "user", "content": [{"type": "text", "text": TITLE}]}]})


def test_the_registered_chat_model_holds_its_checkpoint_as_data(chat_model, registry, tmp_path):
    import mlflow.artifacts

    uri, _, ckpt = registry
    folder = mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path), tracking_uri=uri)
    assert read_meta(resolve_checkpoint(folder)) == read_meta(ckpt)


def test_a_checkpoint_without_a_chat_template_is_logged_for_prompts(registry, tmp_path):
    plain = tmp_path / "step-60"
    shutil.copytree(registry[2], plain)
    meta = read_meta(plain)
    del meta["dataset"]["chat"]
    (plain / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    logged = interface(plain, Generation(max_new_tokens=8), TITLE)
    assert logged["input_example"] == ([TITLE], {"max_new_tokens": 8}) and "model_config" not in logged
    params = ["max_new_tokens", "temperature", "top_k", "top_p", "seed"]
    assert [p.name for p in logged["signature"].params.params] == params


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_openai_style_chat_requests(registry, chat_model):
    uri, folder, _ = registry
    served = model_server(f"models:/{NAME}@champion", uri, folder, {**os.environ, **ENV})
    url = served.health.removesuffix("/ping") + "/invocations"
    try:
        served.start()
        status, answer = post(url, {"messages": ASKED, "max_tokens": 60, "temperature": 0})
        _, sampled = post(url, {"messages": ASKED, "temperature": 1.5, "seed": 3})  # the seed: a param of predict
        bad, error = post(url, {"messages": [{"role": "robot", "content": TITLE}], "max_tokens": 60})
    finally:
        served.stop()
    assert status == 200 and answer["object"] == "chat.completion"
    assert answer["choices"] == ANSWERED
    assert answer["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert sampled["choices"] == chat_model.predict(request(temperature=1.5), params={"seed": 3})["choices"]
    assert bad == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "role 'robot' is not one of system, user, assistant" in error["message"] and "stack_trace" not in error
