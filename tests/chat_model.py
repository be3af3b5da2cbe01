"""A small chat checkpoint for the tests of what talks to a model (the terminal, the web page, the served model): a
two-layer GPT with a character vocabulary of real Tang poems and the chat template's markers, its random weights
trained a few steps on one poem-for-a-title conversation so that replies are made of its characters.

    ckpt = make_chat_checkpoint(tmp_path / "chat")     # a step-N folder: weights, meta, tokenizer.json
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from gpt.chat import ChatFormat
from gpt.checkpoint import save_checkpoint
from gpt.model import ModelConfig, create_model
from gpt.model_config import padded_vocab_size
from gpt.tokenizer import EOT, UNK, CharTokenizer

TITLE, POEM = "春望", "国破山河在\n城春草木深\n感时花溅泪\n恨别鸟惊心"
CONVERSATION = [{"role": "user", "content": TITLE}, {"role": "assistant", "content": POEM}]


def make_chat_checkpoint(out_dir: Path, steps: int = 60, block_size: int = 64) -> Path:
    tokenizer = CharTokenizer(sorted(set(TITLE + POEM)), eot=EOT, unk=UNK)
    chat = ChatFormat.of(tokenizer)
    config = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=block_size,
                         vocab_size=padded_vocab_size(chat.vocab_size), dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    model = create_model(config)
    ids, mask = chat.encode(CONVERSATION)
    x = torch.from_numpy(ids[:-1])[None]
    y = torch.from_numpy(ids[1:].copy())[None]
    y[0, ~torch.from_numpy(mask[1:])] = -1
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    meta = {
        "step": steps, "val_loss": loss.item(), "model": asdict(config), "config": {"seed": 0},
        "dataset": {"path": "", "tokenizer": "char", "chat": chat.describe()},
    }  # fmt: skip
    return save_checkpoint(out_dir, steps, model.eval(), {}, meta, tokenizer.spec())
