"""Qwen3-shaped models as Hugging Face folders, both ways: what transformers' Qwen3ForCausalLM (and vLLM, and
llama.cpp's converter) read and write.

    model = load_qwen3("path/to/folder")           # config.json + model.safetensors (or its shards)
    save_qwen3(model, "export/", eot_token=0)      # transformers.Qwen3ForCausalLM.from_pretrained("export/")

Parameter names are the same on both sides (gpt/qwen3.py), so nothing is renamed or transposed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gpt.atomic import default_mode
from gpt.model_config import ModelConfig
from gpt.qwen3 import Qwen3

WEIGHT_FILES = ("model.safetensors", "model-*-of-*.safetensors")


def read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is missing or not JSON ({e})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return config


def qwen3_config(hf: dict, folder: Path) -> ModelConfig:
    """Our shape of a Qwen3 config.json; a setting this engine does not implement is refused by name."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"{folder}: rope_type {rope.get('rope_type')!r} is not supported (only default rotary)")
    if hf.get("attention_bias") or hf.get("use_sliding_window") or hf.get("hidden_act", "silu") != "silu":
        raise ValueError(
            f"{folder}: attention biases, sliding windows and activations other than silu are not supported"
        )
    try:
        return ModelConfig(
            arch="qwen3", n_layer=int(hf["num_hidden_layers"]), n_head=int(hf["num_attention_heads"]),
            n_embd=int(hf["hidden_size"]), block_size=int(hf.get("max_position_embeddings", 32768)),
            vocab_size=int(hf["vocab_size"]), dropout=0.0, bias=False,
            n_kv_head=int(hf.get("num_key_value_heads") or hf["num_attention_heads"]),
            head_dim=int(hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]),
            mlp_hidden=int(hf["intermediate_size"]),
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{folder}/config.json is not a complete Qwen3 config ({e!r})") from e


def weight_files(folder: Path) -> list[Path]:
    files = sorted(p for pattern in WEIGHT_FILES for p in folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{folder} has no model.safetensors (nor model-N-of-M.safetensors shards)")
    return files


def load_qwen3(folder: str | Path) -> Qwen3:
    """A Qwen3 built from a Hugging Face folder (dropout 0), in float32 whatever the stored precision."""
    folder = Path(folder)
    config = qwen3_config(read_hf_config(folder), folder)
    if config.problems():
        raise ValueError(f"{folder}/config.json: " + "; ".join(config.problems()))
    with torch.device("meta"):
        model = Qwen3(config)
    weights = {}
    for path in weight_files(folder):
        weights.update(load_file(path))
    if config.tie_embeddings:
        weights.pop("lm_head.weight", None)
    ours = {
        name: p for name, p in model.state_dict().items() if not (config.tie_embeddings and name == "lm_head.weight")
    }
    missing = sorted(set(ours) - set(weights))
    if missing:
        raise KeyError(f"{folder} has no tensor {missing[0]!r} ({len(missing)} missing)")
    for name, p in ours.items():
        if weights[name].shape != p.shape:
            raise ValueError(f"{name}: shape {tuple(weights[name].shape)} in {folder}, expected {tuple(p.shape)}")
    state = {name: weights[name].float() for name in ours}
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model


def exported_rows(config: ModelConfig, vocab_size: int | None) -> int:
    """The vocabulary rows an exported model keeps: the tokenizer's (`vocab_size`; None: all), not the padding."""
    if vocab_size and vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab_size} tokens, the model only {config.vocab_size}")
    return vocab_size or config.vocab_size


def save_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Tensors as a safetensors file with the permissions of any new file (safetensors leaves its own to the owner)."""
    save_file(tensors, path, metadata={"format": "pt"})
    os.chmod(path, default_mode())


def save_qwen3(model: Qwen3, folder: str | Path, eot_token: int | None, vocab_size: int | None = None) -> Path:
    """config.json and model.safetensors as Qwen3ForCausalLM reads them; `vocab_size` (the tokenizer's) drops the
    padding rows beyond it; the end-of-text token (None: none) is the model's bos and eos."""
    cfg = model.config
    vocab_size = exported_rows(cfg, vocab_size)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue
        if name in ("lm_head.weight", "model.embed_tokens.weight"):
            tensor = tensor[:vocab_size]
        tensors[name] = tensor.detach().to("cpu", torch.float32).contiguous().clone()
    save_weights(tensors, folder / "model.safetensors")
    hf = {
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
        "vocab_size": vocab_size, "hidden_size": cfg.n_embd, "intermediate_size": cfg.mlp_width(),
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads(), "head_dim": cfg.head_width(),
        "max_position_embeddings": cfg.block_size, "hidden_act": "silu", "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False, "attention_dropout": cfg.dropout, "use_sliding_window": False,
        "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": "float32", "initializer_range": 0.02,
        "bos_token_id": eot_token, "eos_token_id": eot_token, "use_cache": True,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(hf, indent=2), encoding="utf-8")
    return folder
