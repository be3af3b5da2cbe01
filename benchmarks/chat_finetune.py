"""Chat fine-tuning on real text: what a base model answers before and after, and what packing buys.

    python benchmarks/chat_finetune.py --base BASE_CKPT --chat CHAT_CKPT --data CHAT_TOKENS [--steps 100]

BASE_CKPT is the model fine-tuned (the demo's: models:/gptflow-demo@champion, downloaded), CHAT_CKPT the result
(finetune-chat/demo-chat's best checkpoint), CHAT_TOKENS its conversation dataset (tokens/demo-chat-char-*). Reports:
1. Bits per character of the replies to the held-out conversations per task (ReplyBits, eval_chars 20,000 per
   task): the base (the rows of the template's tokens set as fine-tuning starts them) and the chat model.
2. Replies to the titles of the first 200 held-out poems (temperature 0.8, top-k 200, a seed each, at most 64
   tokens): the share that end with the end-of-turn marker, and the share that are poem-shaped (two or more runs of
   Han characters, at least 3 of 4 of them 5 or 7 characters long); three replies printed.
3. Packing against one conversation per row: rows, the share of row positions holding a conversation, and --steps
   steps of fine-tuning each from the base (the chat preset's settings, one thread per run, one run at a time):
   reply tokens trained on per second and the replies' bits per character after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gpt.chat import ChatFormat, ReplyStats, stream_reply  # noqa: E402
from gpt.chat_data import ChatRows, ReplyBits, conversation_index  # noqa: E402
from gpt.dist import init_distributed  # noqa: E402
from gpt.init import start_template_tokens  # noqa: E402
from gpt.sample import SampleOptions, load_for_sampling  # noqa: E402
from gpt.shards import TokenDataset  # noqa: E402
from gpt.train import Trainer  # noqa: E402
from tasks.config import load_pipelines  # noqa: E402
from tasks.corpus.text.verse import verse_lines  # noqa: E402
from tasks.training.presets import train_config  # noqa: E402

TITLES = 200


def poem_shaped(reply: str) -> bool:
    lines = verse_lines(reply)
    return len(lines) >= 2 and sum(len(line) in (5, 7) for line in lines) >= 0.75 * len(lines)


def held_out_titles(dataset: TokenDataset, count: int) -> list[str]:
    """The user turns of the first `count` held-out poem conversations."""
    chat, tokenizer = ChatFormat.of(dataset.tokenizer()), dataset.tokenizer()
    index = conversation_index(dataset, "val")
    poem = dataset.chat["tasks"].index("poem")
    titles = []
    for k in np.flatnonzero(index["task"] == poem)[:count].tolist():
        ids = dataset.tokens("val", int(index["shard"][k]))[index["start"][k] : index["start"][k] + index["tokens"][k]]
        user = ids[1 : list(ids).index(chat.end)]
        titles.append(tokenizer.decode(user.tolist()))
    return titles


def replies(model, chat: ChatFormat, titles: list[str]) -> dict:
    ended = shaped = 0
    examples = []
    for k, title in enumerate(titles):
        opts = SampleOptions(max_new_tokens=64, temperature=0.8, top_k=200, seed=k)
        stats = ReplyStats()
        reply = "".join(stream_reply(model, chat, [{"role": "user", "content": title}], opts, stats))
        ended += stats.ended
        shaped += poem_shaped(reply)
        if k < 3:
            examples.append((title, reply))
    return {"ended": ended / len(titles), "poem_shaped": shaped / len(titles), "examples": examples}


def fine_tune(base: Path, data: Path, steps: int, packing: bool) -> dict:
    config = load_pipelines(REPO / "pipelines.yaml")
    with tempfile.TemporaryDirectory() as out:
        cfg = train_config(config, "demo-chat", [], data=str(data), out_dir=out, init_from=str(base),
                           max_iters=steps, packing=packing, cpu_threads=1)  # fmt: skip
        trainer = Trainer(cfg, init_distributed("cpu"))
        rows = trainer.batches.windows
        trained = 0
        started = time.perf_counter()
        for _ in range(steps):
            trained += sum(int((trainer.batches.batch(m)[1] >= 0).sum()) for m in range(trainer.accum))
            trainer.train_step()
        seconds = time.perf_counter() - started
        bpc = ReplyBits(trainer.dataset, trainer.raw.config.block_size, 20_000).score(trainer.raw, 16)["val_bpc"]
    return {"rows": rows.num_windows, "fill": rows.fill, "seconds": seconds, "reply_tokens_per_s": trained / seconds,
            "val_bpc": bpc}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--chat", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    dataset = TokenDataset.open(args.data)
    base, tokenizer, _ = load_for_sampling(args.base)
    base = start_template_tokens(base, *dataset.chat["new_tokens"]).eval()  # as fine-tuning starts
    chat_model, _, _ = load_for_sampling(args.chat)
    chat = ChatFormat.of(tokenizer)
    block = chat_model.config.block_size
    for name, model in (("base", base), ("chat", chat_model)):
        scores = ReplyBits(dataset, block, 20_000).score(model, 16)
        print(f"{name}: reply bits per character " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    titles = held_out_titles(dataset, TITLES)
    for name, model in (("base", base), ("chat", chat_model)):
        found = replies(model, chat, titles)
        print(f"{name}: {len(titles)} titles, ended {found['ended']:.1%}, poem-shaped {found['poem_shaped']:.1%}")
        for title, reply in found["examples"]:
            print(f"  {title} -> {reply!r}")
    for packing in (True, False):
        found = fine_tune(args.base, args.data, args.steps, packing)
        print(f"packing={packing}: {found['rows']:,} rows, {found['fill']:.1%} of positions hold a conversation, "
              f"{args.steps} steps in {found['seconds']:.1f} s, {found['reply_tokens_per_s']:,.0f} reply tokens/s, "
              f"reply bpc after {found['val_bpc']:.3f}")  # fmt: skip
    train_rows = ChatRows(dataset, "train", block, 0)
    print(f"train conversations cut to the context of {block}: {train_rows.truncated:,}")


if __name__ == "__main__":
    main()
