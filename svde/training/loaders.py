"""What a run reads: the training mixture as a loader (with the per-entry crop, augmentation
and depth conversion) and the validation entry.

Example:
    >>> from svde.config import build_config
    >>> val_entry(build_config({"val": {"dataset": {"name": "synthetic", "split": "val"}}})).name
    'synthetic'
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from svde.config import Config, ConfigError, DatasetEntry
from svde.data import DataError, build_dataset
from svde.data.base import DepthDataset, valid_depth_mask
from svde.data.colour import resolve_colour_place
from svde.data.warp import resolve_warp_place
from svde.data.mixing import MixedDataset, collate
from svde.data.sampling import ResumableSampler, SeededSamples, split_holdout, take_subset
from svde.data.transforms import Compose, ToUTS, ToUTSS, build_train_transform
from svde.evaluation import DATASET_PROTOCOLS, EvalEntry
from svde.training.distributed import DistContext
from svde.types import SCALE_INVARIANT, DepthType


def build_train_transform_for(cfg: Config, entry: DatasetEntry, colour_on_device: bool = False,
                              warp_on_device: bool = False) -> Compose:
    """Crop (plus the paper's augmentation when ``data.augment``), then the entry's depth conversion;
    ``colour_on_device``: the colour jitter and normalisation are left to the batch (:mod:`svde.data.colour`),
    ``warp_on_device``: the resampling too (:mod:`svde.data.warp`)."""
    size, places = (cfg.data.height, cfg.data.width), {"colour_on_device": colour_on_device,
                                                        "warp_on_device": warp_on_device}
    # Without augmentation: only resize to cover and random-crop, so batches share one size.
    crop = build_train_transform(*size, **places) if cfg.data.augment else \
        build_train_transform(*size, scale_range=(1.0, 1.0), rotate_limit=0.0, flip_p=0.0, color_p=0.0, **places)
    convert = {None: None, DepthType.UTS: ToUTS(), DepthType.UTSS: ToUTSS()}[entry.convert]
    return Compose([crop, convert])


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


def build_train_datasets(cfg: Config) -> list[Dataset]:
    """Each ``data.train`` entry's dataset, untransformed: indexed once, for the loader and for
    :func:`val_sets` (listing a large dataset's files can take minutes)."""
    return [build_dataset(e.name, e.root, e.split, **e.options) for e in cfg.data.train]


def _shared(cfg: Config, datasets: list[Dataset] | None) -> list[Dataset]:
    """``datasets`` (one per ``data.train`` entry), or them built now."""
    if datasets is None:
        return build_train_datasets(cfg)
    if len(datasets) != len(cfg.data.train):
        raise ValueError(f"{len(datasets)} datasets given for {len(cfg.data.train)} data.train entries")
    return datasets


def with_transform(dataset: Dataset, transform: Any) -> Dataset:
    """A shallow copy of ``dataset`` (its index shared) that applies ``transform``."""
    out = copy.copy(dataset)
    out.transform = transform
    return out


def augment_places(cfg: Config, device: Any) -> tuple[bool, bool]:
    """Whether the colour jitter and the crop's resampling run on ``device`` (``data.colour_on``,
    ``data.warp_on`` resolved); a :class:`ConfigError` when they cannot (the trainer asks before
    any data is read).

    Example:
        >>> from svde.config import build_config
        >>> augment_places(build_config({}), "cpu"), augment_places(build_config({}), "cuda")
        ((False, False), (True, True))
    """
    colour = resolve_colour_place(cfg.data.colour_on, device)
    try:
        warp = resolve_warp_place(cfg.data.warp_on, colour, device)
    except ValueError as exc:  # data.warp_on: device with data.colour_on: auto, which is "workers" on a CPU
        raise ConfigError(str(exc)) from None
    return colour == "device", warp == "device"


def build_train_loader(cfg: Config, ctx: DistContext, datasets: list[Dataset] | None = None) -> DataLoader:
    """The weighted training mixture as a loader of collated batches, this process's share (with
    deferred colour (and resampling) when ``data.colour_on`` (``data.warp_on``) resolves to the device:
    pass them through :func:`svde.data.colour.finish_batch`). ``datasets``: :func:`build_train_datasets`'
    result, to share its index (built here when None)."""
    colour, warp = augment_places(cfg, ctx.device)
    datasets = [with_transform(ds, build_train_transform_for(cfg, e, colour, warp))
                for e, ds in zip(cfg.data.train, _shared(cfg, datasets))]
    for i, ds in enumerate(datasets):
        check_depth_present(ds, f"data.train.{i}")
    depth_types = [e.convert or ds.depth_type for e, ds in zip(cfg.data.train, datasets)]  # as trained on
    for entry, ds in zip(cfg.data.train, datasets):
        if entry.convert and ds.depth_type not in SCALE_INVARIANT:
            raise ConfigError(f"data.train entry {entry.name!r}: convert={entry.convert!r} needs "
                              f"{' or '.join(map(str, SCALE_INVARIANT))} depth, but the dataset gives {ds.depth_type!r}")
    datasets = [take_subset(ds, e.subset, e.name) for e, ds in zip(cfg.data.train, datasets)]
    # Validation samples never train (val.holdout; val_sets takes the same ones, untransformed).
    datasets = [split_holdout(ds, cfg.val.holdout, e.name)[0] if holds_out(cfg, depth_type) else ds
                for e, ds, depth_type in zip(cfg.data.train, datasets, depth_types)]
    mixed = MixedDataset(datasets, weights=[e.weight for e in cfg.data.train], epoch_length=cfg.data.epoch_length,
                         seed=cfg.train.seed)
    per_rank, rest = divmod(cfg.data.batch_size, ctx.world_size)
    if rest or per_rank == 0:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} (all processes together) does not split "
                          f"evenly over {ctx.world_size} processes")
    sampler = ResumableSampler(mixed, rank=ctx.rank, world_size=ctx.world_size)
    if len(sampler) < per_rank:
        raise ConfigError(f"data.epoch_length={cfg.data.epoch_length} gives {len(sampler)} samples per process, "
                          f"fewer than one batch of {per_rank}")
    return DataLoader(SeededSamples(mixed, cfg.train.seed), batch_size=per_rank, sampler=sampler, drop_last=True,
                      collate_fn=collate, num_workers=cfg.data.num_workers, pin_memory=ctx.device.type == "cuda")


def holds_out(cfg: Config, depth_type: str) -> bool:
    """Whether a training dataset trained on as ``depth_type`` (after its ``convert``) gives
    ``val.holdout`` samples to validation: only sets whose ground truth is depth (absolute, UTS)
    can be scored; UTSS ones train whole."""
    return cfg.val.holdout > 0 and depth_type in SCALE_INVARIANT


def val_entry(cfg: Config) -> EvalEntry | None:
    """The validation set as the evaluation's one dataset entry (None when validation is off or
    runs on held-out training samples: :func:`val_sets`)."""
    entry = cfg.val.dataset
    if entry is None or cfg.val.every == 0:
        return None
    return EvalEntry.from_dataset(entry, cfg.val.protocol)


def val_sets(cfg: Config, datasets: list[Dataset] | None = None) -> list[tuple[EvalEntry, Dataset, dict]]:
    """What validation scores: ``(entry, dataset, record)`` for each set, built and checked now.

    ``val.dataset``: that one set. ``val.holdout``: for each training dataset whose ground truth
    is depth, the ``val.holdout`` samples that :func:`build_train_loader` keeps out of training,
    read without augmentation, under ``val.protocol`` or the dataset's own (``folder``: no cap).
    ``record`` says which data it is, for ``best.pt``'s ``selected_on``. ``datasets``:
    :func:`build_train_datasets`' result, to share its index (built here when None).
    """
    if cfg.val.every == 0:
        return []
    entry = val_entry(cfg)
    if entry is not None:
        return [(entry, entry.build(), {**entry.to_dict(), "holdout": None})]
    sets = []
    datasets = _shared(cfg, datasets) if cfg.val.holdout else []
    for i, (e, ds) in enumerate(zip(cfg.data.train, datasets)):
        if not holds_out(cfg, e.convert or ds.depth_type):
            continue
        held = split_holdout(take_subset(ds, e.subset, e.name), cfg.val.holdout, e.name)[1]
        protocol = cfg.val.protocol or (e.name if e.name in DATASET_PROTOCOLS else "folder")
        entry = EvalEntry.from_dataset(e, protocol)
        sets.append((entry, held, {**entry.to_dict(), "holdout": cfg.val.holdout, "train_entry": i}))
    if not sets:
        raise ConfigError(f"val.holdout={cfg.val.holdout}: no training dataset has depth ground truth (absolute "
                          "or UTS) to validate on; set val.dataset instead, or val.every=0")
    return sets
