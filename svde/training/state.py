"""A run's explicit state: :class:`TrainState` (model, optimiser, schedule, counters, RNG), the
divergence monitor, and the helpers that keep a checkpoint's random streams exact.

Example:
    >>> m = DivergenceMonitor(factor=10.0, patience=2)
    >>> [m.update(x) for x in (1.0, 0.9, 50.0, 1.0, 60.0)]
    [False, False, False, False, True]
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from svde.config import Config
from svde.device import AMP_DTYPES
from svde.models import build_model
from svde.training.distributed import DistContext
from svde.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as ``torch.load(weights_only=True)``-safe values."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


PROBE_IMAGES = 2  # training images every checkpoint's model must predict usably


class DivergenceMonitor:
    """Judges whether a run has diverged, on the loss and on what the loss cannot see.

    The SI and SSI losses are invariant to the scale and shift of the prediction, so a diverged
    model can keep a loss near its usual level while its weights grow without bound (Adam at
    lr 1 takes the global weight norm from 189 to 8000 in 20 steps, and the eval-mode output to
    1e33, with the loss still near 2). Three checks, each turned off by ``None``:

    * loss (:meth:`update`): the level is an exponential moving average of the loss (``beta``);
      the reference is the lowest level seen so far. A step whose loss exceeds ``factor`` x the
      reference is a strike; the run has diverged when ``patience`` of the last ``2 * patience``
      steps are strikes (a lone outlier batch is tolerated);
    * weights (:meth:`weights_problem`): the global L2 norm of the parameters may not exceed
      ``norm_factor`` x its value at the start of the run (:meth:`start`). Measured (mn_lrn4,
      start 189): the quickstart stays within 1.003 x in 200 steps, the paper's recipe (Ranger,
      lr 1e-3, 384x512) within 1.000001 x in its first 30; Adam at lr 1 reaches 8.1 x after one
      step and 13.4 x after two. The default 10 leaves room for long runs: growing as in the
      quickstart's first 200 steps (the squared norm by 1.0 per step), 150k steps reach 2.3 x;
    * outputs (:meth:`output_problem`): a prediction (log-disparity) may not exceed
      ``output_bound`` in absolute value. Normal runs stay within 2 (quickstart: 1.8); e^50 is a
      depth ratio no camera sees, and float32 ``exp`` overflows beyond 88.

    See the module example.
    """

    def __init__(self, factor: float | None, patience: int, beta: float = 0.9, norm_factor: float | None = None,
                 output_bound: float | None = None) -> None:
        self.factor, self.patience, self.beta = factor, patience, beta
        self.norm_factor, self.output_bound = norm_factor, output_bound
        self.level: float | None = None
        self.floor = math.inf
        self.recent: list[bool] = []  # strike or not, for the last 2 * patience steps
        self.norm0: float | None = None  # the weights' global norm at the start of the run

    def update(self, loss: float) -> bool:
        """Record one step's (finite) loss; True when the run has diverged."""
        if self.factor is None:
            return False
        self.recent = [*self.recent, loss > self.factor * self.floor][-2 * self.patience:]
        self.level = loss if self.level is None else self.beta * self.level + (1 - self.beta) * loss
        self.floor = min(self.floor, self.level)
        return self.strikes >= self.patience

    def start(self, norm: float) -> None:
        """Set the reference weight norm (the run's first one; a resumed run keeps its own)."""
        if self.norm0 is None:
            self.norm0 = norm

    def weights_problem(self, norm: float) -> str | None:
        """Why the weights' global norm ``norm`` means divergence, or None."""
        if not math.isfinite(norm):
            return f"the weights' global norm is {norm}"
        if self.norm_factor is None or self.norm0 is None or not norm > self.norm_factor * self.norm0:
            return None
        return (f"the weights' global norm grew to {norm:.4g}, {norm / self.norm0:.3g} x its value at the start "
                f"({self.norm0:.4g}; the limit is train.diverge_norm_factor={self.norm_factor:g} x)")

    def output_problem(self, absmax: float, where: str = "a prediction") -> str | None:
        """Why predictions reaching ``absmax`` (max |log-disparity|) mean divergence, or None."""
        if not math.isfinite(absmax):
            return f"{where} holds non-finite values"
        if self.output_bound is None or not absmax > self.output_bound:
            return None
        return (f"{where} reached |log-disparity| {absmax:.4g}, beyond train.diverge_output_bound="
                f"{self.output_bound:g} (a depth ratio of e^{self.output_bound:g})")

    @property
    def strikes(self) -> int:
        """Steps among the last ``2 * patience`` whose loss was far above the running level."""
        return sum(self.recent)

    @property
    def suspicious(self) -> bool:
        """True while a recent loss was far above the running level (the weights may be diverging)."""
        return self.strikes > 0

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "floor": self.floor, "recent": list(self.recent), "norm0": self.norm0}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.level, self.floor, self.recent = state["level"], state["floor"], list(state["recent"])
        self.norm0 = state.get("norm0")  # absent in checkpoints of svde <= 0.2: the resumed run's own start


def parameter_norm(params: Sequence[torch.Tensor]) -> float:
    """The global L2 norm of ``params`` (one number for the whole model)."""
    if not params:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach().float()) for p in params])))


def batchnorm_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """The running statistics a training-mode forward pass updates (BatchNorm buffers)."""
    return [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]


def nonfinite_flag(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """1.0 if a floating-point tensor of ``tensors`` holds NaN or inf, else 0.0: a tensor on
    ``device``, so that it can travel in an all-reduce instead of costing a host sync.

    Example:
        >>> nonfinite_flag([torch.ones(2), torch.tensor([float("nan")])], torch.device("cpu")).item()
        1.0
    """
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return (~torch.stack(flags).all()).float() if flags else torch.zeros((), device=device)


@dataclass
class TrainState:
    """Everything a run carries from one step to the next; :meth:`state_dict` is what
    ``last.pt`` holds besides the weights and the config, :meth:`restore` reads it back.

    ``model`` runs the forward pass (the DDP / compiled wrapper when there is one);
    ``raw_model`` is the plain module (checkpoints, validation, gradient clipping).
    """

    model: nn.Module
    raw_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    monitor: DivergenceMonitor
    amp_dtype: torch.dtype | None = None
    step: int = 0  # optimiser steps done
    best: float = math.inf  # best validation score so far (val.metric, lower is better)
    skipped_run: int = 0  # consecutive skipped steps
    saved_step: int | None = None  # the step of the last last.pt written or resumed from
    params: list[torch.Tensor] = field(default_factory=list)
    bn_buffers: list[torch.Tensor] = field(default_factory=list)
    probe: torch.Tensor | None = None  # a few training images on the device: see probe_problem

    @classmethod
    def build(cls, cfg: Config, device: torch.device) -> "TrainState":
        """A fresh state at step 0: the model (``cfg.model``), its optimiser and schedule."""
        tcfg = cfg.train
        model = build_model(cfg.model.name, encoder_weights=cfg.model.encoder_weights).to(device)
        memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)  # the model converts its inputs to match
        optimizer = build_optimizer(model.parameters(), cfg.optim)
        return cls(model=model, raw_model=model, optimizer=optimizer,
                   scheduler=build_scheduler(optimizer, cfg.optim, tcfg.steps),
                   scaler=torch.amp.GradScaler(device.type, enabled=tcfg.amp == "fp16"),
                   monitor=DivergenceMonitor(tcfg.diverge_factor, tcfg.diverge_patience,
                                             norm_factor=tcfg.diverge_norm_factor,
                                             output_bound=tcfg.diverge_output_bound),
                   amp_dtype=AMP_DTYPES.get(tcfg.amp), params=list(model.parameters()),
                   bn_buffers=batchnorm_buffers(model))

    def wrap(self, ctx: DistContext, compile: bool) -> None:
        """Put the forward pass under DDP and/or ``torch.compile`` (``raw_model`` stays plain)."""
        device = ctx.device
        if ctx.distributed:
            self.model = DistributedDataParallel(self.raw_model,
                                                 device_ids=[device.index] if device.type == "cuda" else None)
        if compile:
            self.model = torch.compile(self.model)

    def state_dict(self, rngs: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The checkpoint entries besides ``model`` and ``config`` (``rngs``: every rank's RNG state)."""
        return {"best": self.best, "nonfinite_run": self.skipped_run, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rngs,
                "divergence": self.monitor.state_dict(), "threads": torch.get_num_threads()}

    def restore(self, ckpt: Mapping[str, Any], ctx: DistContext, source: Path) -> None:
        """Continue from a checkpoint read with :func:`svde.models.read_checkpoint`."""
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best, self.skipped_run = ckpt["step"], ckpt["best"], ckpt["nonfinite_run"]
        self.saved_step = self.step
        if "divergence" in ckpt:
            self.monitor.load_state_dict(ckpt["divergence"])
        rngs = ckpt["rng"]
        if len(rngs) != ctx.world_size:
            log.warning("%s was written by %d processes, this run has %d: the data order continues, random "
                        "augmentation streams restart", source, len(rngs), ctx.world_size)
        set_rng_state(rngs[ctx.rank % len(rngs)])
        threads = ckpt.get("threads")
        if ctx.device.type == "cpu" and threads is not None and threads != torch.get_num_threads():
            log.warning("%s was written by a run on %d CPU threads, this one has %d: it continues, but is no "
                        "longer bit-identical to an uninterrupted run (set the thread count, e.g. "
                        "svde train --threads %d, to keep it)", source, threads, torch.get_num_threads(), threads)

    def set_probe(self, images: torch.Tensor, device: torch.device) -> None:
        """Keep the first :data:`PROBE_IMAGES` of ``images`` (a training batch) for :meth:`probe_problem`."""
        self.probe = images[:PROBE_IMAGES].detach().to(device).clone()

    def probe_problem(self) -> str | None:
        """Why the model, as a checkpoint would hold it, is unusable; None when it is fine (or
        there is no probe yet).

        The model runs as inference runs it: in eval mode (BatchNorm's running statistics), in
        float32, on the probe images. Its prediction must be finite and within the monitor's
        output bound: a diverged model can look fine in training mode (BatchNorm renormalises
        each batch) and still predict 1e33 or NaN from its running statistics.
        """
        if self.probe is None:
            return None
        model, was_training = self.raw_model, self.raw_model.training
        model.eval()
        try:
            with torch.no_grad():
                absmax = float(model(self.probe).float().abs().max())
        finally:
            model.train(was_training)
        return self.monitor.output_problem(absmax, "the model's eval-mode prediction of the probe images")

    @property
    def lr(self) -> float:
        """The learning rate the next optimiser step uses."""
        return self.optimizer.param_groups[0]["lr"]
