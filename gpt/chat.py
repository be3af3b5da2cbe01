"""Conversations as tokens: the turn markers of a tokenizer, the mask of the tokens trained on, and replies streamed.

    chat = ChatFormat.of(tokenizer)
    ids, mask = chat.encode([{"role": "user", "content": "春望"}, {"role": "assistant", "content": "国破山河在"}])
    ids[mask]                          # the reply's tokens and its end-of-turn marker: what fine-tuning trains on
    chat.prompt(messages, room=120)    # the ids a reply continues: the newest turns that fit, then the reply's opening
    for piece in stream_reply(model, chat, messages, SampleOptions(max_new_tokens=120)):
        print(piece, end="")           # the reply, as it is generated, without its end-of-turn marker

Two templates:
- `markers`, for every tokenizer without a chat template of its own (char, a trained BPE, gpt2): four special tokens
  right after the tokenizer's vocabulary, `<|system|>` `<|user|>` `<|assistant|>` `<|end|>`; a turn is its role's
  marker, the content's tokens, then `<|end|>`. A model whose vocabulary is smaller grows its embedding when
  fine-tuning starts (gpt/init.py), and the rows of the four tokens start as the mean of the tokenizer's own rows.
- `chatml`, for a Hugging Face tokenizer whose chat template writes ChatML (Qwen's: `<|im_start|>` and `<|im_end|>`
  are in its vocabulary): a turn is `<|im_start|>`, the role and a newline, the content, `<|im_end|>`, a newline.

The mask marks the tokens a reply is made of: the assistant's content and the end of its turn (not the newline
ChatML writes after it), so that a fine-tuned model learns what to say and when to stop, never to write the user's
part. The content of each turn is encoded on its own, the same way in training and when chatting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gpt.sample import SampleOptions, unsampled
from gpt.tokenizer import HFTokenizer, StreamDecoder, Tokenizer

ROLES = ("system", "user", "assistant")
MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
CHATML = ("<|im_start|>", "<|im_end|>")


class ChatError(ValueError):
    """Messages that are not a conversation (an unknown role, a content that is not text, no user turn)."""


def check_messages(messages: Sequence[dict], reply_next: bool = False) -> list[dict]:
    """Messages as {"role", "content"} dicts with a known role and text content; with `reply_next`, the last one is
    the user's (the turn a reply answers)."""
    checked = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatError(f"message {k} is not an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ChatError(f"message {k}: role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ChatError(f"message {k}: content must be text")
        checked.append({"role": role, "content": content})
    if reply_next and (not checked or checked[-1]["role"] != "user"):
        raise ChatError("the last message must be the user's: a reply answers it")
    return checked


@dataclass(frozen=True)
class ChatFormat:
    tokenizer: Tokenizer
    template: str
    """`markers` or `chatml`."""
    opens: dict[str, list[int]]
    """The ids that open a turn of each role."""
    end: int
    """The end-of-turn token: a reply stops there."""
    closes: list[int]
    """The ids after `end` that close a turn (ChatML's newline; none for markers)."""
    vocab_size: int
    """Ids below this are the tokenizer's or the template's: what a model needs in its vocabulary."""

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> ChatFormat:
        """The tokenizer's own ChatML template where it has one, else the four markers after its vocabulary."""
        if isinstance(tokenizer, HFTokenizer) and (ids := chatml_ids(tokenizer)) is not None:
            start, end = ids
            opens = {role: [start, *tokenizer.encode(f"{role}\n")] for role in ROLES}
            return cls(tokenizer, "chatml", opens, end, tokenizer.encode("\n"), tokenizer.n_vocab)
        n = tokenizer.n_vocab
        opens = {role: [n + k] for k, role in enumerate(ROLES)}
        return cls(tokenizer, "markers", opens, n + len(ROLES), [], n + len(MARKERS))

    @property
    def special_ids(self) -> list[int]:
        """The template's own tokens (a reply never holds them)."""
        return sorted({ids[0] for ids in self.opens.values()} | {self.end})

    def describe(self) -> dict:
        """What a token dataset's manifest says of its conversations' template: its name, its tokens, the ids they
        add after the tokenizer's (`new_tokens`: [first, end), empty for ChatML) and the vocabulary a model needs."""
        names = MARKERS if self.template == "markers" else CHATML
        new = [self.tokenizer.n_vocab, self.vocab_size] if self.template == "markers" else []
        return {"template": self.template, "tokens": list(names), "new_tokens": new, "vocab_size": self.vocab_size}

    def encode(self, messages: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        """A conversation's ids (int64) and its mask (bool): True on each assistant turn's content and end."""
        ids: list[int] = []
        mask: list[bool] = []
        for message in check_messages(messages):
            opening, content = self.opens[message["role"]], self.tokenizer.encode(message["content"])
            trained = message["role"] == "assistant"
            ids += [*opening, *content, self.end, *self.closes]
            mask += [False] * len(opening) + [trained] * (len(content) + 1) + [False] * len(self.closes)
        return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool)

    def prompt(self, messages: Sequence[dict], room: int = 0, context: int = 0) -> list[int]:
        """The ids a reply to `messages` continues, ending with the assistant's opening. With `context` (the model's
        block_size), the oldest turns are left out until `room` tokens of reply still fit (a system message stays);
        a last user turn longer than that keeps its end."""
        messages = check_messages(messages, reply_next=True)
        turns = [self.encode([m])[0].tolist() for m in messages]
        head = turns.pop(0) if messages[0]["role"] == "system" and len(messages) > 1 else []
        opening = self.opens["assistant"]
        if context:
            budget = max(1, context - room - len(opening))
            while len(turns) > 1 and len(head) + sum(map(len, turns)) > budget:
                turns.pop(0)
            if len(head) + len(turns[0]) > budget:
                head, turns = [], [turns[0][-budget:]]
        return [*head, *(i for turn in turns for i in turn), *opening]


def chatml_ids(tokenizer: HFTokenizer) -> tuple[int, int] | None:
    """(<|im_start|>, <|im_end|>) ids when the tokenizer's chat template writes ChatML with them."""
    template = tokenizer.config.get("chat_template") or ""
    if isinstance(template, list):  # several named templates: the default one
        template = next((t.get("template", "") for t in template if t.get("name") == "default"), "")
    ids = [tokenizer.token_id(name) for name in CHATML]
    if CHATML[0] not in template or None in ids:
        return None
    return ids[0], ids[1]


def fine_tuned_on_conversations(meta: dict) -> bool:
    """Whether a checkpoint's meta names the chat template it was fine-tuned with."""
    return isinstance(meta.get("dataset", {}).get("chat"), dict)


def check_chat_model(model, meta: dict, chat: ChatFormat) -> None:
    """A ChatError unless the checkpoint (its model and meta) was fine-tuned on conversations, or its tokenizer
    brings a chat template of its own (an open base's ChatML): a model that only continues text does not answer."""
    if chat.template != "chatml" and not fine_tuned_on_conversations(meta):
        raise ChatError(
            "this model was never fine-tuned on conversations, so it continues text rather than answering: fine-tune "
            "it first (the finetune-chat flow), or sample from it with gptflow sample"
        )
    _check_vocabulary(model, chat)


def _check_vocabulary(model, chat: ChatFormat) -> None:
    if model.config.vocab_size < chat.vocab_size:
        raise ChatError(
            f"the model's vocabulary ({model.config.vocab_size}) lacks the chat template's tokens (up to "
            f"{chat.vocab_size}): fine-tune it on conversations first (the finetune-chat flow)"
        )


@dataclass
class ReplyStats:
    """What stream_reply counts of a reply as it goes."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens generated, the end of turn included."""
    ended: bool = False
    """Whether the reply ended with its end of turn (not with max_new_tokens)."""


def stream_reply(model, chat: ChatFormat, messages: Sequence[dict], opts: SampleOptions,
                 stats: ReplyStats | None = None) -> Iterator[str]:  # fmt: skip
    """The assistant's reply to `messages`, piece by piece as it is generated, until its end of turn (or
    opts.max_new_tokens); the oldest turns are left out when the conversation outgrows the model's context. `stats`,
    when given, counts the prompt's and the reply's tokens and says whether the reply ended."""
    _check_vocabulary(model, chat)
    stats = stats or ReplyStats()
    context = model.config.block_size
    room = min(opts.max_new_tokens, context // 2)
    ids = chat.prompt(messages, room, context)
    stats.prompt_tokens = len(ids)
    device = model.lm_head.weight.device
    torch.manual_seed(opts.seed)
    decoder = StreamDecoder(chat.tokenizer)
    others = [i for i in chat.special_ids if i != chat.end]
    if chat.tokenizer.eot_token not in (None, chat.end):
        others.append(chat.tokenizer.eot_token)  # a reply is no document: it never ends one
    stream = model.generate_stream(
        torch.tensor([ids], dtype=torch.long, device=device), opts.max_new_tokens, temperature=opts.temperature,
        top_k=opts.top_k, top_p=opts.top_p, stop_token=chat.end, vocab_limit=chat.vocab_size,
        forbidden=[*others, *unsampled(chat.tokenizer)], use_cache=opts.use_cache,
    )  # fmt: skip
    for token in stream:
        stats.completion_tokens += 1
        if int(token[0]) == chat.end:
            stats.ended = True
            break
        if piece := decoder.push([int(token[0])]):
            yield piece
    if tail := decoder.flush():
        yield tail
