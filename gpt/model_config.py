"""The shape of a GPT-2 model, apart from the model itself so that configs load without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    """Shape of a GPT-2 model."""

    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Attention heads per block; n_embd must be divisible by it."""
    n_embd: int = 768
    """Width of the residual stream."""
    block_size: int = 1024
    """Context length in tokens (the size of the position embedding)."""
    vocab_size: int = 0
    """Vocabulary size; 0 takes the dataset's, rounded up to a multiple of 64 for speed."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (0 for pretraining, ~0.1-0.2 for small data)."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers, as GPT-2 has them; False is slightly faster and often as good."""
    gelu: Literal["tanh", "exact"] = "tanh"
    """GELU flavour: tanh is GPT-2's own approximation; exact (erf) is several times faster on CPUs."""
