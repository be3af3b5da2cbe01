"""Sample text from a checkpoint, streaming tokens as they are generated.

    python -m gpt.sample --ckpt runs/shakespeare-char-cpu --start "ROMEO:" --num-samples 3 --max-new-tokens 200
    python -m gpt.sample --ckpt runs/chinese/step-5000 --start "AI社会价值" --temperature 0.8 --top-k 200 --seed 1337
    python -m gpt.sample --ckpt DIR --start FILE:prompt.txt

DIR is a run folder (its best checkpoint is used) or one `step-N` folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gpt.checkpoint import CheckpointError, load_model, resolve_checkpoint
from gpt.decoding import CausalLM
from gpt.dist import resolve_device
from gpt.tokenizer import StreamDecoder, Tokenizer, load_tokenizer


@dataclass
class SampleOptions:
    num_samples: int = 1
    max_new_tokens: int = 500
    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None
    seed: int = 1337
    stop_at_eot: bool = True
    use_cache: bool = True


def sample_file_name(step: int) -> str:
    """The file name of the sample written at `step`: step-0001200.txt, the step zero-padded to 7 digits so that
    the names sort in step order (they match the pattern step-*.txt)."""
    return f"step-{step:07d}.txt"


def read_prompt(start: str) -> str:
    """`FILE:path` reads the prompt from a file; anything else is the prompt itself."""
    if start.startswith("FILE:"):
        return Path(start[5:]).read_text(encoding="utf-8")
    return start


def load_for_sampling(
    ckpt: str | Path, device: str = "auto", dtype: torch.dtype = torch.float32
) -> tuple[CausalLM, Tokenizer, Path]:
    """The model (in `dtype`, eval mode), its tokenizer and the checkpoint folder chosen."""
    path = resolve_checkpoint(ckpt)
    model, _ = load_model(path, resolve_device(device))
    model.to(dtype).eval()
    return model, load_tokenizer(path / "tokenizer.json"), path


def unsampled(tokenizer: Tokenizer) -> list[int]:
    """The ids generation never picks: the unknown-character token, which stands for no text of its own."""
    return [] if tokenizer.unk_token is None else [tokenizer.unk_token]


def generate_texts(
    model: CausalLM,
    tokenizer: Tokenizer,
    prompt: str,
    opts: SampleOptions,
    on_text: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Generate opts.num_samples continuations of `prompt` (one at a time, each streamed to on_text), never with
    the tokenizer's unknown-character token."""
    device = model.lm_head.weight.device
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:  # an empty prompt starts a new document
        ids = [tokenizer.eot_token] if tokenizer.eot_token is not None else tokenizer.encode("\n")
    torch.manual_seed(opts.seed)
    texts = []
    for i in range(opts.num_samples):
        decoder, parts = StreamDecoder(tokenizer), []
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        stream = model.generate_stream(
            idx, opts.max_new_tokens, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
            stop_token=tokenizer.eot_token if opts.stop_at_eot else None, vocab_limit=tokenizer.n_vocab,
            forbidden=unsampled(tokenizer), use_cache=opts.use_cache,
        )  # fmt: skip
        for token in stream:
            if opts.stop_at_eot and int(token[0]) == tokenizer.eot_token:
                break
            parts.append(piece := decoder.push([int(token[0])]))
            if on_text and piece:
                on_text(i, piece)
        parts.append(tail := decoder.flush())
        if on_text and tail:
            on_text(i, tail)
        texts.append("".join(parts))
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.sample", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="run folder (best checkpoint) or step-N folder")
    p.add_argument("--start", default="", help="the prompt, or FILE:path to read it from a file")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    p.add_argument("--top-k", type=int, default=200, help="0 disables")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling, e.g. 0.95")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--no-stop", action="store_true", help="keep going past the end-of-text token")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context every token")
    args = p.parse_args(argv)
    try:
        model, tokenizer, path = load_for_sampling(args.ckpt, args.device, getattr(torch, args.dtype))
        prompt = read_prompt(args.start)
        tokenizer.encode(prompt)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"# {path} ({tokenizer.name} tokenizer)", file=sys.stderr)
    opts = SampleOptions(
        args.num_samples, args.max_new_tokens, args.temperature, args.top_k or None, args.top_p, args.seed,
        stop_at_eot=not args.no_stop, use_cache=not args.no_cache,
    )  # fmt: skip
    last = [-1]

    def show(i: int, text: str) -> None:
        if i != last[0]:
            print(("\n---------------\n" if i else "") + prompt, end="")
            last[0] = i
        print(text, end="", flush=True)

    t0 = time.perf_counter()
    texts = generate_texts(model, tokenizer, prompt, opts, show)
    seconds = time.perf_counter() - t0
    n_tokens = sum(len(tokenizer.encode(t)) for t in texts)  # re-encoded: exact for char, close for BPE
    print(
        f"\n---------------\n# {n_tokens} tokens in {seconds:.2f}s ({n_tokens / seconds:.0f} tokens/s)", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
