"""A checkpoint as an MLflow python_function model: the loader module of every model gptflow registers.

    model = mlflow.pyfunc.load_model("models:/gptflow-demo@champion")
    model.predict(["春望\\n杜甫\\n"])                                          # -> [the text generated after it]
    model.predict(["春望\\n杜甫\\n"], params={"max_new_tokens": 64, "temperature": 0, "seed": 7})

    chat = mlflow.pyfunc.load_model("models:/gptflow-chat@champion")        # a model fine-tuned on conversations
    chat.predict({"messages": [{"role": "user", "content": "春望"}], "max_tokens": 64, "temperature": 0},
                 params={"seed": 7})                                        # -> a chat completion (below)

MLflow imports this module from the model's own copy of gpt/ (the model's code/ folder) and calls _load_pyfunc with
the checkpoint inside the model (data/checkpoint). Input: prompts (a list of strings, a string, or a table with a
`prompt` column); params: max_new_tokens, temperature (0 is greedy), top_k (0: off), top_p (1: off) and seed (none:
a fresh one per call). Output: for each prompt, the text generated after it.

A chat model (its meta's dataset names a chat template, gpt/chat.py) is logged with the signature of MLflow's chat
models and speaks their OpenAI-style shapes instead. Input: one chat request, {"messages": [{"role", "content"},
...], "max_tokens", "temperature", "top_p", "top_k", "stop", "n"}, all but messages optional (the generation
settings the model was logged with, its model_config, fill in the rest); params: seed (served: the request's
top-level `seed`). Output: a chat completion, {"id", "object": "chat.completion", "created", "model", "choices":
[{"index", "message": {"role": "assistant", "content"}, "finish_reason": "stop" (the reply ended or met a stop
string) or "length" (max_tokens ran out)}], "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}.
Messages that are no conversation (an unknown role, a last message that is not the user's) raise MLflow's
bad-request error with the ChatError's message, the ChatError its cause; content that is not text fails MLflow's
check of the chat schema first. Served, both answer 400 with the message.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from gpt.chat import ChatError, ChatFormat, ReplyStats, check_messages, fine_tuned_on_conversations, stream_reply
from gpt.checkpoint import read_meta, resolve_checkpoint
from gpt.sample import SampleOptions, generate_texts, load_for_sampling

PROMPT = "prompt"
REQUEST_FIELDS = {"max_tokens": "max_new_tokens", "temperature": "temperature", "top_k": "top_k", "top_p": "top_p"}
"""A chat request's generation settings: their Generation names."""
MAX_CHOICES = 8
"""The most replies (`n`) one chat request may ask for."""
MAX_REPLY_TOKENS = 8192
"""The longest reply (`max_tokens`) one chat request may ask for."""


@dataclass(frozen=True)
class Generation:
    """The params of predict, with the defaults a registered model is logged with."""

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 200
    top_p: float = 1.0
    seed: int | None = None

    def options(self, seed: int) -> SampleOptions:
        return SampleOptions(1, self.max_new_tokens, self.temperature, self.top_k or None,
                             self.top_p if self.top_p < 1 else None, seed)  # fmt: skip

    def fresh_seed(self) -> int:
        return secrets.randbits(31) if self.seed is None else self.seed

    @classmethod
    def of(cls, params: dict | None) -> Generation:
        """From predict's params (MLflow has already set aside those the signature does not name)."""
        return cls(**{k: v for k, v in (params or {}).items() if v is not None})

    def asked(self, request: dict, params: dict | None) -> Generation:
        """These settings, overridden by a chat request's and by predict's params (the seed)."""
        given = {name: request[key] for key, name in REQUEST_FIELDS.items() if request.get(key) is not None}
        return replace(self, **given, **{k: v for k, v in (params or {}).items() if v is not None})


def is_chat(ckpt: str | Path) -> bool:
    """Whether a checkpoint (or an MLflow model of one) was fine-tuned on conversations."""
    return fine_tuned_on_conversations(read_meta(resolve_checkpoint(ckpt)))


def prompts_of(model_input) -> list[str]:
    """The prompts of what MLflow hands predict: a table (MLflow makes one of a string, a list or a dict), its
    `prompt` column or else its only one; a plain list of strings as it is."""
    if hasattr(model_input, "columns"):
        column = PROMPT if PROMPT in model_input.columns else model_input.columns[0]
        model_input = model_input[column].tolist()
    return [str(p) for p in model_input]


def request_of(model_input) -> dict:
    """The chat request of what MLflow hands predict: a table of one row (MLflow makes one of the request's dict,
    with the fields its signature names), or the dict itself."""
    if hasattr(model_input, "columns"):
        if len(model_input) != 1:
            raise ChatError(f"one chat request at a time, not {len(model_input)}")
        return {k: v[0] for k, v in model_input.to_dict(orient="list").items()}
    return dict(model_input)


@contextmanager
def bad_request() -> Iterator[None]:
    """A ChatError inside as the MLflow that loaded the model reports a bad request: an MlflowException with the
    error's message (the scoring server answers 400 with it, no traceback). As it is where no MLflow is loaded:
    gpt/ imports none."""
    try:
        yield
    except ChatError as e:
        if (exceptions := sys.modules.get("mlflow.exceptions")) is None:
            raise
        raise exceptions.MlflowException.invalid_parameter_value(str(e)) from e


def until_stop(pieces: Iterable[str], stops: list[str]) -> tuple[str, bool]:
    """The text of `pieces` up to the first of the `stops` strings, and whether one came."""
    text = ""
    for piece in pieces:
        text += piece
        if cuts := [i for stop in stops if stop and (i := text.find(stop)) >= 0]:
            return text[: min(cuts)], True
    return text, False


class TextGenerator:
    """predict(prompts, params) -> the text generated after each prompt."""

    def __init__(self, ckpt: str | Path, device: str = "auto"):
        self.model, self.tokenizer, _ = load_for_sampling(ckpt, device)

    def predict(self, model_input, params: dict | None = None) -> list[str]:
        generation = Generation.of(params)
        seed = generation.fresh_seed()
        return [
            generate_texts(self.model, self.tokenizer, prompt, generation.options(seed + i))[0]
            for i, prompt in enumerate(prompts_of(model_input))
        ]


@dataclass(frozen=True)
class Reply:
    content: str
    finish_reason: str
    """stop: the reply ended (or met a stop string); length: it ran out of tokens."""
    prompt_tokens: int
    completion_tokens: int


def completion(model: str, replies: list[Reply]) -> dict:
    """The chat completion of `replies` to one request (OpenAI's shape, MLflow's ChatCompletionResponse)."""
    choices = [
        {"index": i, "message": {"role": "assistant", "content": r.content}, "finish_reason": r.finish_reason}
        for i, r in enumerate(replies)
    ]
    prompt, generated = replies[0].prompt_tokens, sum(r.completion_tokens for r in replies)
    usage = {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}
    return {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": usage}  # fmt: skip


class ChatGenerator:
    """predict(chat request, params) -> a chat completion: the assistant's replies to the request's messages."""

    def __init__(self, ckpt: str | Path, generation: Generation, device: str = "auto"):
        self.model, tokenizer, path = load_for_sampling(ckpt, device)
        self.chat, self.generation = ChatFormat.of(tokenizer), generation
        meta = read_meta(path)
        self.name = f"{meta['model'].get('arch', 'gpt2')}-step-{meta['step']}"

    def predict(self, model_input, params: dict | None = None) -> dict:
        with bad_request():
            request = request_of(model_input)
            messages = check_messages(request.get("messages", []), reply_next=True)
            if request.get("stream"):
                raise ChatError("stream is not served: ask without it, for the whole reply at once")
            n = 1 if request.get("n") is None else int(request["n"])
            if not 1 <= n <= MAX_CHOICES:
                raise ChatError(f"n must be between 1 and {MAX_CHOICES}, got {n}")
            generation = self.generation.asked(request, params)
            if not 1 <= generation.max_new_tokens <= MAX_REPLY_TOKENS:
                raise ChatError(f"max_tokens must be between 1 and {MAX_REPLY_TOKENS}, got {generation.max_new_tokens}")
        seed, stops = generation.fresh_seed(), list(request.get("stop") or [])
        return completion(self.name, [self.reply(messages, generation.options(seed + i), stops) for i in range(n)])

    def reply(self, messages: list[dict], options: SampleOptions, stops: list[str]) -> Reply:
        stats = ReplyStats()
        content, stopped = until_stop(stream_reply(self.model, self.chat, messages, options, stats), stops)
        finish = "stop" if stopped or stats.ended else "length"
        return Reply(content, finish, stats.prompt_tokens, stats.completion_tokens)


def _load_pyfunc(path: str, model_config: dict | None = None) -> TextGenerator | ChatGenerator:
    """MLflow's entry point: `path` is the model's data folder, the checkpoint; a chat model's `model_config` holds
    the generation settings its requests leave out."""
    if is_chat(path):
        return ChatGenerator(path, Generation.of(model_config))
    return TextGenerator(path)
