import math

import pytest
import torch

from gpt.decoding import KVCache, sample_next
from gpt.model import GPT, ModelConfig


def small(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, dropout=0.0)
    return GPT(ModelConfig(**{**cfg, **kw})).eval()


def test_gpt2_parameter_names_and_tied_embeddings():
    model = small()
    names = set(dict(model.named_parameters(remove_duplicate=False)))
    for expected in (
        "transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.bias", "transformer.h.1.ln_2.bias",
        "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.weight",
        "lm_head.weight",
    ):  # fmt: skip
        assert expected in names
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_init_scales_residual_projections_and_loss_starts_near_uniform():
    model = small(n_layer=8, n_embd=64, n_head=4)
    c_proj = model.transformer.h[0].mlp.c_proj.weight.std().item()
    c_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert c_proj == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert c_fc == pytest.approx(0.02, rel=0.1)
    idx = torch.randint(0, 50, (4, 16))
    _, loss = model(idx, torch.randint(0, 50, (4, 16)))
    assert loss.item() == pytest.approx(math.log(50), abs=0.1)


def test_no_bias_variant_has_no_bias_parameters():
    assert not [n for n, _ in small(bias=False).named_parameters() if n.endswith("bias")]


def test_causality_future_tokens_do_not_change_past_logits():
    model = small()
    a = torch.randint(0, 50, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 50
    la, _ = model(a, a)
    lb, _ = model(b, b)
    torch.testing.assert_close(la[:, :10], lb[:, :10])
    assert not torch.allclose(la[:, 10:], lb[:, 10:])


def test_crop_block_size():
    model = small()
    model.crop_block_size(8)
    assert model.transformer.wpe.weight.shape == (8, 32)
    model(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot grow"):
        model.crop_block_size(16)


def test_kv_cache_matches_full_recompute():
    model = small()
    prompt = torch.randint(0, 50, (2, 5))
    cached = model.generate(prompt, 10, temperature=0, use_cache=True)
    full = model.generate(prompt, 10, temperature=0, use_cache=False)
    assert torch.equal(cached, full)
    # the logits themselves agree step by step
    cache = KVCache(model.config, 1, torch.device("cpu"), torch.float32)
    seq = torch.randint(0, 50, (1, 8))
    model(seq[:, :4], cache=cache)
    for t in range(4, 8):
        step_logits, _ = model(seq[:, t : t + 1], cache=cache)
        ref, _ = model(seq[:, : t + 1])
        torch.testing.assert_close(step_logits, ref, atol=1e-5, rtol=1e-5)


def test_generation_past_the_context_keeps_going():
    model = small()
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 40, temperature=1.0, top_k=5)
    assert out.shape == (1, 41)


def test_stop_token_ends_generation_and_tokens_stream():
    model = small()
    start = torch.zeros(1, 1, dtype=torch.long)
    free = [int(t[0]) for t in model.generate_stream(start, 12, temperature=0)]
    stop = free[3]
    stream = [int(t[0]) for t in model.generate_stream(start, 12, temperature=0, stop_token=stop)]
    assert stream == free[: free.index(stop) + 1]


def test_sampling_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    torch.manual_seed(0)
    draws = {int(sample_next(logits.clone(), 1.0, top_k=2)) for _ in range(200)}
    assert draws == {3, 4}
    draws = {int(sample_next(logits.clone(), 1.0, top_p=0.5)) for _ in range(200)}
    assert draws <= {3, 4} and 4 in draws
    assert int(sample_next(logits.clone(), 0.0)) == 4
    assert int(sample_next(logits.clone(), 0.0, vocab_limit=3)) == 2
    assert int(sample_next(logits.clone(), 0.0, forbidden=[4, 2])) == 3
    draws = {int(sample_next(logits.clone(), 1.0, forbidden=[4])) for _ in range(200)}
    assert draws == {0, 1, 2, 3}
