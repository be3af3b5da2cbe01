"""Peak memory and step time of the training loss at Qwen's vocabulary (151,936): the plain loss, which makes the
(positions, vocab) logits at once, against `loss_chunk` (gpt/decoding.py chunked_cross_entropy), which makes them a
chunk at a time, and with activation checkpointing on top.

    python benchmarks/chunked_loss.py                          # CPU: a 2-layer, 256-wide qwen3, 8 x 512 positions
    python benchmarks/chunked_loss.py --device cuda --dtype bfloat16 --shape 0.6b --batch 8 --block 2048   # a GPU

Each variant runs in a fresh process: forward and backward of `--steps` steps after one warm-up step; peak memory is
the process' peak RSS on CPU and torch.cuda.max_memory_allocated on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHAPES = {
    "small": {"n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 256, "head_dim": 64},
    "0.6b": {"n_layer": 28, "n_head": 16, "n_kv_head": 8, "n_embd": 1024, "head_dim": 128, "mlp_hidden": 3072},
}
VARIANTS = {
    "plain": (0, False),
    "chunk 4096": (4096, False),
    "chunk 1024": (1024, False),
    "chunk 4096 + ckpt": (4096, True),
}


def measure(args, loss_chunk: int, checkpointing: bool) -> dict:
    import torch

    from gpt.model import ModelConfig, create_model

    torch.manual_seed(0)
    shape = ModelConfig(arch="qwen3", vocab_size=151_936, block_size=args.block, rope_theta=1e6, **SHAPES[args.shape])
    dtype = getattr(torch, args.dtype)
    model = create_model(shape).to(args.device)
    model.checkpointing = checkpointing
    x = torch.randint(0, 151_936, (args.batch, args.block), device=args.device)
    seconds = []
    for step in range(args.steps + 1):
        started = time.perf_counter()
        with torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32):
            _, loss = model(x, x, loss_chunk=loss_chunk)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        if step:
            seconds.append(time.perf_counter() - started)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokens = args.batch * args.block
    step = sum(seconds) / len(seconds)
    return {"peak_mb": round(peak), "step_s": round(step, 3), "tokens_per_s": round(tokens / step), "loss": loss.item()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--shape", choices=SHAPES, default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args, *VARIANTS[args.variant])))
        return 0
    common = [f"--{k}={v}" for k, v in vars(args).items() if k != "variant"]
    for name in VARIANTS:
        done = subprocess.run([sys.executable, __file__, *common, "--variant", name], capture_output=True, text=True)
        if done.returncode:
            print(json.dumps({"variant": name, "failed": done.stderr.strip().splitlines()[-1]}))
            continue
        print(json.dumps({"variant": name, **json.loads(done.stdout.strip().splitlines()[-1])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
