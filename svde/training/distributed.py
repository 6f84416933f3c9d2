"""Thin helpers over ``torch.distributed`` for runs started by ``torchrun`` (or not at all).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a
single process and every helper here is a no-op.

Example:
    >>> ctx = init_distributed("cpu")
    >>> ctx.world_size, ctx.is_main
    (1, True)
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from svde.device import DeviceError, resolve_device  # the one device rule; re-exported for older imports

__all__ = ["DEFAULT_TIMEOUT_S", "DeviceError", "DistContext", "all_gather_objects", "all_reduce_mean", "barrier",
           "cleanup", "init_distributed", "resolve_device"]

DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join the process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU).

    ``timeout_s`` bounds every collective: a peer that freezes makes the others fail after it
    (instead of the backends' default of 30 minutes or more).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of ``value`` over all processes (the value itself in a single process)."""
    if not ctx.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` in a single process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
