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
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from svde.errors import UserError

DEVICE_NAMES = "auto, cpu, cuda, cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEFAULT_TIMEOUT_S = 300.0


class DeviceError(UserError):
    """A device name is not one svde runs on, or the device is not available here."""


def valid_device_name(name: str) -> bool:
    """Whether ``name`` is one of ``auto``, ``cpu``, ``cuda``, ``cuda:N``.

    Example:
        >>> valid_device_name("cuda:1"), valid_device_name("tpu")
        (True, False)
    """
    return bool(_DEVICE.match(name))


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's CUDA device if there is one, else CPU; ``cuda`` -> ``cuda:<local_rank>``.

    An unknown name or an unavailable device is a :class:`DeviceError` (a user error).
    """
    if not valid_device_name(name):
        raise DeviceError(f"device {name!r} is not one of {DEVICE_NAMES}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
        dev = torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
        if dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(dev)!r} requested but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
        return dev
    return torch.device(name)


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
