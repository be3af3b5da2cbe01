"""Bits per character: every document token scored once, end-of-text never, and the sums by hand."""

import math

import numpy as np
import pytest
import torch

from gpt.bpc import EvalDocuments
from gpt.model import GPT, ModelConfig


def uniform_model(vocab: int, block: int) -> GPT:
    """Logits all zero: every token costs log2(vocab) bits."""
    model = GPT(ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=block, vocab_size=vocab, dropout=0.0))
    torch.nn.init.zeros_(model.lm_head.weight)  # tied to the token embedding: zero logits everywhere
    return model


def documents(block: int) -> EvalDocuments:
    eot = 9
    # corpus "a": a document of 3 tokens holding 4 characters (7 bytes); corpus "b": 1 token, 2 characters (6 bytes)
    stream = np.array([eot, 1, 2, 3, eot, 4, eot])
    owner = np.array([0, 0, 0, -1, 1, -1])
    return EvalDocuments(stream, owner, ["a", "b"], np.array([4.0, 2.0]), np.array([7.0, 6.0]), block)


@pytest.mark.parametrize("block", [2, 3, 4, 8])
def test_windows_score_every_target_once(block):
    docs = documents(block)
    scored = [t for begin, end, first in docs.windows() for t in range(first, end)]
    assert sorted(scored) == list(range(len(docs.stream) - 1))
    assert all(end - begin <= block for begin, end, _ in docs.windows())


@pytest.mark.parametrize("block", [2, 4, 8])
def test_bits_per_character_of_a_uniform_model(block):
    bits = math.log2(16)  # 16 = the model's vocabulary: 4 bits per scored token
    scores = documents(block).score(uniform_model(16, block), batch_size=2)
    assert scores["val_bpc"] == pytest.approx(4 * bits / 6)  # 4 document tokens, 6 characters
    assert scores["val_bits_per_byte"] == pytest.approx(4 * bits / 13)
    assert scores["val_bpc/a"] == pytest.approx(3 * bits / 4)
    assert scores["val_bpc/b"] == pytest.approx(1 * bits / 2)


def test_texts_of_any_tokenizer_are_scored_per_character():
    from gpt.tokenizer import CharTokenizer

    tokenizer = CharTokenizer(list("白日依山尽黄河入海流"), eot="<|endoftext|>")
    docs = EvalDocuments.from_texts(["白日依山尽", "黄河入海流"], tokenizer, block_size=4)
    assert docs.corpus_of_target.tolist() == [0] * 5 + [-1] + [0] * 5 + [-1]
    scores = docs.score(uniform_model(16, 4), batch_size=3)
    assert scores["val_bpc"] == pytest.approx(math.log2(16)) == scores["val_bpc/text"]
