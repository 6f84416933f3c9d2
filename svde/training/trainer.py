"""The training loop: one flat function, :func:`train`, readable top to bottom.

It runs the same code on a laptop CPU, one GPU, or many processes under ``torchrun``
(DistributedDataParallel; rank 0 logs, validates and writes checkpoints).

Example:
    >>> from svde.config import load_config
    >>> cfg = load_config("configs/quickstart.yaml", ["train.steps=2"])  # doctest: +SKIP
    >>> summary = train(cfg, "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from svde.atomic import remove_stale_temporaries, write_text
from svde.config import Config, ConfigError, DatasetEntry, build_config, load_config
from svde.data import DataError, build_dataset
from svde.data.base import DepthDataset, valid_depth_mask
from svde.data.mixing import MixedDataset, MixedSampler, collate
from svde.data.transforms import Compose, ToUTS, ToUTSS, build_train_transform
from svde.errors import RunFailed, UserError
from svde.models import build_model, read_checkpoint
from svde.models.checkpoint import NonFiniteStateError, nonfinite_tensors, save_checkpoint
from svde.training.distributed import (DistContext, all_gather_objects, all_reduce_mean, barrier, cleanup,
                                      init_distributed)
from svde.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

# Config keys that may differ from the checkpoint's on --resume: they change how long the run
# goes on, how often it logs, where and how fast it runs, but not what it has learnt so far.
# (train.steps also stretches a decaying lr schedule over the new length.)
RESUME_SAFE = ("name", "train.steps", "train.device", "train.compile", "train.log_every", "train.image_every",
               "train.checkpoint_every", "train.max_nonfinite", "train.diverge_factor", "train.diverge_patience",
               "train.ddp_timeout_s", "data.num_workers", "val.every", "val.batch_size")


class TrainingError(RunFailed):
    """The run cannot go on (non-finite losses, divergence, a bad resume folder, ...)."""


class RunFolderError(UserError):
    """The run folder cannot be written."""


# ---- data ------------------------------------------------------------------------------------
class SeededSamples(Dataset):
    """A :class:`MixedDataset` whose sample at ``(epoch, position)`` is drawn with its own seed.

    The augmentation and depth-type conversions draw from torch's global generator; seeding it
    per sample makes every sample a pure function of ``(seed, epoch, position)``, whatever the
    number of loader workers, so that a resumed run can skip to its place without loading the
    skipped samples and still see exactly the batches of a run that never stopped.
    """

    def __init__(self, mixed: MixedDataset, seed: int) -> None:
        self.mixed, self.seed = mixed, seed

    def __len__(self) -> int:
        return len(self.mixed)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, pos = key
        with torch.random.fork_rng(devices=[]):  # leave the caller's stream untouched
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, pos]).generate_state(1)[0]))
            return self.mixed[key]


class ResumableSampler(Sampler):
    """A :class:`MixedSampler` that can start its current epoch at a given batch.

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> mixed = MixedDataset([SyntheticDataset(length=4, height=32, width=48)], [1.0], epoch_length=6)
        >>> s = ResumableSampler(mixed, rank=0, world_size=1)
        >>> s.set_epoch(2, skip=4); list(s)
        [(2, 4), (2, 5)]
    """

    def __init__(self, mixed: MixedDataset, rank: int, world_size: int) -> None:
        self.inner = MixedSampler(mixed, rank=rank, world_size=world_size)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        return len(self.inner) - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return itertools.islice(iter(self.inner), self.skip, None)


def build_train_transform_for(cfg: Config, entry: DatasetEntry) -> Compose:
    """Crop (plus the paper's augmentation when ``data.augment``), then the entry's depth conversion."""
    size = (cfg.data.height, cfg.data.width)
    # Without augmentation: only resize to cover and random-crop, so batches share one size.
    crop = build_train_transform(*size) if cfg.data.augment else build_train_transform(
        *size, scale_range=(1.0, 1.0), rotate_limit=0.0, flip_p=0.0, color_p=0.0)
    convert = {None: None, "uts": ToUTS(), "utss": ToUTSS()}[entry.convert]
    return Compose([crop, convert])


def take_subset(dataset: Dataset, entry: DatasetEntry) -> Dataset:
    """The ``entry.subset = [start, end]`` slice of ``dataset`` (all of it when ``subset`` is None).

    The samples are put in one fixed shuffled order (seed 0, whatever ``train.seed``: every run
    slices the same order) and positions ``[round(start * n), round(end * n))`` are kept, so
    ``[0, p]`` and ``[p, 1]`` partition the dataset exactly, and a slice of a dataset stored in
    scene order is not just a few scenes.

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> ds = SyntheticDataset(length=10, height=32, width=48)
        >>> len(take_subset(ds, DatasetEntry(subset=[0.0, 0.3]))), len(take_subset(ds, DatasetEntry(subset=[0.3, 1.0])))
        (3, 7)
    """
    if entry.subset is None:
        return dataset
    n = len(dataset)
    start, end = round(entry.subset[0] * n), round(entry.subset[1] * n)
    if start >= end:
        raise TrainingError(f"dataset entry {entry.name!r}: subset {entry.subset} of its {n} samples is empty")
    order = np.random.default_rng(0).permutation(n)
    return Subset(dataset, order[start:end].tolist())


def check_depth_present(dataset: Dataset, where: str, probes: int = 4) -> None:
    """Raise :class:`DataError` if ``probes`` samples spread over ``dataset`` hold no valid depth pixel.

    A dataset whose depth is entirely invalid (a wrong depth scale or encoding, empty masks)
    would otherwise train on a loss of 0. The samples are decoded without the transform, so
    nothing random is drawn.
    """
    if not isinstance(dataset, DepthDataset) or len(dataset) == 0:
        return
    picks = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(probes, len(dataset))).round()})
    files = []
    for i in picks:
        raw = dataset.read(dataset.records[i])
        mask = valid_depth_mask(np.asarray(raw["target"], dtype=np.float32))
        if raw.get("mask") is not None:
            mask &= np.asarray(raw["mask"]).astype(bool)
        if mask.any():
            return
        files.append(str(raw.get("file", i)))
    raise DataError(f"{where} ({dataset.name or type(dataset).__name__}): none of the {len(picks)} samples checked "
                    f"holds a valid depth pixel (every mask is empty; e.g. {files[0]}): check the depth files and "
                    "the dataset's depth options (scale, type)")


def build_train_loader(cfg: Config, ctx: DistContext) -> DataLoader:
    """The weighted training mixture as a loader of collated batches, this process's share."""
    datasets = [build_dataset(e.name, e.root, e.split, transform=build_train_transform_for(cfg, e), **e.options)
                for e in cfg.data.train]
    for i, ds in enumerate(datasets):
        check_depth_present(ds, f"data.train.{i}")
    for entry, ds in zip(cfg.data.train, datasets):
        if entry.convert and ds.depth_type not in ("absolute", "uts"):
            raise TrainingError(f"data.train entry {entry.name!r}: convert={entry.convert!r} needs absolute or uts "
                                f"depth, but the dataset gives {ds.depth_type!r}")
    datasets = [take_subset(ds, e) for e, ds in zip(cfg.data.train, datasets)]
    mixed = MixedDataset(datasets, weights=[e.weight for e in cfg.data.train], epoch_length=cfg.data.epoch_length,
                         seed=cfg.train.seed)
    per_rank, rest = divmod(cfg.data.batch_size, ctx.world_size)
    if rest or per_rank == 0:
        raise TrainingError(f"data.batch_size={cfg.data.batch_size} (all processes together) does not split "
                            f"evenly over {ctx.world_size} processes")
    sampler = ResumableSampler(mixed, rank=ctx.rank, world_size=ctx.world_size)
    if len(sampler) < per_rank:
        raise TrainingError(f"data.epoch_length={cfg.data.epoch_length} gives {len(sampler)} samples per process, "
                            f"fewer than one batch of {per_rank}")
    return DataLoader(SeededSamples(mixed, cfg.train.seed), batch_size=per_rank, sampler=sampler, drop_last=True,
                      collate_fn=collate, num_workers=cfg.data.num_workers, pin_memory=ctx.device.type == "cuda")


def build_val_set(cfg: Config) -> Dataset | None:
    """The held-out set for periodic validation, at its native resolution (the evaluator resizes)."""
    entry = cfg.val.dataset
    if entry is None or cfg.val.every == 0:
        return None
    return take_subset(build_dataset(entry.name, entry.root, entry.split, **entry.options), entry)


def batches(loader: DataLoader, start_step: int) -> Iterator[dict[str, Any]]:
    """Endless stream of batches, epoch after epoch, starting at batch ``start_step``."""
    sampler = loader.sampler
    sampler.set_epoch(0)
    per_epoch = len(sampler) // loader.batch_size  # drop_last
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        sampler.set_epoch(epoch, skip=skip * loader.batch_size)
        yield from loader
        epoch, skip = epoch + 1, 0


# ---- state -----------------------------------------------------------------------------------
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


class DivergenceMonitor:
    """Flags a run whose loss keeps jumping far above its running level.

    The level is an exponential moving average of the loss (``beta``); the reference is the
    lowest level seen so far. A step whose loss exceeds ``factor`` x the reference is a strike.
    The run has diverged when ``patience`` of the last ``2 * patience`` steps are strikes: a
    lone outlier batch is tolerated, a diverged model is caught even when some batches (e.g.
    UTSS ones, whose scale-and-shift-invariant loss stays bounded) still look fine.
    ``factor=None`` turns it off.

    Example:
        >>> m = DivergenceMonitor(factor=10.0, patience=2)
        >>> [m.update(x) for x in (1.0, 0.9, 50.0, 1.0, 60.0)]
        [False, False, False, False, True]
    """

    def __init__(self, factor: float | None, patience: int, beta: float = 0.9) -> None:
        self.factor, self.patience, self.beta = factor, patience, beta
        self.level: float | None = None
        self.floor = math.inf
        self.recent: list[bool] = []  # strike or not, for the last 2 * patience steps

    def update(self, loss: float) -> bool:
        """Record one step's (finite) loss; True when the run has diverged."""
        if self.factor is None:
            return False
        self.recent = [*self.recent, loss > self.factor * self.floor][-2 * self.patience:]
        self.level = loss if self.level is None else self.beta * self.level + (1 - self.beta) * loss
        self.floor = min(self.floor, self.level)
        return self.strikes >= self.patience

    @property
    def strikes(self) -> int:
        """Steps among the last ``2 * patience`` whose loss was far above the running level."""
        return sum(self.recent)

    @property
    def suspicious(self) -> bool:
        """True while a recent loss was far above the running level (the weights may be diverging)."""
        return self.strikes > 0

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "floor": self.floor, "recent": list(self.recent)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.level, self.floor, self.recent = state["level"], state["floor"], list(state["recent"])


def batchnorm_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """The running statistics a training-mode forward pass updates (BatchNorm buffers)."""
    return [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]


def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """True if no floating-point tensor of ``tensors`` holds NaN or inf."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


# ---- resuming --------------------------------------------------------------------------------
def flatten_config(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"dotted.key": value}`` (list items by index).

    Example:
        >>> flatten_config({"train": {"steps": 3}, "data": {"train": [{"name": "synthetic"}]}})
        {'train.steps': 3, 'data.train.0.name': 'synthetic'}
    """
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, list) and data:
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_resume_config(cfg: Config, stored: Mapping[str, Any] | None, source: Path) -> None:
    """Refuse to resume with a config that differs from the checkpoint's outside :data:`RESUME_SAFE`.

    The checkpoint's stored config is what the weights were trained with; a resumed run may
    only change the keys that do not alter it (longer runs, logging cadence, device, ...).
    """
    if stored is None:
        raise TrainingError(f"{source} holds no training config (a converted or exported model): it cannot be "
                            "resumed; start a new run from it instead")
    try:
        before = flatten_config(build_config(stored).to_dict())
    except ConfigError as exc:
        raise TrainingError(f"{source}: its stored config is no longer valid ({exc})") from None
    after = flatten_config(cfg.to_dict())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, "<absent>") != after.get(k, "<absent>"))
    unsafe = [k for k in changed if k not in RESUME_SAFE]
    if unsafe:
        shown = "; ".join(f"{k}: {before.get(k, '<absent>')!r} -> {after.get(k, '<absent>')!r}" for k in unsafe[:8])
        raise ConfigError(f"cannot resume from {source} with a different config in {', '.join(unsafe)} ({shown}); "
                          f"only {', '.join(RESUME_SAFE)} may change on resume. Start a new run (--out) instead")
    for key in changed:
        log.info("resume: %s changed from %r to %r", key, before.get(key), after.get(key))


def resume_config(run_dir: str | Path, overrides: Sequence[str] = (), config: str | Path | None = None) -> Config:
    """The config to continue ``run_dir`` with: its checkpoint's stored config plus ``overrides``.

    ``last.pt``'s config is the source of truth: the folder's ``config.yaml`` is only a copy
    for people to read (missing, empty or edited, it changes nothing). A ``config`` file given
    explicitly replaces the stored config and must agree with it like overrides do (checked by
    :func:`check_resume_config`, again in :func:`train`). A run killed before its first
    checkpoint has no ``last.pt``: its ``config.yaml`` is used, and :func:`train` starts it over.
    """
    run_dir = Path(run_dir)
    last, copy = run_dir / "last.pt", run_dir / "config.yaml"
    if last.is_file():
        stored = read_checkpoint(last).get("config")
        if stored is None:
            check_resume_config(Config(), stored, last)  # raises: nothing to resume with
        if config is not None:
            cfg = load_config(config, overrides)
        else:
            cfg = build_config(stored, overrides)
        if config is None and (not copy.is_file() or copy.stat().st_size == 0):
            log.warning("%s is missing or empty: resuming with the config stored in %s", copy, last)
        check_resume_config(cfg, stored, last)
        return cfg
    if config is None and (not copy.is_file() or copy.stat().st_size == 0):
        raise TrainingError(f"--resume {run_dir}: no last.pt and no config.yaml there: nothing to resume "
                            "(start a new run with --config)")
    return load_config(config if config is not None else copy, overrides)


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=run_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunFolderError(f"run folder {run_dir} is not writable ({exc.strerror or exc})") from None


# ---- the loop --------------------------------------------------------------------------------
def train(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (``resume``: continue from ``run_dir/last.pt``).

    Everything is checked before the first step (config values, device, run folder, data).
    A resumed run must keep the checkpoint's config except for :data:`RESUME_SAFE` keys; a
    folder whose run was killed before its first checkpoint starts over. The run stops with a
    :class:`TrainingError` naming the last good checkpoint when it cannot learn: too many
    non-finite steps in a row, non-finite weights, or a diverging loss (``train.diverge_*``).
    No checkpoint is ever written with a NaN/inf tensor.

    Returns a summary: ``run_dir``, ``last``/``best`` checkpoint paths, ``tb_dir``, ``steps``,
    ``val`` (the first and last validation results) -- on every rank, but files are rank 0's.
    """
    run_dir = Path(run_dir)
    ctx = init_distributed(cfg.train.device, cfg.train.ddp_timeout_s)
    try:
        return _train(cfg, run_dir, resume, ctx)
    finally:
        cleanup(ctx)


def _open_run(cfg: Config, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any] | None:
    """Check the run folder and return the checkpoint to resume from (None: start at step 0)."""
    last_path = run_dir / "last.pt"
    ckpt = None
    if resume:
        if last_path.is_file():
            ckpt = read_checkpoint(last_path)
            check_resume_config(cfg, ckpt.get("config"), last_path)
            bad = nonfinite_tensors({k: ckpt.get(k) for k in ("model", "optimizer")})
            if bad:  # written before svde refused such files
                raise TrainingError(f"{last_path} holds {len(bad)} tensor(s) with NaN/inf (e.g. {', '.join(bad[:3])}): "
                                    "it cannot be resumed; start a new run")
        elif (run_dir / "config.yaml").is_file() or (run_dir / "metrics.jsonl").is_file():
            log.warning("%s has no %s yet (the run stopped before its first checkpoint): starting it over "
                        "from step 0", run_dir, last_path.name)
        else:
            raise TrainingError(f"--resume {run_dir}: no {last_path.name} there to continue from")
    elif last_path.exists():
        raise TrainingError(f"{run_dir} already holds a run ({last_path.name}); use --resume {run_dir} "
                            "to continue it, or another --out folder")
    if ctx.is_main:
        _check_writable(run_dir)
        remove_stale_temporaries(run_dir)  # only this run writes here
    return ckpt


def _train(cfg: Config, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any]:
    from svde.evaluation import evaluate_model
    from svde.losses import mixture_loss

    device, tcfg = ctx.device, cfg.train
    if tcfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp='fp16' needs a CUDA device (use 'bf16' or 'none' on CPU)")
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    ckpt = _open_run(cfg, run_dir, resume, ctx)
    # Same seed on every rank: identical initial weights (DDP would broadcast them anyway);
    # each rank reads its own share of every epoch (ResumableSampler).
    seed_everything(tcfg.seed)

    # Data first, so that a missing root or empty dataset fails before any model is built.
    loader = build_train_loader(cfg, ctx)
    val_set = build_val_set(cfg) if ctx.is_main else None

    model = build_model(cfg.model.name, encoder_weights=cfg.model.encoder_weights).to(device)
    memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)  # the model converts its inputs to match
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, tcfg.steps)
    scaler = torch.amp.GradScaler(device.type, enabled=tcfg.amp == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tcfg.amp)
    monitor = DivergenceMonitor(tcfg.diverge_factor, tcfg.diverge_patience)

    step, best, skipped_run = 0, math.inf, 0
    saved_step: int | None = None  # the step of the last last.pt written (or resumed from)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best, skipped_run = ckpt["step"], ckpt["best"], ckpt["nonfinite_run"]
        saved_step = step
        if "divergence" in ckpt:
            monitor.load_state_dict(ckpt["divergence"])
        rngs = ckpt["rng"]
        if len(rngs) != ctx.world_size:
            warnings.warn(f"{last_path} was written by {len(rngs)} processes, this run has {ctx.world_size}: "
                          "the data order continues, random augmentation streams restart")
        set_rng_state(rngs[ctx.rank % len(rngs)])
        threads = ckpt.get("threads")
        if device.type == "cpu" and threads is not None and threads != torch.get_num_threads():
            log.warning("%s was written by a run on %d CPU threads, this one has %d: it continues, but is no "
                        "longer bit-identical to an uninterrupted run (set the thread count, e.g. "
                        "OMP_NUM_THREADS=%d, to keep it)", last_path, threads, torch.get_num_threads(), threads)

    raw_model = model  # the plain module: checkpoints, validation
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg.compile:
        model = torch.compile(model)
    params = list(raw_model.parameters())
    bn_buffers = batchnorm_buffers(raw_model)

    def last_good() -> str:
        if saved_step is None:
            return "Last good checkpoint: none (the run has not written one yet)"
        return f"Last good checkpoint: {last_path} (step {saved_step})"

    advice = ("Try a lower optim.lr, optim.grad_clip or train.amp=none in a new run (--out), or check the data "
              "for broken depth maps.")

    logger = None
    if ctx.is_main:
        from svde.training.logging import RunLogger, depth_grid

        write_text(run_dir / "config.yaml", _yaml(cfg.to_dict()))
        logger = RunLogger(run_dir, resume_step=step if ckpt is not None else None)

    def save(path: Path, at: int, **extra: Any) -> None:
        try:
            save_checkpoint(path, raw_model, config=cfg.to_dict(), step=at, **extra)
        except NonFiniteStateError as exc:
            raise TrainingError(f"step {at}: the run diverged: {exc}. {last_good()}. {advice}") from None

    def validate_and_checkpoint(at: int, save_last: bool) -> None:
        """Rank 0 validates (if due) and writes last/best; the others wait for it."""
        nonlocal best, saved_step
        if ctx.is_main:
            if val_set is not None and (at % cfg.val.every == 0 or at == tcfg.steps):
                saved_rng = rng_state()  # validation must not shift the training's random streams
                # The weights change between validations, so the model's BatchNorm-folded inference
                # copy would be rebuilt every time: for a small validation set that costs more than
                # it saves.
                raw_model.fast_inference = False
                results = evaluate_model(raw_model, val_set, protocol=cfg.val.protocol or cfg.val.dataset.name,
                                         modes=("uts",), batch_size=cfg.val.batch_size, device=device,
                                         max_images=cfg.val.max_images, short_side=cfg.val.short_side)
                raw_model.fast_inference = True
                set_rng_state(saved_rng)
                uts = results["uts"]
                logger.record(at, {f"val_{k}": v for k, v in uts.items() if isinstance(v, (int, float))})
                summary["val"].setdefault("first", {"step": at, **uts})
                summary["val"]["last"] = {"step": at, **uts}
                score = uts.get(cfg.val.metric)
                if score is not None and math.isfinite(score) and score < best and not monitor.suspicious:
                    best = score
                    save(best_path, at, best=best)
            if save_last and monitor.suspicious:
                log.warning("step %d: the loss is far above its running level; %s is not updated (%s)", at,
                            last_path.name, last_good())
            elif save_last:
                save(last_path, at, best=best, nonfinite_run=skipped_run, optimizer=optimizer.state_dict(),
                     scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), rng=rngs_now,
                     divergence=monitor.state_dict(), threads=torch.get_num_threads())
                saved_step = at
        barrier(ctx)

    summary: dict[str, Any] = {"run_dir": str(run_dir), "last": str(last_path), "best": str(best_path),
                               "tb_dir": str(run_dir / "tb"), "steps": tcfg.steps, "val": {}}
    rngs_now = None
    bar = None
    try:
        if step == 0:
            validate_and_checkpoint(0, save_last=False)  # the untrained model's score, on record

        model.train()
        if ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=tcfg.steps, initial=step, desc=cfg.name, dynamic_ncols=True)
        stream = batches(loader, step)
        tic, images_since = time.perf_counter(), 0
        while step < tcfg.steps:
            batch = next(stream)
            image = batch["image"].to(device, non_blocking=True)
            target = batch["target"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)

            # The forward pass updates the BatchNorm running statistics: keep a copy to put back
            # if this step turns out unusable (a NaN batch must not poison them).
            bn_before = [b.clone() for b in bn_buffers]
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with autocast:
                pred = model(image)
            # The losses sort and normalise: always in float32.
            try:
                terms = mixture_loss(pred.float(), target, mask, batch["depth_type"], si_weight=cfg.loss.si_weight,
                                     ssi_weight=cfg.loss.ssi_weight, si_types=cfg.loss.si_types)
            except FloatingPointError as exc:
                # A NaN/inf prediction (e.g. an fp16 overflow). Backward still runs, so that DDP
                # ranks stay in step, on a NaN loss that makes every rank skip this update below.
                warnings.warn(f"step {step + 1}: {exc}")
                nan = pred.float().sum() * float("nan")
                terms = {"loss": nan, "si": nan.detach(), "ssi": nan.detach()}
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["loss"]).backward()
            scaler.unscale_(optimizer)
            # DDP averages gradients, so this norm (and the skip decision) is the same on every rank;
            # a non-finite loss on any rank makes it non-finite everywhere.
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.optim.grad_clip or math.inf)
            bn_bad = torch.tensor(0.0 if all_finite(bn_buffers) else 1.0, device=device)
            values = all_reduce_mean(torch.stack([terms["loss"].detach().float(), terms["si"].detach().float(),
                                                  terms["ssi"].detach().float(), grad_norm.float(), bn_bad,
                                                  mask.sum().float()]), ctx)
            loss_v, si_v, ssi_v, norm_v, bn_bad_v, valid_v = values.tolist()

            nonfinite = not math.isfinite(loss_v) or (not math.isfinite(norm_v) and tcfg.amp != "fp16") or bn_bad_v > 0
            if nonfinite or valid_v == 0:
                # Skip the update; fp16 gradient overflow is the scaler's business, not an error.
                with torch.no_grad():
                    for buffer, kept in zip(bn_buffers, bn_before):
                        buffer.copy_(kept)
                skipped_run += 1
                optimizer.zero_grad(set_to_none=True)
                scaler.update()
                reason = (f"non-finite loss ({loss_v}), gradient norm ({norm_v}) or BatchNorm statistics"
                          if nonfinite else "no valid depth pixel in the batch (every mask is empty)")
                warnings.warn(f"step {step + 1}: {reason}; step skipped ({skipped_run} in a row, stop at "
                              f"{tcfg.max_nonfinite})")
                if skipped_run >= tcfg.max_nonfinite:
                    what = "non-finite losses/gradients" if nonfinite else "batches without valid depth"
                    raise TrainingError(f"{skipped_run} consecutive {what} at step {step + 1}: stopping. "
                                        f"{last_good()}. {advice}")
                continue
            skipped_run = 0
            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (logged below)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            images_since += image.shape[0] * ctx.world_size
            if not all_finite(params):
                bad = nonfinite_tensors(dict(raw_model.named_parameters()))
                raise TrainingError(f"step {step}: the update made {len(bad)} weight tensor(s) non-finite (e.g. "
                                    f"{', '.join(bad[:3])}): the run diverged. {last_good()}. {advice}")
            diverged = monitor.update(loss_v)

            if ctx.is_main:
                bar.update(1)
                if step % tcfg.log_every == 0 or step == tcfg.steps or diverged:
                    elapsed = time.perf_counter() - tic
                    ips = images_since / max(elapsed, 1e-9)
                    logger.record(step, {"loss": loss_v, "si": si_v, "ssi": ssi_v, "grad_norm": norm_v, "lr": lr,
                                         "images_per_s": ips}, prefix="train/")
                    bar.set_postfix(loss=f"{loss_v:.4f}", img_s=f"{ips:.1f}")
                    tic, images_since = time.perf_counter(), 0
                if tcfg.image_every and (step % tcfg.image_every == 0 or step == 1):
                    logger.image(step, "train/input_gt_pred", depth_grid(image.float().cpu(), target.cpu(), mask.cpu(),
                                                                        pred.detach().float().cpu(), batch["depth_type"]))
            if diverged:
                raise TrainingError(
                    f"step {step}: the loss ({loss_v:.3g}) was above {tcfg.diverge_factor:g} x its running level "
                    f"({monitor.floor:.3g}) in {monitor.strikes} of the last {len(monitor.recent)} steps: the run "
                    f"diverged. {last_good()}. "
                    f"{advice} (train.diverge_factor / train.diverge_patience set this check)")

            save_last = step % tcfg.checkpoint_every == 0 or step == tcfg.steps
            validating = cfg.val.every and (step % cfg.val.every == 0 or step == tcfg.steps)
            if save_last or validating:
                rngs_now = all_gather_objects(rng_state(), ctx) if save_last else None
                validate_and_checkpoint(step, save_last)
                tic = time.perf_counter()  # validation time is not training throughput
    finally:  # keep what was logged, even when the run stops on an error
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    if ctx.is_main and saved_step != step:
        log.warning("the run ended at step %d but %s is from step %s (the loss was far above its running level)",
                    step, last_path.name, saved_step)
    summary["best"] = str(best_path) if best_path.exists() else None
    return summary


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
