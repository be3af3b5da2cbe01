"""Process-group setup and teardown for `torchrun` (gloo on CPU, nccl on GPU); plain `python` runs alone.

Workers end through `finish()`: barrier, destroy the process group, wait until every rank has destroyed its own,
flush, then `os._exit`. Gloo workers that exit through the interpreter's normal shutdown abort now and then, and so
does a worker still tearing down its process group when a peer's process has already gone.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist

EXIT_WAIT_S = 30
COLLECTIVE_TIMEOUT = timedelta(minutes=30)  # rank 0 may write a large checkpoint while the others wait


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    store: dist.Store | None = None
    """The rendezvous store, which outlives the process group (finish() meets on it after the teardown)."""

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; under torchrun each process takes the GPU of its local rank."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} was asked for but CUDA is not available; use device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_preference: str) -> DistEnv:
    """Join the torchrun process group when launched by torchrun; otherwise a single process."""
    if "RANK" not in os.environ:
        return DistEnv(0, 0, 1, resolve_device(device_preference))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = resolve_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store = None
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        world_size = int(os.environ["WORLD_SIZE"])
        store = _attempt_store(world_size)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT)
    return DistEnv(rank, local_rank, dist.get_world_size(), device, store)


def _attempt_store(world_size: int) -> dist.Store:
    """The rendezvous store, namespaced by torchrun's restart count.

    torchrun shares its own store with the workers and keeps its keys across restarts, so without a namespace a
    restarted worker group can read the address of a worker that died in the previous attempt.
    """
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" and int(os.environ["RANK"]) == 0,
        timeout=timedelta(minutes=10),
        multi_tenant=True,
    )
    return dist.PrefixStore(f"gptflow/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, env: DistEnv) -> object:
    """Rank 0's `obj` on every rank."""
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object, env: DistEnv) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not env.enabled:
        return [obj]
    out: list = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def finish(env: DistEnv, code: int) -> NoReturn:
    """End a torchrun worker without the gloo exit abort; a plain process exits normally."""
    if env.enabled:
        if code == 0:
            dist.barrier()
        dist.destroy_process_group()
        if code == 0 and env.store is not None:
            _all_torn_down(env.store, env.world_size)
    sys.stdout.flush()
    sys.stderr.flush()
    if env.enabled:
        os._exit(code)
    sys.exit(code)


def _all_torn_down(store: dist.Store, world_size: int) -> None:
    """Wait (briefly) until every rank has destroyed its process group, so no rank exits under a peer's teardown."""
    store.add("torn-down", 1)
    deadline = time.monotonic() + EXIT_WAIT_S
    with suppress(RuntimeError):  # the store's host may already be gone: nothing left to wait for
        while store.add("torn-down", 0) < world_size and time.monotonic() < deadline:
            time.sleep(0.01)
