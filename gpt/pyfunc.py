"""A checkpoint as an MLflow python_function model: the loader module of every model gptflow registers.

    model = mlflow.pyfunc.load_model("models:/gptflow-demo@champion")
    model.predict(["春望\\n杜甫\\n"])                                          # -> [the text generated after it]
    model.predict(["春望\\n杜甫\\n"], params={"max_new_tokens": 64, "temperature": 0, "seed": 7})

MLflow imports this module from the model's own copy of gpt/ (the model's code/ folder) and calls _load_pyfunc with
the checkpoint inside the model (data/checkpoint). Input: prompts (a list of strings, a string, or a table with a
`prompt` column); params: max_new_tokens, temperature (0 is greedy), top_k (0: off), top_p (1: off) and seed (none:
a fresh one per call). Output: for each prompt, the text generated after it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from gpt.sample import SampleOptions, generate_texts, load_for_sampling

PROMPT = "prompt"


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

    @classmethod
    def of(cls, params: dict | None) -> Generation:
        """From predict's params (MLflow has already set aside those the signature does not name)."""
        return cls(**{k: v for k, v in (params or {}).items() if v is not None})


def prompts_of(model_input) -> list[str]:
    """The prompts of what MLflow hands predict: a table (MLflow makes one of a string, a list or a dict), its
    `prompt` column or else its only one; a plain list of strings as it is."""
    if hasattr(model_input, "columns"):
        column = PROMPT if PROMPT in model_input.columns else model_input.columns[0]
        model_input = model_input[column].tolist()
    return [str(p) for p in model_input]


class TextGenerator:
    """predict(prompts, params) -> the text generated after each prompt."""

    def __init__(self, ckpt: str | Path, device: str = "auto"):
        self.model, self.tokenizer, _ = load_for_sampling(ckpt, device)

    def predict(self, model_input, params: dict | None = None) -> list[str]:
        generation = Generation.of(params)
        seed = secrets.randbits(31) if generation.seed is None else generation.seed
        return [
            generate_texts(self.model, self.tokenizer, prompt, generation.options(seed + i))[0]
            for i, prompt in enumerate(prompts_of(model_input))
        ]


def _load_pyfunc(path: str) -> TextGenerator:
    """MLflow's entry point: `path` is the model's data folder, the checkpoint."""
    return TextGenerator(path)
