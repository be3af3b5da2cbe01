"""The qwen3 family: parity with transformers' Qwen3ForCausalLM both ways on random small models made here (no
download), and generation with and without the KV cache."""

import pytest
import torch

from gpt.config import ConfigError, TrainConfig, from_dict
from gpt.hf import load_pretrained
from gpt.hf_qwen3 import load_qwen3, save_qwen3
from gpt.model import ModelConfig, create_model
from gpt.qwen3 import Qwen3

transformers = pytest.importorskip("transformers")
VOCAB = 300


def small(**extra) -> ModelConfig:
    shape = dict(arch="qwen3", n_layer=2, n_head=4, n_kv_head=2, n_embd=64, head_dim=16, block_size=32)
    return ModelConfig(**(shape | {"vocab_size": VOCAB, "rope_theta": 5000.0} | extra))


def randomized(model: Qwen3) -> Qwen3:
    """Every weight random, the gains too (a fresh model has zero output projections, which would hide errors)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_transformers_to_ours(tmp_path, tied):
    torch.manual_seed(0)
    config = transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rope_theta=5000.0, tie_word_embeddings=tied,
    )  # fmt: skip
    theirs = transformers.Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    theirs.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).eval()
    assert isinstance(ours, Qwen3) and ours.config.mlp_width() == 96 and ours.config.tie_embeddings == tied
    idx = torch.randint(0, VOCAB, (2, 32))
    with torch.no_grad():
        logits, _ = ours(idx, idx)
        expected = theirs(idx).logits
    assert (logits - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("tied", [True, False])
def test_ours_to_transformers_logits_and_greedy_generation(tmp_path, tied):
    torch.manual_seed(1)
    ours = randomized(create_model(small(tie_embeddings=tied)))
    save_qwen3(ours, tmp_path / "export", eot_token=None)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert type(theirs).__name__ == "Qwen3ForCausalLM"
    idx = torch.randint(0, VOCAB, (2, 32))
    with torch.no_grad():
        logits, _ = ours(idx, idx)
        assert (logits - theirs(idx).logits).abs().max().item() < 1e-4
    prompt = idx[:1, :5]
    generated = theirs.generate(prompt, do_sample=False, max_new_tokens=20, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 20, temperature=0.0), generated)
    back = load_qwen3(tmp_path / "export")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ours.state_dict().values(), strict=True))


def test_the_kv_cache_generates_what_the_full_context_does():
    torch.manual_seed(2)
    model = randomized(create_model(small(block_size=16)))
    prompt = torch.randint(0, VOCAB, (3, 6))
    cached = model.generate(prompt, 40, temperature=0.0)  # past block_size: the cache is re-encoded
    assert torch.equal(cached[:, :16], model.generate(prompt, 10, temperature=0.0, use_cache=False))
    full = model.generate(prompt, 40, temperature=0.0, use_cache=False)
    assert torch.equal(cached[:, :16], full[:, :16]) and cached.shape == full.shape == (3, 46)


def test_a_fresh_model_starts_with_every_block_as_the_identity():
    model = create_model(small(tie_embeddings=False))
    for name, p in model.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")) or name == "lm_head.weight":
            assert not p.any(), name
    assert model.num_params() == model.num_params(non_embedding=False) - VOCAB * 64


def test_shapes_the_family_cannot_take_are_refused_by_key():
    with pytest.raises(ConfigError, match="n_head 4 must be a multiple of n_kv_head 3"):
        from_dict(TrainConfig, {"model": {"arch": "qwen3", "n_head": 4, "n_kv_head": 3, "n_embd": 64}})
    with pytest.raises(ConfigError, match="tie_embeddings=false needs arch=qwen3"):
        from_dict(TrainConfig, {"model": {"tie_embeddings": False}})
    with pytest.raises(ConfigError, match="n_kv_head belong to arch=qwen3"):
        from_dict(TrainConfig, {"model": {"n_kv_head": 2}})
    with pytest.raises(ValueError, match="must be even"):
        create_model(small(head_dim=15))


def test_folders_it_cannot_read_are_named(tmp_path):
    save_qwen3(create_model(small()), tmp_path, eot_token=None)
    config = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(config.replace('"rope_type": "default"', '"rope_type": "yarn"'))
    with pytest.raises(ValueError, match="rope_type 'yarn' is not supported"):
        load_qwen3(tmp_path)
    (tmp_path / "config.json").write_text(config.replace('"model_type": "qwen3"', '"model_type": "llama"'))
    with pytest.raises(ValueError, match="model_type 'llama' is neither gpt2 nor qwen3"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(config)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        load_qwen3(tmp_path)


def test_bf16_autocast_keeps_the_loss():
    torch.manual_seed(3)
    model = randomized(create_model(small()))
    idx = torch.randint(0, VOCAB, (2, 32))
    _, full = model(idx, idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, half = model(idx, idx)
    assert logits.dtype == torch.bfloat16 and abs(half.item() - full.item()) < 0.05 * full.item()
