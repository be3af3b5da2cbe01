"""The shape of a model, apart from the model itself so that configs load without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VOCAB_MULTIPLE = 64


def padded_vocab_size(dataset_vocab: int) -> int:
    """The vocabulary a model trained from scratch gets for a dataset's: rounded up to a multiple of 64 for speed."""
    return -(-dataset_vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


@dataclass
class ModelConfig:
    """Shape of a model: GPT-2 (2019: learned positions, LayerNorm, GELU) or Qwen3-shaped (rotary positions,
    RMSNorm, QK-norm, gated SiLU MLP, no biases); docs/engine.md says when to pick which."""

    arch: Literal["gpt2", "qwen3"] = "gpt2"
    """Model family: gpt2 (gpt/model.py, exported as GPT2LMHeadModel) or qwen3 (gpt/qwen3.py, exported as
    Qwen3ForCausalLM)."""
    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Attention heads per block; for gpt2, n_embd must be divisible by it."""
    n_embd: int = 768
    """Width of the residual stream."""
    block_size: int = 1024
    """Context length in tokens (gpt2: the size of the position embedding)."""
    vocab_size: int = 0
    """Vocabulary size; 0 takes the dataset's, rounded up to a multiple of 64 for speed."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (0 for pretraining, ~0.1-0.2 for small data)."""
    bias: bool = True
    """gpt2: biases in Linear and LayerNorm layers, as GPT-2 has them (qwen3 has none)."""
    gelu: Literal["tanh", "exact"] = "tanh"
    """gpt2: GELU flavour: tanh is GPT-2's own approximation; exact (erf) is several times faster on CPUs."""
    n_kv_head: int = 0
    """qwen3: key/value heads (grouped-query attention; n_head must be a multiple); 0: n_head."""
    head_dim: int = 0
    """qwen3: width of each attention head; 0: n_embd // n_head."""
    mlp_hidden: int = 0
    """qwen3: hidden width of the gated MLP; 0: 8/3 n_embd rounded up to a multiple of 32, which gives it the
    parameters of GPT-2's 4 n_embd MLP."""
    rope_theta: float = 10000.0
    """qwen3: base of the rotary position frequencies (Qwen3 uses 1,000,000 for long contexts)."""
    rms_norm_eps: float = 1e-6
    """qwen3: epsilon of the RMSNorms."""
    tie_embeddings: bool = True
    """qwen3: one matrix for the input embedding and the output layer (gpt2 always ties them)."""

    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    def head_width(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    def mlp_width(self) -> int:
        return self.mlp_hidden or -(-8 * self.n_embd // 3 // 32) * 32

    def problems(self) -> list[str]:
        """What makes this shape unbuildable, as sentences naming the keys (empty when it is fine)."""
        out = []
        if self.n_layer < 1 or self.n_head < 1 or self.n_embd < 1 or self.block_size < 1:
            out.append("n_layer, n_head, n_embd and block_size must be positive")
        if self.arch == "gpt2":
            if self.n_embd % max(1, self.n_head):
                out.append(f"n_embd {self.n_embd} must be divisible by n_head {self.n_head}")
            if not self.tie_embeddings:
                out.append("gpt2 always ties its embeddings: tie_embeddings=false needs arch=qwen3")
            changed = [k for k in ("n_kv_head", "head_dim", "mlp_hidden") if getattr(self, k)]
            if changed:
                out.append(f"{', '.join(changed)} belong to arch=qwen3; gpt2 has no such setting")
        elif self.head_width() % 2 or self.head_width() < 2:
            out.append(f"head_dim {self.head_width()} must be even for rotary positions")
        elif self.n_head % self.kv_heads():
            out.append(f"n_head {self.n_head} must be a multiple of n_kv_head {self.kv_heads()}")
        elif self.rope_theta <= 0 or self.rms_norm_eps <= 0:
            out.append("rope_theta and rms_norm_eps must be positive")
        return out
