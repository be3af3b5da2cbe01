"""A small open base model made here, shaped like the ones people continue for Chinese: Qwen3's layers, a byte-level
BPE with Qwen's split pattern, special tokens after the vocabulary and a chat template, saved as a Hugging Face
folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json). Tests never download one.

    folder = make_hf_base(tmp_path / "base", poems(2000))
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import SHARED_DATA

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def poems(count: int) -> list[str]:
    """The first `count` Tang poems of the shared chinese-poetry copy, as title, author and lines."""
    texts = []
    for path in sorted((SHARED_DATA / "chinese-poetry" / "全唐诗").glob("poet.tang.*.json")):
        for poem in json.loads(path.read_text(encoding="utf-8")):
            texts.append("\n".join([poem["title"], poem["author"], *poem["paragraphs"]]))
            if len(texts) == count:
                return texts
    return texts


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE trained by `tokenizers` as Qwen's was made: NFC, its split pattern, bytes as characters; the
    special tokens come after the learned vocabulary, as in Qwen's."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIALS])
    return tokenizer


def make_hf_base(folder: Path, texts: list[str], vocab_size: int = 1500, seed: int = 0) -> Path:
    """A random Qwen3ForCausalLM (2 layers, width 64) with a tokenizer trained on `texts`, saved in `folder`."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    tokenizer.save(str(folder / "tokenizer.json"))
    eot = tokenizer.token_to_id(SPECIALS[0])
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": SPECIALS[0], "pad_token": SPECIALS[0],
        "chat_template": CHAT_TEMPLATE, "model_max_length": 256,
    }  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    rows = -(-tokenizer.get_vocab_size(with_added_tokens=True) // 64) * 64  # padded, as Qwen pads its 151,669
    shape = transformers.Qwen3Config(
        vocab_size=rows, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=256, rope_theta=1_000_000.0,
        tie_word_embeddings=True, eos_token_id=eot, bos_token_id=eot,
    )  # fmt: skip
    torch.manual_seed(seed)
    transformers.Qwen3ForCausalLM(shape).save_pretrained(folder)
    return folder
