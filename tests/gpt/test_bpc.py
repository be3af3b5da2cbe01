"""Bits per character: every document token scored once, end-of-text never, and the sums by hand."""

import math

import numpy as np
import pytest
import torch

from gpt.bpc import EvalDocuments, EvalText
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
    text = EvalText.of_texts({"tang": ["白日依山尽", "黄河入海流"], "empty": []}, max_chars=100)
    docs = text.documents(tokenizer, block_size=4)
    assert docs.corpora == ["tang"] and docs.corpus_of_target.tolist() == [0] * 5 + [-1] + [0] * 5 + [-1]
    assert docs.tokens_per_char() == {"tokens_per_char": 1.0, "tokens_per_char/tang": 1.0}
    scores = docs.score(uniform_model(16, 4), batch_size=3)
    assert scores["val_bpc"] == pytest.approx(math.log2(16)) == scores["val_bpc/tang"]


def test_text_is_capped_at_whole_documents_and_a_tokenizer_without_end_of_text_separates_by_newline():
    from gpt.tokenizer import CharTokenizer

    assert EvalText.of_texts({"a": ["一二三", "四五", "六"]}, 5).corpora == {"a": ["一二三", "四五"]}
    assert EvalText.of_texts({"a": ["一二三", "四五", "六"]}, 4).corpora == {"a": ["一二三"]}
    assert EvalText.of_texts({"a": ["一二三四五六"]}, 4).corpora == {"a": ["一二三四"]}
    tokenizer = CharTokenizer(list("一二三\n"))
    docs = EvalText.of_texts({"a": ["一二", "三"]}, 10).documents(tokenizer, 8)
    newline = tokenizer.encode("\n")[0]
    assert docs.stream.tolist() == [newline, *tokenizer.encode("一二"), newline, *tokenizer.encode("三"), newline]
    with pytest.raises(ValueError, match="newline"):
        EvalText.of_texts({"a": ["一二"]}, 10).documents(CharTokenizer(list("一二")), 8)


def test_a_dataset_without_an_eval_index_is_scored_on_the_start_of_its_val_text(char_dataset):
    from gpt.shards import TokenDataset

    dataset = TokenDataset.open(char_dataset)
    text = EvalText.of_dataset(dataset, 1000)
    (val,) = text.corpora["val"]
    assert len(val) == 1000 and val == dataset.tokenizer().decode(dataset.tokens("val", 0)[:1000].tolist())
    assert text.id == EvalText.of_dataset(dataset, 1000).id != EvalText.of_dataset(dataset, 999).id
