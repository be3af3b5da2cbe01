import json
import mmap

import numpy as np
import pytest

from gpt.atomic import atomic_dir
from gpt.shards import (
    HEADER_BYTES,
    ShardError,
    TokenDataset,
    open_tokens,
    read_header,
    token_dtype,
    write_manifest,
    write_shard,
)
from gpt.tokenizer import TiktokenTokenizer

TEXT = "人工智能正在改变我们的生活。The quick brown fox jumps over the lazy dog. 新华社北京电"


def make_dataset(folder, name="cl100k_base", texts=(TEXT, TEXT[::-1])):
    tok = TiktokenTokenizer(name)
    dtype = token_dtype(tok.n_vocab)
    docs = [[*tok.encode(t), tok.eot_token] for t in texts]
    tokens = np.concatenate([np.array(d) for d in docs])
    with atomic_dir(folder) as tmp:
        train = [write_shard(tmp / "train-00000.bin", tokens, dtype)]
        val = [write_shard(tmp / "val-00000.bin", tokens[: len(docs[0])], dtype)]
    write_manifest(folder, tok, {"train": train, "val": val}, created_by="make_dataset(...)")
    return tok, docs


def test_round_trip_text_shards_text(tmp_path):
    make_dataset(tmp_path / "ds", "gpt2")
    ds = TokenDataset.open(tmp_path / "ds", verify=True)
    assert ds.manifest["dtype"] == "uint16" and ds.vocab_size == 50257
    tokens = ds.tokens("train", 0)
    ends = np.flatnonzero(tokens == ds.tokenizer().eot_token) + 1  # one past each document's end-of-text
    starts = [0, *ends[:-1].tolist()]
    texts = [ds.tokenizer().decode(tokens[s : e - 1]) for s, e in zip(starts, ends.tolist(), strict=True)]
    assert texts == [TEXT, TEXT[::-1]]


def test_uint32_path_for_large_vocabularies(tmp_path):
    tok, docs = make_dataset(tmp_path / "ds", "o200k_base")
    assert tok.n_vocab > 65535
    ds = TokenDataset.open(tmp_path / "ds")
    assert ds.manifest["dtype"] == "uint32"
    assert read_header(ds.shard_paths("train")[0]).dtype == np.uint32
    assert ds.tokens("train", 0).tolist() == docs[0] + docs[1]
    assert max(ds.tokens("train", 0)) > 65535 or tok.n_vocab > 65535


def test_out_of_range_tokens_are_refused(tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        write_shard(tmp_path / "x.bin", np.array([70000]), np.uint16)


def test_bad_magic_names_the_file_and_the_fix(tmp_path):
    make_dataset(tmp_path / "ds")
    shard = tmp_path / "ds" / "train-00000.bin"
    data = bytearray(shard.read_bytes())
    data[0:4] = (12345).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"train-00000.bin is not a token shard.*Rebuild the dataset: make_dataset"):
        TokenDataset.open(tmp_path / "ds")


def test_truncated_shard(tmp_path):
    make_dataset(tmp_path / "ds")
    shard = tmp_path / "ds" / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ShardError, match=r"is truncated: the header promises \d+ tokens"):
        TokenDataset.open(tmp_path / "ds")
    shard.write_bytes(shard.read_bytes()[: HEADER_BYTES // 2])
    with pytest.raises(ShardError, match="shorter than its header"):
        read_header(shard)


def test_manifest_mismatch(tmp_path):
    make_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["splits"]["train"][0]["tokens"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="disagrees with .*manifest.json"):
        TokenDataset.open(tmp_path / "ds")


def test_checksum_mismatch_when_verifying(tmp_path):
    make_dataset(tmp_path / "ds")
    shard = tmp_path / "ds" / "val-00000.bin"
    data = bytearray(shard.read_bytes())
    data[HEADER_BYTES] ^= 1
    shard.write_bytes(bytes(data))
    TokenDataset.open(tmp_path / "ds")  # sizes and headers still agree
    with pytest.raises(ShardError, match="sha256"):
        TokenDataset.open(tmp_path / "ds", verify=True)


def test_token_ids_past_the_vocabulary_are_found_when_verifying(tmp_path):
    tok = TiktokenTokenizer("gpt2")
    with atomic_dir(tmp_path / "ds") as tmp:
        ids = np.array([*tok.encode(TEXT), tok.n_vocab + 7])  # fits uint16, past gpt2's 50,257 ids
        splits = {"train": [write_shard(tmp / "train-00000.bin", ids, np.uint16)]}
    write_manifest(tmp_path / "ds", tok, splits, created_by="gptflow build-corpus --dataset x")
    with pytest.raises(ShardError, match=r"train-00000.bin holds token id 50264, past the vocabulary of 50257.*"
                       r"Rebuild the dataset: gptflow build-corpus --dataset x"):  # fmt: skip
        TokenDataset.open(tmp_path / "ds", verify=True)


def test_folder_without_manifest_is_not_a_dataset(tmp_path):
    with pytest.raises(ShardError, match="no manifest.json.*prepare_text"):
        TokenDataset.open(tmp_path)


def test_tokens_are_a_read_only_memory_map(tmp_path):
    write_shard(tmp_path / "big.bin", np.arange(60000) % 50000, np.uint16)
    tokens = open_tokens(tmp_path / "big.bin")
    assert isinstance(tokens.base.obj, mmap.mmap) and not tokens.flags.writeable
    assert tokens[59999] == 59999 % 50000
