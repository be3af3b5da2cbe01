"""Parity with transformers' GPT2LMHeadModel, both ways, on a random small model made here (no download); the
generation config and the weights' file permissions of an export."""

import json
import os
import stat

import pytest
import torch

from gpt.hf import generation_config, load_gpt2, save_gpt2
from gpt.hf_qwen3 import save_weights
from gpt.model import GPT, ModelConfig
from gpt.sample import SampleOptions
from gpt.tokenizer import EOT, UNK, CharTokenizer

transformers = pytest.importorskip("transformers")


def hf_logits(model, idx):
    with torch.no_grad():
        return model(idx).logits


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_transformers_to_ours(tmp_path, activation):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=64, n_positions=32, vocab_size=300, activation_function=activation
    )
    theirs = transformers.GPT2LMHeadModel(config).eval()
    theirs.save_pretrained(tmp_path)
    ours = load_gpt2(tmp_path).eval()
    idx = torch.randint(0, 300, (2, 32))
    with torch.no_grad():
        logits, _ = ours(idx, idx)
    assert (logits - hf_logits(theirs, idx)).abs().max().item() < 1e-4


@pytest.mark.parametrize("gelu", ["tanh", "exact"])
def test_ours_to_transformers(tmp_path, gelu):
    torch.manual_seed(1)
    ours = GPT(ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=320, gelu=gelu)).eval()
    save_gpt2(ours, tmp_path / "export", eot_token=50256)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "export").eval()
    idx = torch.randint(0, 320, (2, 32))
    with torch.no_grad():
        logits, _ = ours(idx, idx)
    assert (logits - hf_logits(theirs, idx)).abs().max().item() < 1e-4
    assert (load_gpt2(tmp_path / "export").lm_head.weight == ours.lm_head.weight).all()


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a folder nor a GPT-2 model name"):
        load_gpt2("gpt3")
    with pytest.raises(FileNotFoundError, match="needs config.json and model.safetensors"):
        load_gpt2(tmp_path)
    with pytest.raises(ValueError, match="bias=False cannot be exported"):
        save_gpt2(GPT(ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5, bias=False)), tmp_path, 4)


def test_generation_config_stops_at_the_context_and_never_picks_the_unknown_token(tmp_path):
    tokenizer = CharTokenizer(list("abc \n"), eot=EOT, unk=UNK)
    config = generation_config(tokenizer, block_size=64)
    (tmp_path / "generation_config.json").write_text(json.dumps(config), encoding="utf-8")
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert theirs.max_length == 64 and theirs.do_sample and theirs.temperature == SampleOptions().temperature
    assert theirs.eos_token_id == theirs.bos_token_id == theirs.pad_token_id == tokenizer.eot_token
    assert theirs.suppress_tokens == [tokenizer.unk_token]
    assert "eos_token_id" not in generation_config(CharTokenizer(list("ab")), block_size=64)


def test_saved_weights_get_the_permissions_of_any_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        save_weights({"w": torch.zeros(2)}, tmp_path / "model.safetensors")
        (tmp_path / "plain.txt").write_text("", encoding="utf-8")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
