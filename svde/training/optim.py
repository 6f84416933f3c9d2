"""Optimisers and learning-rate schedules by name (the paper uses Ranger, lr 1e-3, no schedule).

Example:
    >>> import torch
    >>> from svde.config import OptimConfig
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = build_optimizer(net.parameters(), OptimConfig(name="adamw", lr=0.01))
    >>> sched = build_scheduler(opt, OptimConfig(schedule="cosine", warmup_steps=2), total_steps=10)
    >>> type(opt).__name__, round(sched.get_last_lr()[0], 4)
    ('AdamW', 0.005)
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Protocol

import torch

from svde.errors import unknown_name


class OptimSettings(Protocol):
    """What the builders read from a config (``svde.config.OptimConfig`` is one, whose
    ``OPTIMIZER_NAMES`` and ``SCHEDULE_NAMES`` are the keys of :data:`OPTIMIZERS` and
    :data:`SCHEDULES`: the config checks names without importing this layer)."""

    name: str
    lr: float
    weight_decay: float
    schedule: str
    warmup_steps: int
    min_lr_ratio: float


def _ranger(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # Imported here: torch-optimizer is only needed when Ranger is chosen. Its
    # ``Lookahead.state_dict()`` is broken, but ``Ranger`` keeps its lookahead ("slow")
    # weights in the ordinary per-parameter state, so the standard state_dict round-trips.
    import torch_optimizer

    # Ranger's step() uses a deprecated addcmul_ overload; the warning is harmless and would
    # otherwise be printed by every run.
    warnings.filterwarnings("ignore", message="This overload of addcmul_ is deprecated", category=UserWarning)
    return torch_optimizer.Ranger(params, lr=lr, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "ranger": _ranger,
    "adam": lambda params, lr, weight_decay: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
    "adamw": lambda params, lr, weight_decay: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
    "sgd": lambda params, lr, weight_decay: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay),
}


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimSettings) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.name`` (one of :data:`OPTIMIZERS`)."""
    if cfg.name not in OPTIMIZERS:
        raise unknown_name("optimizer", cfg.name, OPTIMIZERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return OPTIMIZERS[cfg.name](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _constant(progress: float) -> float:
    return 1.0


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(progress: float) -> float:
    return 1.0 - progress


# schedule name -> decay factor in [0, 1] as a function of progress in [0, 1] after warm-up.
SCHEDULES: dict[str, Callable[[float], float]] = {"constant": _constant, "cosine": _cosine, "linear": _linear}


def lr_factor(step: int, cfg: OptimSettings, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step``: linear warm-up, then the schedule.

    Example:
        >>> from svde.config import OptimConfig
        >>> lr_factor(5, OptimConfig(schedule="linear", warmup_steps=0), total_steps=10)
        0.5
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps  # the first step already moves the weights
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * SCHEDULES[cfg.schedule](progress)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimSettings, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following :func:`lr_factor` (its state goes in checkpoints)."""
    if cfg.schedule not in SCHEDULES:
        raise unknown_name("lr schedule", cfg.schedule, SCHEDULES)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, total_steps))
