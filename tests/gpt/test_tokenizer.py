import json

import pytest

from gpt.tokenizer import (
    CharTokenizer,
    StreamDecoder,
    TiktokenTokenizer,
    TokenizerFileError,
    load_tokenizer,
    tokenizer_from_spec,
)

CHINESE = "AI社会价值：人工智能正在改变我们的生活，　　新华社北京电。"
ENGLISH = "First Citizen:\nBefore we proceed any further, hear me speak."


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
def test_tiktoken_round_trip(name):
    tok = TiktokenTokenizer(name)
    for text in (CHINESE, ENGLISH, CHINESE + ENGLISH):
        assert tok.decode(tok.encode(text)) == text
    assert tok.eot_token is not None and tok.n_vocab > 50000


def test_special_tokens_in_text_are_plain_text():
    tok = TiktokenTokenizer("gpt2")
    assert tok.eot_token not in tok.encode("a <|endoftext|> b")


def test_cutting_a_chinese_character_never_raises():
    tok = TiktokenTokenizer("gpt2")
    ids = tok.encode("社会价值")
    assert len(ids) > 4  # gpt2 splits these characters into byte pieces
    for cut in range(len(ids) + 1):
        tok.decode(ids[:cut])
        tok.decode(ids[cut:])
    assert "\ufffd" in tok.decode(ids[:1])


def test_stream_decoder_emits_whole_characters_only():
    tok = TiktokenTokenizer("gpt2")
    ids = tok.encode(CHINESE)
    decoder = StreamDecoder(tok)
    pieces = [decoder.push([i]) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == CHINESE
    assert all("\ufffd" not in p for p in pieces)


def test_char_tokenizer_saved_as_json_and_loaded(tmp_path):
    tok = CharTokenizer.build([CHINESE, ENGLISH], eot="<|endoftext|>", unk="<|unk|>")
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    spec = json.loads(path.read_text(encoding="utf-8"))  # JSON, not pickle
    assert spec["type"] == "char" and "社" in spec["chars"]
    again = load_tokenizer(path)
    assert again.encode(CHINESE) == tok.encode(CHINESE)
    assert again.decode(again.encode(CHINESE)) == CHINESE
    assert again.eot_token == tok.n_vocab - 2 and again.encode("😀") == [again.n_vocab - 1]


def test_char_tokenizer_min_count_and_missing_characters():
    tok = CharTokenizer.build(["aab"], min_count=2)
    assert tok.chars == ["a"]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("b")
    assert tok.decode([0, 99]) == "a\ufffd"


def test_unknown_tokenizer_spec():
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        tokenizer_from_spec({"type": "sentencepiece"})
    with pytest.raises(ValueError, match="unknown tiktoken encoding"):
        TiktokenTokenizer("no_such_encoding")


@pytest.mark.parametrize("name", ["gpt2", "o200k_base"])
def test_encode_to_numpy_equals_encode(name):
    tok = TiktokenTokenizer(name)
    for text in ["AI社会价值", "a <|endoftext|> b", "", "😀 ok"]:
        assert tok.encode_to_numpy(text).tolist() == tok.encode(text)
    chars = CharTokenizer.build(["abc"], unk="<|unk|>")
    assert chars.encode_to_numpy("abz😀").tolist() == chars.encode("abz😀")
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        CharTokenizer.build(["abc"]).encode_to_numpy("abz")


@pytest.mark.parametrize("content", [b"\x80\x81 not text", b"{not json", b"[1, 2]", b'{"type": "char"}'])
def test_a_file_that_is_no_tokenizer_is_named_in_one_line(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(TokenizerFileError) as failed:
        load_tokenizer(path)
    message = str(failed.value)
    assert message.startswith(f"{path} is not a gptflow tokenizer file (") and "\n" not in message
