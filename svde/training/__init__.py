"""Training: the loop, optimisers and schedules, distributed helpers and run logging.

The names below load their module on first use (PEP 562), so that importing one submodule
(e.g. :mod:`svde.training.optim`) does not import the trainer and everything it needs. The config
(a layer below) imports nothing from here: it checks optimiser and schedule names against its own
``OPTIMIZER_NAMES`` and ``SCHEDULE_NAMES``, which a test keeps equal to this package's registries.

Example:
    >>> from svde.training import train, TrainingError
    >>> callable(train), TrainingError.__module__
    (True, 'svde.training.errors')
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"OPTIMIZERS": "optim", "SCHEDULES": "optim", "build_optimizer": "optim", "build_scheduler": "optim",
          "RESUME_SAFE": "checkpoints", "resume_config": "checkpoints", "TrainingError": "errors",
          "train": "trainer"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
