"""How a chat model is judged when it is published: bits per character of its replies to held-out conversations
(gpt/chat_data.py ReplyBits), per task, and samples that are replies to the preset's sample prompt.

    scored = ReplyScoring(dataset, max_chars=100_000, batch_size=8, block_size=model.config.block_size)
    scored.score(model)             # {"val_bpc": ..., "val_bpc/poem": ...}
    scored.id                       # names the held-out conversations scored (a version's eval_set tag)
    scored.version_bpc(client, version)   # the champion's score on the same conversations, None: not comparable
    reply_samples(model, tokenizer, sample_cfg)   # ["春望\\n→ 国破山河在…", ...]
"""

from __future__ import annotations

import hashlib
import json

from gpt.chat import ChatFormat, stream_reply
from gpt.chat_data import ReplyBits
from gpt.config import ConfigError
from gpt.sample import SampleOptions, load_for_sampling
from gpt.shards import TokenDataset
from tasks.registry import version_folder

REPLY_MARK = "\n→ "
"""Between the question and the reply in a logged sample."""


class ReplyScoring:
    def __init__(self, dataset: TokenDataset, max_chars: int, batch_size: int, block_size: int):
        self.dataset, self.max_chars, self.batch_size, self.block_size = dataset, max_chars, batch_size, block_size

    @property
    def id(self) -> str:
        """Names the conversations scored: the held-out split, its tasks, the characters and the context."""
        key = [self.dataset.digest("val"), self.dataset.chat["tasks"], self.max_chars, self.block_size]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def score(self, model) -> dict[str, float]:
        scores = ReplyBits(self.dataset, self.block_size, self.max_chars).score(model, self.batch_size)
        if not scores:
            raise ConfigError(
                f"no held-out conversation of {self.dataset.folder} has replies that fit a context of "
                f"{self.block_size} tokens, so the model cannot be judged: train with a longer block_size, or hold out "
                "more conversations (tokenize.val_fraction)"
            )
        return scores

    def version_bpc(self, client, version) -> float | None:
        """A registered version's val_bpc on these conversations: its tag when measured on them, else measured now
        when it reads the same tokens with as long a context (None: it does not compare)."""
        if version.tags.get("eval_set") == self.id and "val_bpc" in version.tags:
            return float(version.tags["val_bpc"])
        model, tokenizer, _ = load_for_sampling(version_folder(client, version))
        if (tokenizer.spec() != self.dataset.tokenizer_spec() or model.config.vocab_size < self.dataset.vocab_size
                or model.config.block_size < self.block_size):  # fmt: skip
            return None
        return self.score(model)["val_bpc"]


def reply_samples(model, tokenizer, sample_cfg) -> list[str]:
    """The model's replies to the preset's sample prompt, as the user's message: "<prompt>\\n→ <reply>"."""
    chat = ChatFormat.of(tokenizer)
    asked = [{"role": "user", "content": sample_cfg.prompt}]
    texts = []
    for k in range(sample_cfg.num_samples):
        opts = SampleOptions(1, sample_cfg.max_new_tokens, sample_cfg.temperature, sample_cfg.top_k or None, seed=k)
        texts.append(sample_cfg.prompt + REPLY_MARK + "".join(stream_reply(model, chat, asked, opts)))
    return texts
