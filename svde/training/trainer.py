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
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from svde.config import Config, DatasetEntry
from svde.data import build_dataset
from svde.data.mixing import MixedDataset, MixedSampler, collate
from svde.data.transforms import Compose, ToUTS, ToUTSS, build_train_transform
from svde.models import build_model, read_checkpoint, save_checkpoint
from svde.training.distributed import (DistContext, all_gather_objects, all_reduce_mean, barrier, cleanup,
                                      init_distributed)
from svde.training.optim import build_optimizer, build_scheduler
from svde.errors import RunFailed


class TrainingError(RunFailed):
    """The run cannot go on (non-finite losses, a bad resume folder, ...)."""


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


def build_train_loader(cfg: Config, ctx: DistContext) -> DataLoader:
    """The weighted training mixture as a loader of collated batches, this process's share."""
    datasets = [build_dataset(e.name, e.root, e.split, transform=build_train_transform_for(cfg, e), **e.options)
                for e in cfg.data.train]
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


# ---- the loop --------------------------------------------------------------------------------
def train(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (``resume``: continue from ``run_dir/last.pt``).

    Returns a summary: ``run_dir``, ``last``/``best`` checkpoint paths, ``tb_dir``, ``steps``,
    ``val`` (the first and last validation results) -- on every rank, but files are rank 0's.
    """
    run_dir = Path(run_dir)
    ctx = init_distributed(cfg.train.device)
    try:
        return _train(cfg, run_dir, resume, ctx)
    finally:
        cleanup(ctx)


def _train(cfg: Config, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any]:
    from svde.evaluation import evaluate_model
    from svde.losses import mixture_loss

    device, tcfg = ctx.device, cfg.train
    if tcfg.amp == "fp16" and device.type != "cuda":
        raise TrainingError("train.amp='fp16' needs a CUDA device (use 'bf16' or 'none' on CPU)")
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

    step, best, nonfinite_run = 0, math.inf, 0
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume:
        if not last_path.is_file():
            raise TrainingError(f"--resume {run_dir}: no {last_path.name} there to continue from")
        ckpt = read_checkpoint(last_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best, nonfinite_run = ckpt["step"], ckpt["best"], ckpt["nonfinite_run"]
        rngs = ckpt["rng"]
        if len(rngs) != ctx.world_size:
            warnings.warn(f"{last_path} was written by {len(rngs)} processes, this run has {ctx.world_size}: "
                          "the data order continues, random augmentation streams restart")
        set_rng_state(rngs[ctx.rank % len(rngs)])
    elif last_path.exists():
        raise TrainingError(f"{run_dir} already holds a run ({last_path.name}); use --resume {run_dir} "
                            "to continue it, or another --out folder")
    elif ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    raw_model = model  # the plain module: checkpoints, validation
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg.compile:
        model = torch.compile(model)

    logger = None
    if ctx.is_main:
        from svde.training.logging import RunLogger, depth_grid

        (run_dir / "config.yaml").write_text(_yaml(cfg.to_dict()))
        logger = RunLogger(run_dir, resume_step=step if resume else None)

    def validate_and_checkpoint(at: int, save_last: bool) -> None:
        """Rank 0 validates (if due) and writes last/best; the others wait for it."""
        nonlocal best
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
                if score is not None and math.isfinite(score) and score < best:
                    best = score
                    save_checkpoint(best_path, raw_model, config=cfg.to_dict(), step=at, best=best)
            if save_last:
                save_checkpoint(last_path, raw_model, config=cfg.to_dict(), step=at, best=best,
                                nonfinite_run=nonfinite_run, optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), rng=rngs_now)
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
            values = all_reduce_mean(torch.stack([terms["loss"].detach().float(), terms["si"].detach().float(),
                                                  terms["ssi"].detach().float(), grad_norm.float()]), ctx)
            loss_v, si_v, ssi_v, norm_v = values.tolist()

            if not math.isfinite(loss_v) or (not math.isfinite(norm_v) and tcfg.amp != "fp16"):
                # Skip the update; fp16 gradient overflow is the scaler's business, not an error.
                nonfinite_run += 1
                optimizer.zero_grad(set_to_none=True)
                scaler.update()
                warnings.warn(f"step {step + 1}: non-finite loss ({loss_v}) or gradient norm ({norm_v}); "
                              f"step skipped ({nonfinite_run} in a row, stop at {tcfg.max_nonfinite})")
                if nonfinite_run >= tcfg.max_nonfinite:
                    raise TrainingError(
                        f"{nonfinite_run} consecutive non-finite losses/gradients at step {step + 1}: stopping. "
                        f"Last good checkpoint: {last_path if last_path.exists() else 'none yet'}. Try a lower "
                        f"optim.lr, optim.grad_clip, train.amp=none, or check the data for broken depth maps.")
                continue
            nonfinite_run = 0
            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (logged below)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            images_since += image.shape[0] * ctx.world_size

            if ctx.is_main:
                bar.update(1)
                if step % tcfg.log_every == 0 or step == tcfg.steps:
                    elapsed = time.perf_counter() - tic
                    ips = images_since / max(elapsed, 1e-9)
                    logger.record(step, {"loss": loss_v, "si": si_v, "ssi": ssi_v, "grad_norm": norm_v, "lr": lr,
                                         "images_per_s": ips}, prefix="train/")
                    bar.set_postfix(loss=f"{loss_v:.4f}", img_s=f"{ips:.1f}")
                    tic, images_since = time.perf_counter(), 0
                if tcfg.image_every and (step % tcfg.image_every == 0 or step == 1):
                    logger.image(step, "train/input_gt_pred", depth_grid(image.float().cpu(), target.cpu(), mask.cpu(),
                                                                        pred.detach().float().cpu(), batch["depth_type"]))

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
    summary["best"] = str(best_path) if best_path.exists() else None
    return summary


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
