"""Continuing an open base model (a Qwen3-shaped one made here, tests/hf_base.py): its own tokenizer encodes as the
`tokenizers` library and transformers do, a model starts from its folder only on a dataset of that tokenizer, the
chunked loss equals the plain one, and an export is the base's own format with its tokenizer files unchanged."""

import json

import numpy as np
import pytest
import torch
from helpers import tiny_settings, train
from hf_base import SPECIALS, poems

from gpt.config import ConfigError, TrainConfig, from_dict
from gpt.decoding import chunked_cross_entropy, cross_entropy
from gpt.hf import export_checkpoint
from gpt.model import ModelConfig, create_model
from gpt.shards import token_dtype, write_manifest, write_shard
from gpt.tokenizer import EOT, UNK, CharTokenizer, HFTokenizer, StreamDecoder, load_tokenizer, tokenizer_from_spec

transformers = pytest.importorskip("transformers")
TEXTS = ["床前明月光，\n疑是地上霜。", "AI社会价值：人工智能 changes 生活 <|im_start|>user\n", "ﬁ 한국어 café"]


def test_the_bases_tokenizer_encodes_as_tokenizers_and_transformers_do(base):
    ours = load_tokenizer(base / "tokenizer.json")
    theirs = transformers.AutoTokenizer.from_pretrained(base)
    assert isinstance(ours, HFTokenizer) and ours.eot_token == theirs.convert_tokens_to_ids(SPECIALS[0]) > 1000
    assert ours.name.startswith("hf-") and ours.n_vocab == len(theirs)
    for text in TEXTS[:1]:
        assert ours.encode(text) == theirs(text, add_special_tokens=False).input_ids
    special = theirs.convert_tokens_to_ids("<|im_start|>")
    assert special not in ours.encode(TEXTS[1])  # a special token in the text is plain text, as with tiktoken's
    assert [list(ids) for ids in ours.encode_batch(TEXTS)] == [ours.encode(t) for t in TEXTS]
    assert ours.encode_batch(TEXTS)[0].dtype == np.uint32
    for text in TEXTS:
        ids = ours.encode(text)
        assert ours.decode(ids) == ours._fast.decode(ids) == theirs.decode(ids)  # NFC-normalised, as encoded
        stream = StreamDecoder(ours)
        assert "".join(stream.push([i]) for i in ids) + stream.flush() == ours.decode(ids)
    again = tokenizer_from_spec(json.loads(json.dumps(ours.spec())))
    assert again.encode(TEXTS[1]) == ours.encode(TEXTS[1]) and again.config["chat_template"].startswith("{% for")


def test_a_tokenizer_without_an_end_of_text_is_refused(base, tmp_path):
    definition = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    definition["added_tokens"] = [t for t in definition["added_tokens"] if t["content"] != SPECIALS[0]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(definition), encoding="utf-8")
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> token and no eos_token"):
        load_tokenizer(tmp_path / "tokenizer.json")


def test_the_chunked_loss_and_checkpointed_blocks_give_the_plain_loss_and_gradients():
    torch.manual_seed(0)
    shape = ModelConfig(arch="qwen3", n_layer=2, n_head=4, n_kv_head=2, n_embd=64, block_size=32, vocab_size=999)
    model = create_model(shape)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    x, y = torch.randint(0, 999, (3, 32)), torch.randint(0, 999, (3, 32))
    y[0, :7] = -1  # ignored positions count in neither
    plain_logits, plain = model(x, y)
    plain.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.checkpointing = True
    logits, chunked = model(x, y, loss_chunk=17)  # chunks that do not divide the 96 positions
    chunked.backward()
    assert logits is None and chunked.item() == pytest.approx(plain.item(), rel=1e-6)
    assert max((p.grad - g).abs().max().item() for p, g in zip(model.parameters(), expected, strict=True)) < 1e-6
    hidden = torch.randn(4, 8, 16)
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (4, 8))
    assert chunked_cross_entropy(hidden, weight, targets, 5).item() == pytest.approx(
        cross_entropy(hidden @ weight.t(), targets).item(), rel=1e-6
    )
    assert plain_logits.shape == (3, 32, 999)


def token_dataset(folder, tokenizer, texts: list[str]):
    """A token dataset of `texts`, each ended with the tokenizer's end-of-text; the last fifth is val."""
    folder.mkdir(parents=True, exist_ok=True)
    cut = len(texts) * 4 // 5
    splits = {}
    for split, part in (("train", texts[:cut]), ("val", texts[cut:])):
        ids = np.concatenate([np.append(a, tokenizer.eot_token) for a in tokenizer.encode_batch(part)])
        splits[split] = [write_shard(folder / f"{split}-00000.bin", ids, token_dtype(tokenizer.n_vocab))]
    write_manifest(folder, tokenizer, splits, created_by="test")
    return folder


def test_a_model_continued_from_the_base_exports_in_the_bases_format(base, tmp_path):
    tokenizer = load_tokenizer(base / "tokenizer.json")
    data = token_dataset(tmp_path / "tokens", tokenizer, poems(600))
    settings = tiny_settings(data, tmp_path / "run", init_from=str(base), max_iters=6, eval_interval=6, lr=1e-4)
    settings["model"] = {"block_size": 64, "dropout": 0.0}
    result = train(from_dict(TrainConfig, settings))
    assert result["step"] == 6 and np.isfinite(result["best_val_loss"])
    folder = export_checkpoint(tmp_path / "run", tmp_path / "export")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the base's own, unchanged
        assert json.loads((folder / name).read_text(encoding="utf-8")) == json.loads((base / name).read_text("utf-8"))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert theirs.config.vocab_size == transformers.AutoConfig.from_pretrained(base).vocab_size  # every row kept
    from gpt.checkpoint import load_model, resolve_checkpoint

    ours, _ = load_model(resolve_checkpoint(tmp_path / "run"))
    idx = torch.tensor([tokenizer.encode(poems(1)[0])[:40]])
    with torch.no_grad():
        logits, _ = ours.eval()(idx, idx)
        assert (logits - theirs(idx).logits).abs().max().item() < 1e-4
    chat = transformers.AutoTokenizer.from_pretrained(folder).apply_chat_template(
        [{"role": "user", "content": "春"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\n春<|im_end|>\n<|im_start|>assistant\n"


def test_a_base_starts_only_on_a_dataset_of_its_own_tokenizer(base, tmp_path):
    other = CharTokenizer.build(poems(50), eot=EOT, unk=UNK)
    data = token_dataset(tmp_path / "tokens", other, poems(50))
    settings = tiny_settings(data, tmp_path / "run", init_from=str(base), max_iters=1)
    with pytest.raises(ConfigError) as refused:
        train(from_dict(TrainConfig, settings))
    message = str(refused.value)
    assert f"init_from={base} reads the ids of its own tokenizer" in message and "tokenized with char;" in message
    assert "tokenize: {tokenizer: hf, hf_tokenizer:" in message and "\n" not in message
