"""What every model family shares for generation: the KV cache, the sampling of one token, and streamed decoding.

for token in model.generate_stream(idx, 100, temperature=0.8, top_k=200):
    ...                                       # (B,) tokens, one step at a time
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn

from gpt.model_config import ModelConfig


class KVCache:
    """Keys and values of every layer for incremental decoding; filled from position 0 up to block_size."""

    def __init__(self, config: ModelConfig, batch_size: int, device: torch.device, dtype: torch.dtype):
        shape = (batch_size, config.kv_heads(), config.block_size, config.head_width())
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.pos = 0  # number of positions already cached

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the (B, heads, T, head_dim) keys and values of the new positions; all cached ones so far."""
        assert self.pos == 0 or k.size(2) == 1, "a KV cache takes a prefill at position 0, then one token at a time"
        end = self.pos + k.size(2)
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class CausalLM(nn.Module):
    """A decoder: a family gives `config`, `lm_head` and `hidden_states`; forward and generation are shared."""

    config: ModelConfig
    lm_head: nn.Linear

    def __init__(self, config: ModelConfig):
        super().__init__()
        problems = config.problems() + ([] if config.vocab_size > 0 else ["vocab_size must be positive"])
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.checkpointing = False
        """Recompute each block's activations in the backward pass instead of keeping them (training only)."""

    def run_block(self, block: nn.Module, *args) -> torch.Tensor:
        """One transformer block, checkpointed when `checkpointing` is on and gradients are being recorded."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def hidden_states(self, idx: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        """The final normalised (B, T, n_embd) states of tokens `idx` standing at positions start..start+T-1."""
        raise NotImplementedError

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None, loss_chunk: int = 0
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits for every position when targets are given (with the loss), else for the last position only. With
        `loss_chunk`, the loss alone (logits None), made `loss_chunk` positions at a time (chunked_cross_entropy)."""
        T = idx.size(1)
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x = self.hidden_states(idx, start, cache)
        if cache is not None:
            cache.pos += T
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # (B, 1, vocab): inference needs the last position only
        if loss_chunk:
            return None, chunked_cross_entropy(x, self.lm_head.weight, targets, loss_chunk)
        logits = self.lm_head(x)
        return logits, cross_entropy(logits, targets)

    def set_dropout(self, p: float) -> None:
        """Dropout p everywhere (on embeddings, attention weights and residual branches)."""
        self.config.dropout = p
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            elif hasattr(module, "attn_dropout"):
                module.attn_dropout = p

    @torch.no_grad()
    def generate_stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_token: int | None = None,
        vocab_limit: int | None = None,
        forbidden: Sequence[int] = (),
        use_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield (B,) new tokens one step at a time, continuing the (B, T) prompt `idx`.

        temperature 0 is greedy; top_k and top_p restrict sampling to the most likely tokens; generation stops
        once every sequence has produced `stop_token`; `vocab_limit` forbids ids past the tokenizer's vocabulary
        (the padded rows of the embedding) and `forbidden` the ids listed (a tokenizer's unknown-character token).
        With the cache, a sequence that outgrows block_size is re-encoded from its last block_size // 2 tokens;
        without it, every step re-reads the last block_size tokens.
        """
        was_training = self.training
        self.eval()
        cache = None
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        feed = idx
        try:
            bs = self.config.block_size
            for _ in range(max_new_tokens):
                if not use_cache:
                    feed = idx[:, -bs:]
                elif cache is None or cache.pos >= bs:
                    keep = bs if cache is None else max(1, bs // 2)
                    cache = KVCache(self.config, idx.size(0), idx.device, self.lm_head.weight.dtype)
                    feed = idx[:, -keep:]
                logits, _ = self(feed, cache=cache)
                next_token = sample_next(logits[:, -1, :], temperature, top_k, top_p, vocab_limit, forbidden)
                if stop_token is not None:
                    next_token = torch.where(done, torch.full_like(next_token, stop_token), next_token)
                    done |= next_token == stop_token
                idx = torch.cat((idx, next_token[:, None]), dim=1)
                feed = next_token[:, None]
                yield next_token
                if stop_token is not None and bool(done.all()):
                    break
        finally:  # also when the consumer stops early
            self.train(was_training)

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """The prompt followed by up to max_new_tokens sampled tokens, as one (B, T') tensor."""
        new = list(self.generate_stream(idx, max_new_tokens, **kwargs))
        return torch.cat([idx, torch.stack(new, dim=1)], dim=1) if new else idx


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    vocab_limit: int | None = None,
    forbidden: Sequence[int] = (),
) -> torch.Tensor:
    """One token per row of (B, vocab) logits; never an id from vocab_limit on, nor one of `forbidden`."""
    logits = logits.float()
    if vocab_limit is not None and vocab_limit < logits.size(-1):
        logits[:, vocab_limit:] = -float("inf")
    if forbidden:
        logits[:, list(forbidden)] = -float("inf")
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits[logits < kth] = -float("inf")
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # keep the smallest prefix reaching top_p
        sorted_logits[drop] = -float("inf")
        logits = torch.full_like(logits, -float("inf")).scatter(1, order, sorted_logits)
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1)[:, 0]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss over the targets that are not -1, computed in float32."""
    return nn.functional.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1)


def _summed_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return nn.functional.cross_entropy(logits, targets, ignore_index=-1, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
    """cross_entropy(hidden @ weight.T, targets) made `rows` positions at a time: each chunk's logits are made,
    summed into the loss and dropped, and made again in the backward pass, so the (positions, vocab) logits of a
    large vocabulary never exist at once (a 151,936-token vocabulary's are 600 KB per position in float32)."""
    hidden, targets = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
    total = torch.zeros((), device=hidden.device, dtype=torch.float32)
    for start in range(0, hidden.size(0), rows):
        part = slice(start, start + rows)
        total = total + torch.utils.checkpoint.checkpoint(
            _summed_loss, hidden[part], weight, targets[part], use_reentrant=False
        )
    return total / (targets != -1).sum().clamp(min=1)
