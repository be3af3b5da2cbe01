"""Conversations as tokens (gpt/chat.py) for every kind of tokenizer, checked by hand on small cases; rows of packed
or padded conversations with targets on the replies only (gpt/chat_data.py); the loss over them against a hand
computation; a model's vocabulary grown for the template's tokens; and a fine-tuning run from a model without them."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import tiny_settings, train
from hf_base import poems

from gpt.chat import ChatError, ChatFormat
from gpt.chat_data import ChatRows, ReplyBits
from gpt.checkpoint import load_model, read_meta, save_checkpoint
from gpt.config import TrainConfig, from_dict
from gpt.init import start_template_tokens
from gpt.model import ModelConfig, create_model
from gpt.model_config import padded_vocab_size
from gpt.shards import TokenDataset
from gpt.tokenizer import EOT, UNK, BPETokenizer, CharTokenizer, TiktokenTokenizer, load_tokenizer
from tasks.corpus.chat_tokens import tokenize_conversations
from tasks.corpus.conversations import SCHEMA
from tasks.corpus.settings import TokenizeConfig
from tasks.corpus.text.split import content_hashes, content_keys

ASK_AND_ANSWER = [{"role": "user", "content": "春望"}, {"role": "assistant", "content": "国破山河在"}]


def test_a_char_vocabulary_gets_four_markers_after_it_and_the_mask_covers_the_reply_and_its_end():
    tokenizer = CharTokenizer(list("国在山春望河破"), eot=EOT, unk=UNK)  # ids 0..6, eot 7, unk 8
    chat = ChatFormat.of(tokenizer)
    assert chat.template == "markers" and chat.vocab_size == 13  # <|system|> 9 <|user|> 10 <|assistant|> 11 <|end|> 12
    ids, mask = chat.encode(ASK_AND_ANSWER)
    assert ids.tolist() == [10, 3, 4, 12, 11, 0, 6, 2, 5, 1, 12]
    assert mask.tolist() == [False] * 5 + [True] * 6
    assert chat.prompt(ASK_AND_ANSWER[:1]) == [10, 3, 4, 12, 11]
    with_system = [{"role": "system", "content": "山"}, *ASK_AND_ANSWER, {"role": "user", "content": "河"}]
    ids, mask = chat.encode(with_system)
    assert ids.tolist() == [9, 2, 12, 10, 3, 4, 12, 11, 0, 6, 2, 5, 1, 12, 10, 5, 12]
    assert mask.nonzero()[0].tolist() == list(range(8, 14))


def test_gpt2_and_a_trained_bpe_get_the_markers_after_their_end_of_text():
    gpt2 = ChatFormat.of(TiktokenTokenizer("gpt2"))
    hello, there = gpt2.tokenizer.encode("Hi"), gpt2.tokenizer.encode(" there")
    ids, mask = gpt2.encode([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " there"}])
    assert ids.tolist() == [50258, *hello, 50260, 50259, *there, 50260] and gpt2.vocab_size == 50261
    assert mask.tolist() == [False] * (len(hello) + 3) + [True] * (len(there) + 1)
    ranks = [bytes([b]) for b in range(256)] + [b"ab", b"abc"]
    bpe = ChatFormat.of(BPETokenizer("tiny", r"\S+|\s+", ranks))  # 258 tokens, end-of-text 258
    ids, mask = bpe.encode([{"role": "user", "content": "ab"}, {"role": "assistant", "content": "abcd"}])
    assert ids.tolist() == [260, 256, 262, 261, 257, ord("d"), 262] and bpe.vocab_size == 263
    assert mask.tolist() == [False] * 4 + [True] * 3


def test_an_open_base_with_a_chatml_template_is_encoded_as_its_own_template_writes_it(base):
    import transformers

    tokenizer = load_tokenizer(base / "tokenizer.json")
    chat = ChatFormat.of(tokenizer)
    assert chat.template == "chatml" and chat.vocab_size == tokenizer.n_vocab  # its own tokens, no new ones
    conversation = [{"role": "user", "content": poems(1)[0][:4]}, {"role": "assistant", "content": poems(2)[1]}]
    theirs = transformers.AutoTokenizer.from_pretrained(base)
    written = theirs.apply_chat_template(conversation, tokenize=False)
    ids, mask = chat.encode(conversation)
    assert tokenizer.decode(ids.tolist()) == written
    end = tokenizer.token_id("<|im_end|>")
    assert tokenizer.decode(ids[mask].tolist()) == conversation[1]["content"] + "<|im_end|>" and ids[mask][-1] == end
    asked = theirs.apply_chat_template(conversation[:1], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(chat.prompt(conversation[:1])) == asked


def test_an_open_base_without_a_chat_template_gets_the_markers(base, tmp_path):
    definition = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    (tmp_path / "tokenizer.json").write_text(json.dumps(definition), encoding="utf-8")  # no tokenizer_config.json
    tokenizer = load_tokenizer(tmp_path / "tokenizer.json")
    chat = ChatFormat.of(tokenizer)
    assert chat.template == "markers" and chat.opens["user"] == [tokenizer.n_vocab + 1]


def test_a_long_conversation_keeps_its_newest_turns_and_the_system_message_within_the_context():
    chat = ChatFormat.of(CharTokenizer(list("abcdefgh"), eot=EOT))
    turns = [{"role": "system", "content": "h"}]
    for _ in range(6):
        turns += [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "cde"}]
    turns.append({"role": "user", "content": "fg"})
    prompt = chat.prompt(turns, room=10, context=30)
    assert len(prompt) <= 20 and prompt[:3] == chat.encode(turns[:1])[0].tolist()  # the system message stays
    assert prompt[-5:] == [chat.opens["user"][0], 5, 6, chat.end, chat.opens["assistant"][0]]
    long = chat.prompt([{"role": "user", "content": "a" * 50 + "fg"}], room=10, context=30)
    assert len(long) == 20 and long[-4:-1] == [5, 6, chat.end]  # its end kept
    with pytest.raises(ChatError, match="last message must be the user's"):
        chat.prompt(ASK_AND_ANSWER)
    with pytest.raises(ChatError, match="role 'tool'"):
        chat.encode([{"role": "tool", "content": "x"}])


def conversation_dataset(folder, tokenizer, conversations: list[tuple[str, list[dict]]]):
    """A conversation dataset (tasks/corpus/chat_tokens.py) of (task, messages), each of its own document (its
    exact_key: its number)."""
    parts = folder / "conversations"
    parts.mkdir(parents=True)
    rows = [
        {"corpus": "c", "task": task, "doc_id": str(k), "messages": messages, "exact_key": k.to_bytes(16, "little")}
        for k, (task, messages) in enumerate(conversations)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), parts / "part-00000.parquet", row_group_size=7)
    spec = folder / "tokenizer.json"
    spec.write_text(json.dumps(tokenizer.spec(), ensure_ascii=False), encoding="utf-8")
    out = folder / "tokens"
    out.mkdir()
    config = TokenizeConfig(val_fraction=0.2, min_val_docs=1, shard_tokens=400)
    tokenize_conversations([parts / "part-00000.parquet"], config, out, spec, "test")
    return TokenDataset.open(out, verify=True)


def poem_conversations(count: int) -> list[tuple[str, list[dict]]]:
    """Real Tang poems asked for by their titles (task poem), and their authors asked for by their first line."""
    out = []
    for text in poems(count):
        title, author, *lines = text.split("\n")
        out.append(("poem", [{"role": "user", "content": title}, {"role": "assistant", "content": "\n".join(lines)}]))
        out.append(("author", [{"role": "user", "content": lines[0]}, {"role": "assistant", "content": author}]))
    return out


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat")
    conversations = poem_conversations(60)
    tokenizer = CharTokenizer.build([m["content"] for _, c in conversations for m in c], eot=EOT, unk=UNK)
    return conversation_dataset(folder, tokenizer, conversations), conversations


def test_conversations_go_whole_to_their_split_with_their_mask_and_index(chat_data):
    dataset, conversations = chat_data
    chat = ChatFormat.of(dataset.tokenizer())
    assert dataset.vocab_size == chat.vocab_size and dataset.chat["tasks"] == ["poem", "author"]
    assert len(dataset.shard_paths("train")) > 1  # shards of 400 tokens, no conversation cut between two
    seen = []
    for split in ("train", "val"):
        with np.load(dataset.folder / dataset.chat["index"][split]) as index:
            for shard, start, n, task in zip(index["shard"], index["start"], index["tokens"], index["task"]):  # noqa: B905
                ids = np.asarray(dataset.tokens(split, shard)[start : start + n])
                mask = np.asarray(dataset.mask(split, shard)[start : start + n]) == 1
                seen.append((split, dataset.chat["tasks"][task], ids.tolist(), mask.tolist()))
    expected = [(c, *map(np.ndarray.tolist, chat.encode(m))) for c, m in conversations]
    assert sorted(s[1:] for s in seen) == sorted(expected)
    keys = pa.array([k.to_bytes(16, "little") for k in range(len(conversations))], pa.binary(16))
    held_out = content_hashes(content_keys(keys), seed=0) < dataset.chat["val_threshold"]  # as documents are split
    assert 0 < held_out.sum() < len(conversations) / 2
    assert sorted(ids for split, _, ids, _ in seen if split == "val") == sorted(
        chat.encode(m)[0].tolist() for (_, m), val in zip(conversations, held_out, strict=True) if val
    )


def test_packed_rows_hold_whole_conversations_once_an_epoch_and_targets_only_on_replies(chat_data):
    dataset, _ = chat_data
    index = np.load(dataset.folder / dataset.chat["index"]["train"])
    packed = ChatRows(dataset, "train", block_size=127, seed=3, packing=True)
    padded = ChatRows(dataset, "train", block_size=127, seed=3, packing=False)
    assert padded.num_windows == len(index["tokens"]) and packed.num_windows < padded.num_windows / 2
    assert packed.fill > 2 * padded.fill
    assert packed.truncated == padded.truncated == int((index["tokens"] > 128).sum()) > 0
    x, y = packed.batch(np.arange(packed.num_windows))
    assert (x[:, 1:] == np.where(y[:, :-1] >= 0, y[:, :-1], x[:, 1:])).all()  # targets are the next inputs
    ends = index["start"] + index["tokens"]  # a conversation longer than a row keeps its end, from the row's start
    kept = [dataset.mask("train", s)[e - min(n, 128) : e] for s, e, n in zip(index["shard"], ends, index["tokens"])]  # noqa: B905
    trained = [m.sum() - (m[0] if len(m) == 128 else 0) for m in kept]  # a row's first token is no target
    assert (y >= 0).sum() == sum(trained) > 0
    epoch = packed.batch(np.arange(packed.num_windows, 2 * packed.num_windows))[0]
    assert sorted(map(tuple, epoch)) == sorted(map(tuple, x)) and not (epoch == x).all()  # a new order


def test_the_loss_is_the_mean_of_the_reply_tokens_own_losses(chat_data):
    dataset, _ = chat_data
    rows = ChatRows(dataset, "train", block_size=31, seed=0)
    x, y = rows.batch(np.arange(3))
    torch.manual_seed(0)
    model = create_model(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=31, vocab_size=dataset.vocab_size))
    with torch.no_grad():
        logits, loss = model(torch.from_numpy(x), torch.from_numpy(y))
    terms = []
    for b in range(3):
        for t in range(31):
            if y[b, t] >= 0:
                row = logits[b, t].double()
                terms.append(math.log(row.exp().sum()) - row[y[b, t]].item())
    assert 0 < len(terms) < y.size and float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_template_tokens_start_at_the_mean_of_the_tokenizers_rows_in_a_grown_vocabulary():
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch="qwen3", n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=10,
                                     tie_embeddings=False))  # fmt: skip
    grown = start_template_tokens(model, 8, 12)  # ids 0..7 the tokenizer's, 8..9 padding, 8..11 the template's
    for old, new in zip(model.embedding_and_output(), grown.embedding_and_output(), strict=True):
        assert new.shape == (64, 16) and torch.equal(new[:8], old[:8])
        assert torch.allclose(new[8:12], old[:8].mean(dim=0).expand(4, -1))
    idx = torch.tensor([[1, 2, 3]])
    assert torch.allclose(model(idx)[0][..., :8], grown(idx)[0][..., :8], atol=1e-6)
    tied = create_model(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=64))
    before = tied.lm_head.weight.detach().clone()
    same = start_template_tokens(tied, 50, 54)  # room already: the rows are set in place
    assert same is tied and same.transformer.wte.weight is same.lm_head.weight
    assert torch.equal(same.lm_head.weight[:50], before[:50]) and torch.equal(same.lm_head.weight[54:], before[54:])
    assert torch.allclose(same.lm_head.weight[50:54], before[:50].mean(dim=0).expand(4, -1))


def test_fine_tuning_a_model_without_the_markers_grows_it_and_scores_replies_per_task(chat_data, tmp_path):
    dataset, _ = chat_data
    tokenizer = dataset.tokenizer()
    torch.manual_seed(0)
    base = create_model(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=tokenizer.n_vocab))
    meta = {"step": 0, "val_loss": None, "model": json.loads(json.dumps(vars(base.config))), "config": {"seed": 0}}
    folder = save_checkpoint(tmp_path / "base", 0, base, {}, meta, tokenizer.spec())
    settings = tiny_settings(dataset.folder, tmp_path / "run", init_from=str(folder), max_iters=30, lr=3e-3,
                             model={"block_size": 64, "dropout": 0.0}, eval_chars=2000, sample_tokens=20,
                             sample_prompt="静夜思")  # fmt: skip
    train(from_dict(TrainConfig, settings))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scores = [r for r in rows if "val_bpc/poem" in r]
    assert scores[0]["step"] == 0 and scores[-1]["step"] == 30 and "val_bpc/author" in scores[-1]
    assert scores[-1]["val_bpc/poem"] < scores[0]["val_bpc/poem"] - 0.5
    model, meta = load_model(tmp_path / "run" / "step-30")
    assert (
        model.config.vocab_size == padded_vocab_size(dataset.vocab_size) and base.config.vocab_size < dataset.vocab_size
    )
    assert meta["dataset"]["chat"]["template"] == "markers"
    direct = ReplyBits(dataset, 64, 2000).score(model.eval(), 8)
    assert direct["val_bpc/poem"] == pytest.approx(scores[-1]["val_bpc/poem"], rel=1e-4)
    assert read_meta(tmp_path / "run" / "step-30")["step"] == 30
    assert (tmp_path / "run" / "samples" / "step-0000030.txt").read_text(encoding="utf-8").startswith("静夜思\n")
