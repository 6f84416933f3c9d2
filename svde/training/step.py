"""One optimisation step: :func:`train_step`, with the guards that keep a run's state finite.

A step whose loss, gradient norm or BatchNorm statistics are not finite, or whose batch holds
no valid depth pixel, is skipped on every rank alike: its BatchNorm running statistics are put
back as they were, and no weight changes. Too many skipped steps in a row, non-finite weights
after an update, or what the losses cannot see (they are invariant to the prediction's scale and
shift): a prediction beyond ``train.diverge_output_bound`` or weights whose global norm outgrew
``train.diverge_norm_factor`` x its start (:class:`~svde.training.state.DivergenceMonitor`),
stop the run with a :class:`~svde.training.errors.TrainingError` that names the last good
checkpoint.

Example (one step of a fresh model on two synthetic samples):
    >>> import math
    >>> from pathlib import Path
    >>> from svde.config import build_config
    >>> from svde.data import SyntheticDataset, collate
    >>> from svde.training.distributed import DistContext
    >>> cfg = build_config({"optim": {"name": "adamw"}})
    >>> state = TrainState.build(cfg, torch.device("cpu"))
    >>> samples = SyntheticDataset(length=2, height=64, width=64)
    >>> result = train_step(state, collate([samples[0], samples[1]]), cfg, DistContext(), Checkpointer(Path("run"), cfg))
    >>> state.step, result.images, math.isfinite(result.loss)
    (1, 2, True)
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from svde import losses  # looked up per call: tests replace losses.mixture_loss
from svde.config import Config
from svde.data.colour import finish_batch
from svde.models.checkpoint import nonfinite_tensors
from svde.training.checkpoints import ADVICE, Checkpointer
from svde.training.distributed import DistContext, all_reduce_mean
from svde.training.errors import TrainingError
from svde.training.state import TrainState, nonfinite_flag, parameter_norm

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    """What one step did: the losses and gradient norm averaged over ranks, the learning rate it
    used, the number of images (all ranks), for image grids this rank's batch and prediction, and
    what the divergence checks saw (the weights' norm, the prediction's largest magnitude)."""

    loss: float
    si: float
    ssi: float
    grad_norm: float
    lr: float
    images: int
    batch: dict[str, Any]
    pred: torch.Tensor
    param_norm: float = math.nan  # the weights' global norm after the update
    pred_absmax: float = math.nan  # the largest |log-disparity| of the prediction (mean over ranks)


def _losses(state: TrainState, batch: dict[str, Any], cfg: Config, device: torch.device) -> tuple[torch.Tensor, dict]:
    """Forward pass and eq. 5 loss terms; a NaN/inf prediction gives NaN terms (see below)."""
    image = batch["image"]
    autocast = torch.autocast(device.type, dtype=state.amp_dtype) if state.amp_dtype else contextlib.nullcontext()
    with autocast:
        pred = state.model(image)
    try:  # the losses sort and normalise: always in float32
        terms = losses.mixture_loss(pred.float(), batch["target"], batch["mask"], batch["depth_type"],
                             si_weight=cfg.loss.si_weight, ssi_weight=cfg.loss.ssi_weight, si_types=cfg.loss.si_types,
                             si_reduction=cfg.loss.si_reduction)
    except FloatingPointError as exc:
        # A NaN/inf prediction (e.g. an fp16 overflow). Backward still runs, so that DDP ranks
        # stay in step, on a NaN loss that makes every rank skip this update.
        log.warning("step %d: %s", state.step + 1, exc)
        nan = pred.float().sum() * float("nan")
        terms = {"loss": nan, "si": nan.detach(), "ssi": nan.detach()}
    return pred, terms


def train_step(state: TrainState, batch: dict[str, Any], cfg: Config, ctx: DistContext,
               checkpoints: Checkpointer) -> StepResult | None:
    """One step on ``batch``; ``None`` when the step was skipped (nothing changed but the counter)."""
    device = ctx.device
    batch = finish_batch(batch, device)  # on the device; deferred colour jitter and normalisation applied there
    # The forward pass updates the BatchNorm running statistics: keep a copy to put back if this
    # step turns out unusable (a NaN batch must not poison them).
    bn_before = [b.clone() for b in state.bn_buffers]
    pred, terms = _losses(state, batch, cfg, device)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(terms["loss"]).backward()
    state.scaler.unscale_(state.optimizer)
    # DDP averages gradients, so this norm (and the skip decision) is the same on every rank; a
    # non-finite loss on any rank makes it non-finite everywhere.
    grad_norm = torch.nn.utils.clip_grad_norm_(state.raw_model.parameters(), cfg.optim.grad_clip or math.inf)
    bn_bad = nonfinite_flag(state.bn_buffers, device)  # travels in the all-reduce below: no sync of its own
    # Saturated outputs: the losses cannot see them (they are invariant to the scale and shift of
    # the prediction). Any rank's is every rank's (a flag, averaged: > 0 on all ranks alike).
    absmax = pred.detach().float().abs().max()
    bound = state.monitor.output_bound
    saturated = (absmax > bound).float() if bound is not None else torch.zeros((), device=device)
    values = all_reduce_mean(torch.stack([terms["loss"].detach().float(), terms["si"].detach().float(),
                                          terms["ssi"].detach().float(), grad_norm.float(), bn_bad,
                                          batch["mask"].sum().float(), saturated, absmax]), ctx)
    loss, si, ssi, norm, bn_bad_v, valid, saturated_v, absmax_v = values.tolist()  # one sync for the step's checks

    nonfinite = not math.isfinite(loss) or (not math.isfinite(norm) and cfg.train.amp != "fp16") or bn_bad_v > 0
    if nonfinite or valid == 0:  # fp16 gradient overflow is the scaler's business, not an error
        _skip(state, bn_before, nonfinite, loss, norm, cfg, checkpoints)
        return None
    state.skipped_run = 0
    if saturated_v > 0:  # stop before the update: the weights stay those of the last step
        problem = (state.monitor.output_problem(float(absmax), "a training prediction")  # this rank's, not the mean
                   or "a training prediction of another process exceeded train.diverge_output_bound")
        raise TrainingError(f"step {state.step + 1}: {problem}: the run diverged. {checkpoints.last_good(state)}. "
                            f"{ADVICE}")
    lr = state.lr  # the rate this step uses (logged)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.step += 1
    # One pass over the weights for both checks: their norm is finite exactly when they all are.
    # The weights are the same on every rank (DDP), so is their norm and this decision.
    param_norm = parameter_norm(state.params)
    if not math.isfinite(param_norm):
        bad = nonfinite_tensors(dict(state.raw_model.named_parameters()))
        what = (f"made {len(bad)} weight tensor(s) non-finite (e.g. {', '.join(bad[:3])})" if bad
                else "made the weights' norm overflow float32")
        raise TrainingError(f"step {state.step}: the update {what}: the run diverged. "
                            f"{checkpoints.last_good(state)}. {ADVICE}")
    problem = state.monitor.weights_problem(param_norm)
    if problem is not None:
        raise TrainingError(f"step {state.step}: {problem}: the run diverged. {checkpoints.last_good(state)}. {ADVICE}")
    return StepResult(loss, si, ssi, norm, lr, batch["image"].shape[0] * ctx.world_size, batch, pred.detach(),
                      param_norm, absmax_v)


def _skip(state: TrainState, bn_before: list[torch.Tensor], nonfinite: bool, loss: float, norm: float,
          cfg: Config, checkpoints: Checkpointer) -> None:
    """Undo what the skipped step touched; stop after ``train.max_nonfinite`` skips in a row."""
    with torch.no_grad():
        for buffer, kept in zip(state.bn_buffers, bn_before):
            buffer.copy_(kept)
    state.skipped_run += 1
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.update()
    reason = (f"non-finite loss ({loss}), gradient norm ({norm}) or BatchNorm statistics" if nonfinite
              else "no valid depth pixel in the batch (every mask is empty)")
    limit = cfg.train.max_nonfinite
    warnings.warn(f"step {state.step + 1}: {reason}; step skipped ({state.skipped_run} in a row, stop at {limit})")
    if state.skipped_run >= limit:
        what = "non-finite losses/gradients" if nonfinite else "batches without valid depth"
        raise TrainingError(f"{state.skipped_run} consecutive {what} at step {state.step + 1}: stopping. "
                            f"{checkpoints.last_good(state)}. {ADVICE}")
