"""OpenAI GPT-2 weights in Hugging Face format, both ways, gptflow's tokenizers as Hugging Face tokenizers, and a
whole checkpoint as a Hugging Face model folder (GPT2LMHeadModel or, for the qwen3 family, Qwen3ForCausalLM).

    model = load_gpt2("gpt2")                  # hub name: gpt2, gpt2-medium, gpt2-large, gpt2-xl (needs internet)
    model = load_gpt2("path/to/folder")        # config.json + model.safetensors, e.g. a downloaded snapshot
    model = load_pretrained("path/to/folder")  # a GPT-2 or a Qwen3 folder, by its config.json's model_type
    save_gpt2(model, "export/", eot_token=50256)   # transformers.GPT2LMHeadModel.from_pretrained("export/") loads it
    hf_tokenizer(tokenizer).save("tokenizer.json")   # any gptflow tokenizer for `tokenizers`, encoding the same ids
    export_checkpoint("runs/poetry-char", "export/")   # weights, configs and tokenizer: AutoTokenizer and
                                                        # AutoModelForCausalLM.from_pretrained("export/") load it
    pretrained_folder("Qwen/Qwen3-0.6B-Base")  # a hub id as a local folder (the hub cache; HF_HUB_OFFLINE=1 works)

A model continued from an open base keeps that base's own tokenizer: its export writes the base's tokenizer.json
and tokenizer_config.json (chat template included) back unchanged, and every row of its embeddings.

Hugging Face stores the attention and MLP weights as Conv1D, i.e. transposed relative to nn.Linear.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from gpt.checkpoint import load_model, resolve_checkpoint
from gpt.config import ConfigError
from gpt.decoding import CausalLM
from gpt.hf_qwen3 import exported_rows, load_qwen3, read_hf_config, save_qwen3, save_weights
from gpt.model import GPT, ModelConfig
from gpt.sample import SampleOptions, unsampled
from gpt.tokenizer import UNK, CharTokenizer, HFTokenizer, Tokenizer, byte_level_alphabet, load_tokenizer

HUB_MODELS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
"""A Hugging Face hub repository id, owner/name."""
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]
"""What a Hugging Face tokenizer is made of (the chat template is in tokenizer_config.json)."""
MODEL_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json"]
"""What a Hugging Face model folder holds besides its tokenizer (weights as safetensors only, never pickles)."""
_ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "exact"}  # transformers' names
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hub_folder(repo_id: str, patterns: list[str], key: str = "model") -> Path:
    """The files of a Hugging Face hub repository matching `patterns`, from the local hub cache or downloaded
    (HF_HUB_OFFLINE=1: from the cache only)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise ConfigError(
            f"{key}: could not get {repo_id} from the Hugging Face hub ({type(e).__name__}: {str(e).splitlines()[0]}). "
            f"Offline, download its {', '.join(patterns)} elsewhere and give that folder instead."
        ) from e


def _download(name: str) -> Path:
    return hub_folder(HUB_MODELS[name], ["config.json", "model.safetensors"], name)


def load_gpt2(path_or_name: str | Path) -> GPT:
    """A GPT built from a Hugging Face GPT-2 folder or hub name (dropout 0; change model.config and modules)."""
    folder = Path(path_or_name)
    if not folder.is_dir():
        if str(path_or_name) not in HUB_MODELS:
            raise ValueError(f"{path_or_name!r} is neither a folder nor a GPT-2 model name ({', '.join(HUB_MODELS)})")
        folder = _download(str(path_or_name))
    for required in ("config.json", "model.safetensors"):
        if not (folder / required).is_file():
            raise FileNotFoundError(
                f"{folder} has no {required}; a GPT-2 folder needs config.json and model.safetensors"
            )
    hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    activation = hf.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{folder}: activation {activation!r} is not one of {', '.join(_ACTIVATIONS)}")
    config = ModelConfig(
        n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
        block_size=hf["n_positions"], vocab_size=hf["vocab_size"], dropout=0.0, bias=True,
        gelu=_ACTIVATIONS[activation],
    )  # fmt: skip
    model = GPT(config)
    weights = {k.removeprefix("transformer."): v for k, v in load_file(folder / "model.safetensors").items()}
    ours = model.state_dict()
    state = {}
    for name in ours:
        if name == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        key = name.removeprefix("transformer.")
        if key not in weights:
            raise KeyError(f"{folder}/model.safetensors has no tensor {key!r}")
        tensor = weights[key].t() if name.endswith(_CONV1D) else weights[key]
        if tensor.shape != ours[name].shape:
            raise ValueError(f"{key}: shape {tuple(tensor.shape)} in {folder}, expected {tuple(ours[name].shape)}")
        state[name] = tensor
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state)
    return model


def pretrained_folder(source: str) -> Path | None:
    """The local Hugging Face folder of `source`: a folder with config.json as it is, a hub repository id (a Qwen3
    base such as Qwen/Qwen3-0.6B-Base: weights, config and tokenizer) from the hub cache or downloaded; None when
    `source` is neither (GPT-2's hub names load through load_gpt2)."""
    if (Path(source) / "config.json").is_file():
        return Path(source)
    if not Path(source).exists() and HUB_ID.fullmatch(source):
        return hub_folder(source, [*MODEL_FILES, *TOKENIZER_FILES], "init_from")
    return None


def load_pretrained(source: str | Path) -> CausalLM:
    """A GPT-2 hub name, or a Hugging Face folder of a GPT-2 or a Qwen3 model (its config.json's model_type)."""
    if str(source) in HUB_MODELS:
        return load_gpt2(source)
    folder = Path(source)
    model_type = read_hf_config(folder).get("model_type")
    if model_type == "gpt2":
        return load_gpt2(folder)
    if model_type == "qwen3":
        return load_qwen3(folder)
    raise ValueError(f"{folder}/config.json: model_type {model_type!r} is neither gpt2 nor qwen3")


def save_gpt2(model: GPT, folder: str | Path, eot_token: int | None, vocab_size: int | None = None) -> Path:
    """Export in the layout transformers' GPT2LMHeadModel reads (config.json + model.safetensors); the tokenizer's
    end-of-text token (None: it has none) is the model's bos and eos. `vocab_size` (the tokenizer's) drops the rows
    of padding ids the model has beyond it, which sampling never picks."""
    cfg = model.config
    if not cfg.bias:
        raise ValueError("Hugging Face GPT-2 has biases everywhere; a model trained with bias=False cannot be exported")
    vocab_size = exported_rows(cfg, vocab_size)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        tensor = tensor.t() if name.endswith(_CONV1D) else tensor
        tensor = tensor[:vocab_size] if name == "transformer.wte.weight" else tensor
        tensors[name] = tensor.detach().to("cpu", torch.float32).contiguous().clone()
    save_weights(tensors, folder / "model.safetensors")
    hf = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
        "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "vocab_size": vocab_size,
        "activation_function": "gelu_new" if cfg.gelu == "tanh" else "gelu",
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "bos_token_id": eot_token, "eos_token_id": eot_token, "tie_word_embeddings": True,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(hf, indent=2), encoding="utf-8")
    return folder


def _merge_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens whose merge made `token`: its bytes merged by BPE with the ranks below its own."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        pairs = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
        best, at = min(pairs)
        if best >= rank:
            break
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two earlier tokens")
    return parts[0], parts[1]


def hf_tokenizer(tokenizer: Tokenizer):
    """A `tokenizers.Tokenizer` that encodes text to the same ids as `tokenizer` (a character vocabulary, a trained
    BPE or a tiktoken encoding such as gpt2), with its end-of-text and unknown tokens as special tokens."""
    if isinstance(tokenizer, CharTokenizer):
        return _hf_char_tokenizer(tokenizer)
    return _hf_bpe_tokenizer(*tokenizer.bpe())


def _hf_char_tokenizer(tokenizer: CharTokenizer):
    """One token per character: every character split off, looked up in the vocabulary, joined back when decoding."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(tokenizer.itos)}
    hf = Tokenizer(models.WordLevel(vocab, unk_token=tokenizer.unk or UNK))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (tokenizer.eot, tokenizer.unk) if t])
    return hf


def _hf_bpe_tokenizer(ranks: list[bytes], pattern: str, specials: dict[str, int]):
    """A byte-level BPE: the same split pattern, the tokens as the vocabulary (ids = ranks), the merges that made
    them, the special tokens at their ids."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    by_rank = {token: rank for rank, token in enumerate(ranks)}
    show = byte_level_alphabet()
    text = {token: "".join(show[b] for b in token) for token in ranks}
    merges = [_merge_of(token, rank, by_rank) for token, rank in by_rank.items() if len(token) > 1]
    model = models.BPE(
        vocab={text[token]: rank for token, rank in by_rank.items()} | specials,
        merges=[(text[a], text[b]) for a, b in merges],
    )
    hf = Tokenizer(model)
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return hf


def save_hf_tokenizer(tokenizer: Tokenizer, folder: str | Path, max_length: int) -> Path:
    """tokenizer.json and tokenizer_config.json: what transformers' AutoTokenizer.from_pretrained(folder) reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf_tokenizer(tokenizer).save(str(folder / "tokenizer.json"))
    eot = tokenizer.decode([tokenizer.eot_token]) if tokenizer.eot_token is not None else None
    specials = {"bos_token": eot, "eos_token": eot, "unk_token": getattr(tokenizer, "unk", None)}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
        "clean_up_tokenization_spaces": False, **{k: v for k, v in specials.items() if v},
    }  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def generation_config(tokenizer: Tokenizer, block_size: int) -> dict:
    """generation_config.json: transformers' generate with its defaults samples as `gptflow sample` does, stops at
    the model's context (past it a GPT-2 has no position embedding) and at end-of-text, and never picks the unknown
    token."""
    defaults = SampleOptions()
    config = {"max_length": block_size, "do_sample": True, "temperature": defaults.temperature, "top_k": defaults.top_k}
    if tokenizer.eot_token is not None:
        config |= {"bos_token_id": tokenizer.eot_token, "eos_token_id": tokenizer.eot_token,
                   "pad_token_id": tokenizer.eot_token}  # fmt: skip
    if forbidden := unsampled(tokenizer):
        config["suppress_tokens"] = forbidden
    return config


def export_checkpoint(ckpt: str | Path, folder: str | Path) -> Path:
    """A checkpoint (a run folder: its best) as a Hugging Face folder: model.safetensors and config.json for
    GPT2LMHeadModel or Qwen3ForCausalLM, generation_config.json, and its tokenizer (vocabulary rows beyond the
    tokenizer's dropped)."""
    ckpt = resolve_checkpoint(ckpt)
    model, _ = load_model(ckpt)
    tokenizer = load_tokenizer(ckpt / "tokenizer.json")
    save = save_qwen3 if model.config.arch == "qwen3" else save_gpt2
    own = isinstance(tokenizer, HFTokenizer)  # an open base's tokenizer: its rows and its files, as they came
    folder = save(model, folder, tokenizer.eot_token, vocab_size=None if own else tokenizer.n_vocab)
    generation = generation_config(tokenizer, model.config.block_size)
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
    if not own:
        return save_hf_tokenizer(tokenizer, folder, model.config.block_size)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer.definition, ensure_ascii=False), encoding="utf-8")
    if tokenizer.config:
        config = json.dumps(tokenizer.config, indent=2, ensure_ascii=False)
        (folder / "tokenizer_config.json").write_text(config, encoding="utf-8")
    return folder
