"""A Qwen3-shaped decoder: rotary positions, RMSNorm, QK-norm per head, a gated SiLU MLP, no biases, grouped-query
attention, tied or untied embeddings.

Parameter names are those of transformers' Qwen3ForCausalLM (model.embed_tokens, model.layers.0.self_attn.q_proj,
..., lm_head), so weights move to and from Hugging Face folders by renaming nothing (gpt/hf.py), and the model
leaves the project in a shape that transformers, vLLM and llama.cpp's converter load.

    model = Qwen3(ModelConfig(arch="qwen3", n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=6016))
    logits, loss = model(idx, targets)

Initialisation follows today's small-model recipes rather than Qwen3's: hidden matrices with std 1/sqrt(fan_in),
the attention and MLP output projections at zero (each block starts as the identity), and, when the embeddings
are untied, a unit-variance input embedding and a zero output layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.decoding import CausalLM, KVCache
from gpt.model_config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)


def rotary_tables(config: ModelConfig, start: int, end: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles of positions start..end-1, (T, head_dim), halves repeated (rotate-half);
    always computed in float32, whatever precision the weights are in."""
    dim = config.head_width()
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))
    angles = torch.outer(torch.arange(start, end, device=device).float(), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions on (B, heads, T, head_dim), the first half of each head paired with the second."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads(), config.head_width()
        self.q_proj = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.attn_dropout = config.dropout

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None, layer: int):
        B, T, _ = x.size()
        q = self.q_norm(self.q_proj(x).view(B, T, self.n_head, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = rotate(q, *rotary), rotate(k, *rotary)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=T > 1,
            enable_gqa=self.n_kv_head != self.n_head,
        )  # fmt: skip
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


class GatedMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.mlp_width()
        self.gate_proj = nn.Linear(config.n_embd, hidden, bias=False)
        self.up_proj = nn.Linear(config.n_embd, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = GatedMLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rotary, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), rotary, cache, layer))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class Qwen3(CausalLM):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.model.layers = nn.ModuleList([DecoderLayer(config) for _ in range(config.n_layer)])
        self.model.norm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2 and name.startswith("model.layers."):
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, std=p.size(1) ** -0.5)
        if self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        else:
            nn.init.normal_(self.model.embed_tokens.weight, std=1.0)
            nn.init.zeros_(self.lm_head.weight)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; an untied input embedding is left out by default (a lookup costs no FLOPs)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_embeddings:
            n -= self.model.embed_tokens.weight.numel()
        return n

    def hidden_states(self, idx: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        rotary = rotary_tables(self.config, start, start + idx.size(1), idx.device)
        x = self.drop(self.model.embed_tokens(idx))
        for layer, block in enumerate(self.model.layers):
            x = self.run_block(block, x, rotary, cache, layer)
        return self.model.norm(x)

    def crop_block_size(self, block_size: int) -> None:
        """Shorten the context (e.g. a base model's 40,960 positions to the 1,024 trained on)."""
        if block_size > self.config.block_size:
            raise ValueError(f"cannot grow block_size from {self.config.block_size} to {block_size}")
        self.config.block_size = block_size

    def embedding_and_output(self) -> list[nn.Parameter]:
        """The input embedding and the output layer (one parameter when tied)."""
        return list({id(p): p for p in (self.model.embed_tokens.weight, self.lm_head.weight)}.values())

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix B."""
        cfg = self.config
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.n_head * cfg.head_width() * cfg.block_size
