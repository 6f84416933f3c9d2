"""Device names: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``;
and the reduced precisions (:data:`AMP_DTYPES`) that training and benchmarks autocast to.

One rule for every entry point (API, commands, training), checked before any work starts.

Example:
    >>> resolve_device("cpu"), valid_device_name("cuda:1"), valid_device_name("tpu")
    (device(type='cpu'), True, False)
"""

from __future__ import annotations

import re

import torch

from svde.errors import UserError

DEVICE_NAMES = "auto, cpu, cuda, cuda:N, mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# Autocast precision by name (``train.amp``, ``svde benchmark --amp``; "none" or None: fp32).
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(UserError):
    """A device name is not one svde runs on, or the device is not available here."""


def valid_device_name(name: str) -> bool:
    """Whether ``name`` is one of :data:`DEVICE_NAMES` (availability is not checked)."""
    return isinstance(name, str) and bool(_DEVICE.match(name))


def resolve_device(name: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """The device for ``name``, which must exist here; an unknown or unavailable one is a :class:`DeviceError`.

    ``auto`` is CUDA if available, else CPU. Under ``torchrun`` pass the process's
    ``local_rank``: ``auto`` and ``cuda`` then mean ``cuda:<local_rank>``.
    """
    if isinstance(name, torch.device):
        device = name
    elif not valid_device_name(name):
        raise DeviceError(f"device {name!r}: not a device name; expected one of {DEVICE_NAMES}")
    else:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cuda" and local_rank is not None:
            name = f"cuda:{local_rank}"
        device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(name)!r}: CUDA is not available here; use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {str(name)!r}: MPS is not available here; use cpu (or auto)")
    return device
