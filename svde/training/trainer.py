"""The training loop, :func:`train`, readable top to bottom; its parts have their own modules.

* :mod:`svde.training.state`: :class:`~svde.training.state.TrainState` (model, optimiser,
  schedule, counters; what a checkpoint holds), RNG streams, the divergence monitor;
* :mod:`svde.training.step`: :func:`~svde.training.step.train_step`, one guarded step;
* :mod:`svde.training.checkpoints`: the run folder, resuming, ``last.pt`` / ``best.pt``;
* :mod:`svde.training.loaders`: the training mixture and the validation entry;
* :mod:`svde.training.logging`: ``metrics.jsonl``, TensorBoard, image grids.

It runs the same code on a laptop CPU, one GPU, or many processes under ``torchrun``
(DistributedDataParallel; rank 0 logs, validates and writes checkpoints).

Example:
    >>> from svde.config import load_config
    >>> cfg = load_config("configs/quickstart.yaml", ["train.steps=2"])  # doctest: +SKIP
    >>> summary = train(cfg, "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from svde.config import Config, ConfigError, DatasetEntry
from svde.data.base import worker_error
from svde.data.colour import finish_batch
from svde.data.sampling import batches
from svde.data.sampling import take_subset as subset_of
from svde.errors import SvdeError
from svde.evaluation import ZERO_SHOT_DATASETS, evaluate_entry
from svde.evaluation.evaluator import PredictionError
from svde.training.checkpoints import (ADVICE, RESUME_SAFE, Checkpointer, check_resume_config, flatten_config,
                                       resume_config)
from svde.training.distributed import DistContext, all_gather_objects, all_reduce_mean, cleanup, init_distributed
from svde.training.errors import RunFolderError, TrainingError
from svde.training.loaders import (augment_places, build_train_datasets, build_train_loader, build_train_transform_for,
                                   val_sets)
from svde.training.state import TrainState, parameter_norm, rng_state, seed_everything, set_rng_state
from svde.training.step import StepResult, train_step
from svde.types import DepthType

log = logging.getLogger(__name__)

__all__ = ["RESUME_SAFE", "RunFolderError", "TrainingError", "build_train_transform_for", "check_resume_config",
           "flatten_config", "resume_config", "take_subset", "train"]


def take_subset(dataset: Any, entry: DatasetEntry) -> Any:
    """``entry.subset`` of ``dataset``: :func:`svde.data.sampling.take_subset` for a config entry."""
    return subset_of(dataset, entry.subset, entry.name)


def train(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (``resume``: continue from ``run_dir/last.pt``).

    Everything is checked before the first step (config values, device, run folder, data).
    A resumed run must keep the checkpoint's config except for
    :data:`~svde.training.checkpoints.RESUME_SAFE` keys; a folder whose run was killed before its
    first checkpoint starts over. The run stops with a :class:`TrainingError` naming the last
    good checkpoint when it cannot learn: too many non-finite steps in a row, non-finite weights,
    a diverging loss, weights whose norm outgrew its start, saturated predictions
    (``train.diverge_*``), a model that predicts unusable values in eval mode (probed before every
    checkpoint) or cannot be validated; also when a file cannot be written (a full disk). No
    checkpoint is ever written with a NaN/inf tensor or a model that fails the probe; a run that
    stops before its first ``last.pt`` writes its initial state as ``last.pt`` (step 0).

    Returns a summary: ``run_dir``, ``last``/``best`` checkpoint paths, ``tb_dir``, ``steps``,
    ``val`` (the first and last validation results) -- on every rank, but files are rank 0's.
    """
    run_dir = Path(run_dir)
    ctx = init_distributed(cfg.train.device, cfg.train.ddp_timeout_s)
    try:
        return _train(cfg, run_dir, resume, ctx)
    finally:
        cleanup(ctx)


def _train(cfg: Config, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any]:
    tcfg = cfg.train
    if tcfg.amp == "fp16" and ctx.device.type != "cuda":
        raise ConfigError("train.amp='fp16' needs a CUDA device (use 'bf16' or 'none' on CPU)")
    augment_places(cfg, ctx.device)  # data.colour_on / warp_on on this device, before anything is read
    checkpoints = Checkpointer(run_dir, cfg)
    ckpt = checkpoints.open(resume, ctx)  # the folder is checked before anything else is built
    # Same seed on every rank: identical initial weights (DDP would broadcast them anyway); each
    # rank reads its own share of every epoch.
    seed_everything(tcfg.seed)
    # Data first, so that a missing root or empty dataset fails before any model is built.
    datasets = build_train_datasets(cfg)  # indexed once: the loader and the held-out validation share them
    loader = build_train_loader(cfg, ctx, datasets)
    validation = Validation(cfg, ctx, datasets) if ctx.is_main else None
    state = TrainState.build(cfg, ctx.device)
    if ckpt is not None:
        state.restore(ckpt, ctx, checkpoints.last)
    state.wrap(ctx, compile=tcfg.compile)
    state.monitor.start(parameter_norm(state.params))  # the reference of train.diverge_norm_factor
    run = RunLog(cfg, run_dir, state.step, resumed=ckpt is not None) if ctx.is_main else None
    try:
        if run is not None:
            checkpoints.write_config()
        rngs = all_gather_objects(rng_state(), ctx) if state.step == 0 else None  # before any batch is drawn
        # resumes at the batch an uninterrupted run would draw; its first images probe every checkpoint
        stream = batches(loader, state.step)
        first = next_batch(stream)
        state.set_probe(finish_batch(first, ctx.device)["image"], ctx.device)
        stream = itertools.chain([first], stream)
        if state.step == 0:  # the untrained model's score on record; its state kept as the last good one
            checkpoint_and_validate(state, None, checkpoints, validation, run, ctx, save_last=False)
            if ctx.is_main:
                checkpoints.keep_initial(state, rngs)
        state.model.train()
        while state.step < tcfg.steps:
            result = train_step(state, next_batch(stream), cfg, ctx, checkpoints)
            if result is None:  # skipped: nothing changed
                continue
            diverged = state.monitor.update(result.loss)
            if run is not None:
                run.step(state, result, force=diverged)  # a diverged step is logged before the stop
            if diverged:
                raise divergence_error(state, result, cfg, checkpoints)
            save_last = state.step % tcfg.checkpoint_every == 0 or state.step == tcfg.steps
            if save_last or validation_due(cfg, state.step):  # the same on every rank (they meet at a barrier)
                # Every rank's RNG state goes into last.pt, so that a resumed run draws the same numbers.
                rngs = all_gather_objects(rng_state(), ctx) if save_last else None
                checkpoint_and_validate(state, rngs, checkpoints, validation, run, ctx, save_last)
    except TrainingError:
        if ctx.is_main:  # a run that diverged before its first last.pt: the stop message names the initial state
            checkpoints.write_initial(state)
        raise
    finally:  # keep what was logged, even when the run stops on an error
        if run is not None:
            run.close()
    if ctx.is_main and state.saved_step != state.step:
        log.warning("the run ended at step %d but %s is from step %s (the loss was far above its running level)",
                    state.step, checkpoints.last.name, state.saved_step)
    return {"run_dir": str(run_dir), "last": str(checkpoints.last),
            "best": str(checkpoints.best) if checkpoints.best.exists() else None,
            "tb_dir": str(run_dir / "tb"), "steps": tcfg.steps, "val": run.val if run is not None else {}}


def divergence_error(state: TrainState, result: StepResult, cfg: Config, checkpoints: Checkpointer) -> TrainingError:
    """The stop message for a run whose :class:`~svde.training.state.DivergenceMonitor` fired."""
    m = state.monitor
    return TrainingError(
        f"step {state.step}: the loss ({result.loss:.3g}) was above {cfg.train.diverge_factor:g} x its running level "
        f"({m.floor:.3g}) in {m.strikes} of the last {len(m.recent)} steps: the run diverged. "
        f"{checkpoints.last_good(state)}. {ADVICE} (train.diverge_factor / train.diverge_patience set this check)")


def validation_due(cfg: Config, at: int) -> bool:
    """Whether step ``at`` validates: every ``val.every`` steps and at the end (never when off)."""
    validates = cfg.val.dataset is not None or cfg.val.holdout > 0
    return validates and cfg.val.every > 0 and (at % cfg.val.every == 0 or at == cfg.train.steps)


def next_batch(stream: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The next training batch; a dataset's error raised in a DataLoader worker is shown as the
    dataset's own one-line error (not the worker's traceback)."""
    try:
        return next(stream)
    except SvdeError as exc:
        raise worker_error(exc) from None


def agreed(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is True on any (a collective: every rank must call it)."""
    return float(all_reduce_mean(torch.tensor(float(flag), device=ctx.device), ctx)) > 0


def checkpoint_and_validate(state: TrainState, rngs: list[dict[str, Any]] | None, checkpoints: Checkpointer,
                            validation: "Validation | None", run: "RunLog | None", ctx: DistContext,
                            save_last: bool) -> None:
    """At ``state.step``: every rank probes the model (:meth:`TrainState.probe_problem`: a model that
    predicts non-finite or saturated values is never saved, the run stops); then rank 0 validates
    (if due; a better score writes ``best.pt``) and writes ``last.pt``, and the other ranks wait for
    it. A failure of rank 0 (a broken model's validation, a full disk) stops every rank."""
    at = state.step
    problem = state.probe_problem()
    if agreed(problem is not None, ctx):
        raise TrainingError(f"step {at}: {problem or 'the model of another process predicts unusable values'}: "
                            f"the run diverged. {checkpoints.last_good(state)}. {ADVICE}")
    failure: SvdeError | None = None
    if ctx.is_main:
        try:
            if validation is not None and validation_due(validation.cfg, at):
                score = validation.run(state, run, checkpoints)
                if score is not None and math.isfinite(score) and score < state.best and not state.monitor.suspicious:
                    state.best = score
                    checkpoints.save_best(state, at, validation.selected_on)
            if save_last:
                checkpoints.save_last(state, at, rngs)
        except SvdeError as exc:
            failure = exc
        if run is not None:
            run.restart_clock()  # checkpoint and validation time is not training throughput
    if agreed(failure is not None, ctx):  # also the barrier: the other ranks wait for rank 0 here
        raise failure if failure is not None else TrainingError(f"step {at}: the main process stopped the run")


class Validation:
    """Periodic validation on ``cfg.val`` through the one evaluation path (``evaluate_entry``):
    one set, or the held-out samples of the training mixture (:func:`~svde.training.loaders.val_sets`)."""

    def __init__(self, cfg: Config, ctx: DistContext, datasets: list | None = None) -> None:
        self.cfg, self.device = cfg, ctx.device
        chosen_on = [cfg.val.dataset] if cfg.val.dataset is not None else cfg.data.train if cfg.val.holdout else []
        for entry in chosen_on:
            if entry.name in ZERO_SHOT_DATASETS:
                log.warning("validating on %s (split %s), a set the paper evaluates zero-shot: best.pt will be "
                            "selected on it, so its score there is not a zero-shot result", entry.name, entry.split)
        self.sets = val_sets(cfg, datasets)  # built once, checked early
        names = [entry.name for entry, _, _ in self.sets]
        self.labels = [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]
        # What best.pt was chosen on: svde eval / paper-table warn when asked to evaluate it.
        self.selected_on = {"metric": cfg.val.metric, "datasets": [record for _, _, record in self.sets]}

    def run(self, state: TrainState, run: "RunLog", checkpoints: Checkpointer) -> float | None:
        """Evaluate ``state.raw_model`` (UTS alignment) on every set, log it, return the ``val.metric``
        score (the mean over the sets). A model whose predictions cannot be scored (non-finite, or
        beyond what the alignment can represent) has diverged: a :class:`TrainingError`."""
        v = self.cfg.val
        saved_rng = rng_state()  # validation must not shift the training's random streams
        scores = []
        try:
            for entry, dataset, _ in self.sets:
                results = evaluate_entry(state.raw_model, entry, dataset=dataset, modes=(DepthType.UTS,),
                                         short_side=v.short_side, max_images=v.max_images, batch_size=v.batch_size,
                                         device=self.device)
                scores.append(results[DepthType.UTS])
        except PredictionError as exc:
            raise TrainingError(f"step {state.step}: validation on {entry.name}: {exc}: the run diverged. "
                                f"{checkpoints.last_good(state)}. {ADVICE}") from None
        finally:
            set_rng_state(saved_rng)
        combined = scores[0] if len(scores) == 1 else mean_scores(scores, self.labels)
        run.validation(state.step, combined)
        return combined.get(v.metric)


def mean_scores(scores: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Several sets' metrics as one record: each metric's mean over the sets (None if any set has
    none), plus every set's own value as ``<label>/<metric>``.

    Example:
        >>> mean_scores([{"rel": 0.2}, {"rel": 0.4}], ["a", "b"])
        {'rel': 0.30000000000000004, 'a/rel': 0.2, 'b/rel': 0.4}
    """
    out: dict[str, Any] = {}
    for key in scores[0]:
        values = [s.get(key) for s in scores]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
            out[key] = math.fsum(values) / len(values)
        elif all(x is None or isinstance(x, (int, float)) for x in values):
            out[key] = None
    for label, s in zip(labels, scores):
        out.update({f"{label}/{k}": x for k, x in s.items() if isinstance(x, (int, float)) or x is None})
    return out


class RunLog:
    """Rank 0's view of a run: progress bar, ``metrics.jsonl`` / TensorBoard, image grids, and the
    first and last validation results for the summary."""

    def __init__(self, cfg: Config, run_dir: Path, step: int, resumed: bool) -> None:
        from tqdm import tqdm

        from svde.training.logging import RunLogger  # TensorBoard: a heavy import, rank 0 only

        self.cfg = cfg
        self.logger = RunLogger(run_dir, resume_step=step if resumed else None)
        self.bar = tqdm(total=cfg.train.steps, initial=step, desc=cfg.name, dynamic_ncols=True)
        self.val: dict[str, Any] = {}
        self.tic, self.images = time.perf_counter(), 0

    def step(self, state: TrainState, result: StepResult, force: bool = False) -> None:
        """Progress, and every ``train.log_every`` steps the losses and throughput."""
        from svde.training.logging import depth_grid

        tcfg, step = self.cfg.train, state.step
        self.bar.update(1)
        self.images += result.images
        if step % tcfg.log_every == 0 or step == tcfg.steps or force:
            ips = self.images / max(time.perf_counter() - self.tic, 1e-9)
            self.logger.record(step, {"loss": result.loss, "si": result.si, "ssi": result.ssi,
                                      "grad_norm": result.grad_norm, "lr": result.lr, "images_per_s": ips,
                                      "param_norm": result.param_norm, "pred_absmax": result.pred_absmax},
                               prefix="train/")
            self.bar.set_postfix(loss=f"{result.loss:.4f}", img_s=f"{ips:.1f}")
            self.tic, self.images = time.perf_counter(), 0
        if tcfg.image_every and (step % tcfg.image_every == 0 or step == 1):
            b = result.batch
            self.logger.image(step, "train/input_gt_pred", depth_grid(
                b["image"].float().cpu(), b["target"].cpu(), b["mask"].cpu(), result.pred.float().cpu(),
                b["depth_type"]))

    def validation(self, at: int, uts: dict[str, Any]) -> None:
        self.logger.record(at, {f"val_{k}": v for k, v in uts.items() if isinstance(v, (int, float))})
        self.val.setdefault("first", {"step": at, **uts})
        self.val["last"] = {"step": at, **uts}

    def restart_clock(self) -> None:
        self.tic = time.perf_counter()

    def close(self) -> None:
        self.bar.close()
        self.logger.close()
