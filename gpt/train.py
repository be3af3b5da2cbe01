"""Train a GPT (the gpt2 or the qwen3 family) on a token dataset, alone or under torchrun, and resume it exactly.

    python -m gpt.train shakespeare-char-cpu --data=data/shakespeare_char --out_dir=runs/shakespeare
    torchrun --standalone --nproc_per_node=8 -m gpt.train gpt2-124m --data=data/openwebtext
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --nproc_per_node=8 \\
        -m gpt.train gpt2-124m ...
    python -m gpt.train --help          # every key with its default and meaning

CONFIG is a YAML/JSON file or a shipped preset (gpt/presets/); `--key=value` overrides any key. Checkpoints go to
out_dir/step-N/; rank 0 appends to out_dir/metrics.jsonl. SIGTERM or SIGINT saves a checkpoint, then exits.
"""

from __future__ import annotations

import math
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from gpt import checkpoint as ckpt_io
from gpt.atomic import remove_stale_temporaries, write_text_atomic
from gpt.bpc import EvalDocuments, EvalText
from gpt.chat import ChatFormat, stream_reply
from gpt.chat_data import ChatRows, ReplyBits, chat_meta
from gpt.config import ConfigError, TrainConfig, describe, load_config, preset_names, to_dict
from gpt.data import MixtureWindows, TokenWindows, TrainBatches, sample_indices
from gpt.dist import DistEnv, all_reduce_sum, barrier, finish, gather_objects, init_distributed
from gpt.errors import FixableError, disk_error
from gpt.init import build_model, choose_source, resolve_dtype
from gpt.metrics import MetricsLog, peak_flops
from gpt.optim import build_optimizers, set_learning_rates
from gpt.provenance import package_versions
from gpt.sample import SampleOptions, generate_texts, sample_file_name
from gpt.shards import TokenDataset
from gpt.tokenizer import VocabularyUnavailable

BPC_ROWS, BPC_LOGITS = 256, 1 << 24
"""Windows per batch when scoring bits per character: more than a training batch when the logits stay under
BPC_LOGITS values (64 MB), as for small models on a CPU."""
EVAL_SEED = 20261126  # evaluation batches are the same in every run and every evaluation


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; raised before the optimizer step, so no weight was corrupted."""


class Trainer:
    """One training run: call `run()`; it returns a summary, or raises."""

    def __init__(self, cfg: TrainConfig, env: DistEnv):
        self.cfg, self.env = cfg, env
        if cfg.grad_accum % env.world_size:
            raise ConfigError(f"grad_accum={cfg.grad_accum} must be a multiple of the {env.world_size} processes")
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        self.out_dir = Path(cfg.out_dir)
        started = time.monotonic()
        self.dataset = TokenDataset.open(cfg.data, verify=True)  # a flipped byte stops here, naming its shard
        if env.is_main:
            shards = [p for split in self.dataset.manifest["splits"] for p in self.dataset.shard_paths(split)]
            size = sum(p.stat().st_size for p in shards) / 1e9
            print(f"verified {len(shards)} shards ({size:.2f} GB) in {time.monotonic() - started:.1f} s", flush=True)
        self.fresh = TokenDataset.open(cfg.fresh_data, verify=True) if cfg.fresh_data else None
        if self.fresh and self.fresh.tokenizer_spec() != self.dataset.tokenizer_spec():
            raise ConfigError(f"fresh_data {cfg.fresh_data} is encoded with another tokenizer than {cfg.data}")
        self.device = env.device
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if self.device.type == "cuda":  # fp32 matmuls on tensor cores (TF32)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        source = choose_source(cfg, self.out_dir, env)
        model, resume_from = build_model(cfg, self.dataset, self.out_dir, source)
        if model.config.vocab_size < self.dataset.vocab_size:
            raise ConfigError(
                f"the model's vocabulary ({model.config.vocab_size}) is smaller than the dataset's "
                f"({self.dataset.vocab_size}); set model.vocab_size=0 or use a matching dataset"
            )
        self.raw = model.to(self.device)
        self.raw.checkpointing = cfg.activation_checkpointing
        self.optimizers = build_optimizers(self.raw, cfg, self.device.type)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.step, self.best_val = 0, math.inf
        self.saved_step = -1  # the step whose state is already on disk
        self.carried = source == "continue"  # another run's state, carried on into this one
        cursors = (0, 0)
        if resume_from is not None:
            where = ckpt_io.restore_training(
                resume_from, cfg, self.dataset, self.fresh, self.optimizers, self.scaler, env, self.carried
            )
            self.step, cursors = where.step, (where.cursor, where.fresh_cursor)
            if not self.carried:
                self.best_val, self.saved_step = where.best_val_loss, self.step
        else:
            torch.manual_seed(cfg.seed + env.rank)  # different dropout masks on each rank
        self.model = torch.compile(self.raw) if cfg.compile else self.raw
        if env.enabled:
            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.autocast = (
            torch.autocast("cuda", dtype=self.dtype)
            if self.device.type == "cuda" and self.dtype != torch.float32
            else nullcontext()
        )
        block = self.raw.config.block_size
        self.accum = cfg.grad_accum // env.world_size
        self.tokens_per_step = cfg.grad_accum * cfg.batch_size * block
        if self.dataset.chat and (self.fresh or cfg.mixture.enabled):
            raise ConfigError(f"{cfg.data} is a conversation dataset: fresh_data and mixture are for documents")
        try:
            train_windows = self._train_windows(block)
            fresh_windows = TokenWindows(self.fresh.shard_paths("train"), block, cfg.seed) if self.fresh else None
            self.eval_windows = {
                split: self._windows(split, block, EVAL_SEED)
                for split in ("train", "val")
                if split in self.dataset.manifest["splits"]
            }
        except ValueError as e:  # a split too small for the context
            raise ConfigError(str(e)) from e
        self.batches = TrainBatches(
            train_windows, fresh_windows, cfg.batch_size, cfg.replay, env.rank, env.world_size, *cursors
        )
        self.eval_documents = self._eval_documents(cfg.eval_chars, block)
        self.peak = peak_flops(self.device, self.dtype)
        self.pending_signal = 0  # set by the handler on this rank
        self.stop_signal = 0  # agreed by all ranks at the end of a step: only this one steers the loop
        self.log = None
        if env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out_dir)
            keep = self.step if resume_from is not None and not self.carried else -1
            self.log = MetricsLog(self.out_dir / "metrics.jsonl", keep_until_step=keep)

    def _windows(self, split: str, block: int, seed: int) -> TokenWindows | ChatRows:
        """A split's windows: of its token stream, or of a conversation dataset's conversations."""
        if not self.dataset.chat:
            return TokenWindows(self.dataset.shard_paths(split), block, seed)
        return ChatRows(self.dataset, split, block, seed, self.cfg.packing)

    def _train_windows(self, block: int) -> TokenWindows | MixtureWindows | ChatRows:
        """All train windows in one order, or drawn corpus by corpus at the mixture's shares."""
        mixture = self.cfg.mixture
        if not mixture.enabled:
            windows = self._windows("train", block, self.cfg.seed)
            if isinstance(windows, ChatRows) and self.env.is_main:
                how = "packed" if self.cfg.packing else "one per row"
                print(f"{windows.num_windows:,} rows of conversations ({how}): {windows.fill:.0%} of positions hold "
                      f"one; {windows.truncated:,} longer than a row, their start cut")  # fmt: skip
            return windows
        tokens = {c: n["train"] for c, n in self.dataset.manifest.get("tokens_per_corpus", {}).items()}
        shares = mixture.resolve(tokens)
        if self.env.is_main:
            print("mixture: " + ", ".join(f"{c} {share:.1%}" for c, share in shares.items()))
        return MixtureWindows(self.dataset, block, self.cfg.seed, shares)

    def _corpus_tokens(self) -> dict[str, int]:
        """Training tokens drawn from each corpus so far, when a mixture says which corpus each window is from."""
        windows = self.batches.windows
        if not isinstance(windows, MixtureWindows):
            return {}
        block = windows.block_size
        return {f"train_tokens_{c}": n * block for c, n in windows.counts(self.batches.cursor).items()}

    def _eval_documents(self, chars: int, block: int) -> EvalDocuments | ReplyBits | None:
        """The text of val_bpc. A dataset of build-corpus lists it by token positions; one made by prepare_text has
        its val text decoded, which a tiktoken vocabulary that cannot be downloaded here prevents (then: no bpc)."""
        if not chars:
            return None
        if self.dataset.chat:
            return ReplyBits(self.dataset, block, chars)
        try:
            return EvalText.of_dataset(self.dataset, chars).documents(None, block)
        except VocabularyUnavailable as e:
            if self.env.is_main:
                print(f"no val_bpc: the dataset's val text cannot be decoded here: {e}", file=sys.stderr)
            return None

    def _on_device(self, batch: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = torch.from_numpy(batch[0]), torch.from_numpy(batch[1])
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over the same eval_iters batches of each split, averaged over ranks."""
        self.model.eval()
        out = {}
        for split, windows in self.eval_windows.items():
            total = torch.zeros((), device=self.device)
            for k in range(self.cfg.eval_iters):
                samples = sample_indices(0, k, self.env.rank, self.env.world_size, self.cfg.batch_size)
                x, y = self._on_device(windows.batch(samples))
                with self.autocast:
                    _, loss = self.model(x, y, loss_chunk=self.cfg.loss_chunk)
                total += loss.float()
            total = all_reduce_sum(total, self.env) / (self.cfg.eval_iters * self.env.world_size)
            out[f"{split}_loss"] = float(total)
        if self.eval_documents is not None:
            rows = max(
                self.cfg.batch_size,
                min(BPC_ROWS, BPC_LOGITS // (self.raw.config.block_size * self.raw.config.vocab_size)),
            )
            out.update(self.eval_documents.score(self.raw, rows, self.env, self.autocast))
        self.model.train()
        return out

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss over all ranks."""
        lr = set_learning_rates(self.optimizers, self.cfg, self.step)
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            x, y = self._on_device(self.batches.batch(micro))
            last = micro == self.accum - 1
            sync = self.model.no_sync() if isinstance(self.model, DDP) and not last else nullcontext()
            with sync, self.autocast:
                _, loss = self.model(x, y, loss_chunk=self.cfg.loss_chunk)
                loss = loss / self.accum
            loss_sum += loss.detach()
            self.scaler.scale(loss).backward()
        flags = torch.stack([loss_sum.float(), torch.tensor(float(self.pending_signal), device=self.device)])
        flags = all_reduce_sum(flags, self.env)
        loss_value = float(flags[0]) / self.env.world_size
        if flags[1] > 0:  # some rank was signalled: every rank stops after this step
            self.stop_signal = self.pending_signal or int(signal.SIGTERM)
        if not math.isfinite(loss_value):
            self._zero_grad()
            raise NonFiniteLossError(
                f"loss is {loss_value} at step {self.step + 1} (lr {lr:.3g}); stopped before the optimizer step, "
                f"so the weights are intact. The last good checkpoint is in {self.out_dir}. Lower lr, raise "
                "warmup_iters, check the data, or use bfloat16 instead of float16."
            )
        if self.cfg.grad_clip > 0:
            for optimizer in self.optimizers:
                self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.cfg.grad_clip)
        for optimizer in self.optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()
        self._zero_grad()
        self.step += 1
        self.batches.advance(self.accum)
        return loss_value

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def save(self, val_loss: float | None) -> None:
        if self.step == self.saved_step:
            return  # e.g. stopped right after resuming: that checkpoint already holds this state
        self.saved_step = self.step
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        rngs = gather_objects(rng, self.env)
        if self.env.is_main:
            state = {
                "optimizer": self._optimizer_state(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "cursor": self.batches.cursor,
                "fresh_cursor": self.batches.fresh_cursor,
                "best_val_loss": self.best_val,
                "rng": rngs,
                "world_size": self.env.world_size,
            }
            meta = {
                "step": self.step,
                "val_loss": val_loss,
                "model": to_dict(self.raw.config),
                "config": to_dict(self.cfg),
                "dataset": {
                    "path": str(self.dataset.folder),
                    "tokenizer": self.dataset.manifest["tokenizer"],
                    "train_tokens": self.dataset.num_tokens("train"),
                    "train_sha256": self.dataset.digest("train"),
                    **({"chat": chat_meta(self.dataset.chat)} if self.dataset.chat else {}),
                },
                "cursor": self.batches.cursor,
                **({"fresh": self._fresh_meta()} if self.fresh else {}),
                "tokens_seen": self.step * self.tokens_per_step,
                "versions": package_versions(),
            }
            spec = self.dataset.tokenizer_spec()
            path = ckpt_io.save_checkpoint(self.out_dir, self.step, self.raw, state, meta, spec)
            ckpt_io.prune_checkpoints(self.out_dir, self.cfg.keep_last)
            print(f"saved checkpoint {path}")
        barrier(self.env)

    def _optimizer_state(self) -> dict | list[dict]:
        """AdamW's state alone (as checkpoints have always held it), or AdamW's and Muon's."""
        states = [optimizer.state_dict() for optimizer in self.optimizers]
        return states[0] if len(states) == 1 else states

    def write_sample(self) -> None:
        """out_dir/samples/<sample_file_name(step)> on rank 0 (sample_tokens > 0), from the same seed each time and
        without moving the training's random state, so that resumed and uninterrupted runs stay equal."""
        if not self.cfg.sample_tokens or not self.env.is_main:
            return
        try:
            tokenizer = self.dataset.tokenizer()
        except VocabularyUnavailable as e:
            print(f"no sample: {e}", file=sys.stderr)
            return
        options = SampleOptions(max_new_tokens=self.cfg.sample_tokens, seed=self.cfg.seed)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.raw.eval()
            if self.dataset.chat:
                asked = [{"role": "user", "content": self.cfg.sample_prompt}]
                text = "\n" + "".join(stream_reply(self.raw, ChatFormat.of(tokenizer), asked, options))
            else:
                [text] = generate_texts(self.raw, tokenizer, self.cfg.sample_prompt, options)
            self.raw.train()
        (self.out_dir / "samples").mkdir(exist_ok=True)
        write_text_atomic(self.out_dir / "samples" / sample_file_name(self.step), self.cfg.sample_prompt + text)

    def _fresh_meta(self) -> dict:
        return {
            "path": str(self.fresh.folder), "train_sha256": self.fresh.digest("train"),
            "windows": self.batches.fresh.num_windows, "cursor": self.batches.fresh_cursor,
        }  # fmt: skip

    def _on_signal(self, signum: int, _frame) -> None:
        self.pending_signal = signum

    def run(self) -> dict:
        cfg, main = self.cfg, self.env.is_main
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self.step == 0:
                self._log(0, **self.evaluate())
                self.write_sample()
            if main:
                n = self.raw.num_params() / 1e6
                print(
                    f"training {n:.2f}M parameters on {self.env.world_size} x {self.device} ({self.dtype}), "
                    f"{self.tokens_per_step:,} tokens per step, steps {self.step}..{cfg.max_iters}"
                )
            loss = math.nan
            while self.step < cfg.max_iters and not self.stop_signal:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                if self.step % cfg.log_interval == 0 or self.step == cfg.max_iters:
                    self._log(self.step, **self._speed(loss, dt))
                val = None
                if self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters:
                    losses = self.evaluate()
                    val = losses.get("val_loss")
                    self.best_val = min(self.best_val, math.inf if val is None else val)
                    self._log(self.step, **losses, **self._corpus_tokens())
                    self.write_sample()
                interval = cfg.ckpt_interval or cfg.eval_interval
                if self.step % interval == 0 or self.step == cfg.max_iters or self.stop_signal:
                    self.save(val)
            return {
                "step": self.step,
                "loss": loss,
                "best_val_loss": self.best_val,
                "signal": self.stop_signal,
            }
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            if self.log is not None:
                self.log.close()

    def _speed(self, loss: float, dt: float) -> dict[str, float]:
        lr = self.optimizers[0].param_groups[0]["lr"]
        out = {"loss": loss, "lr": lr, "tokens_per_s": self.tokens_per_step / dt, "ms_per_iter": dt * 1000}
        if self.peak:
            flops = self.raw.flops_per_token() * self.tokens_per_step / self.env.world_size
            out["mfu"] = flops / dt / self.peak
        return out

    def _log(self, step: int, **metrics: float) -> None:
        if self.log is None:
            return
        self.log.log(step, **metrics)
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"step {step}: {shown}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print(f"presets: {', '.join(preset_names())}\n\nkeys:\n{describe(TrainConfig)}")
        return 0
    source, overrides = (None, argv) if argv[0].startswith("--") else (argv[0], argv[1:])
    try:
        cfg = load_config(TrainConfig, source, overrides)
        if not cfg.data:
            raise ConfigError("no dataset: set data (a folder with manifest.json), e.g. --data=data/shakespeare_char")
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    env = init_distributed(cfg.device)
    try:
        result = Trainer(cfg, env).run()
    except (FixableError, NonFiniteLossError) as e:  # the message says it all: no traceback
        print(f"error: {e}", file=sys.stderr)
        finish(env, 2 if isinstance(e, ConfigError) else 1)
    except Exception as e:
        if (written := disk_error(e, Path(cfg.out_dir))) is None:
            traceback.print_exc()
        else:
            print(f"error: {written}", file=sys.stderr)
        finish(env, 1)
    finish(env, 128 + result["signal"] if result["signal"] else 0)


if __name__ == "__main__":
    sys.exit(main())
