"""Mixing several datasets with per-dataset weights, plus batching.

:class:`MixedDataset` draws a fixed-length epoch from several datasets: each epoch's plan (which
dataset, which sample) is a pure function of ``(seed, epoch)``. Dataset ``k`` gets exactly
``round(epoch_length * w_k / sum(w))`` slots (largest-remainder rounding), and walks through its
own samples in a fresh random order per epoch, so small datasets repeat and large ones are
subsampled without repeats within an epoch.

:class:`MixedSampler` hands each DDP rank a disjoint share of the epoch: rank ``r`` of ``W`` gets
plan positions ``r, r + W, ...`` (the last ``epoch_length % W`` positions are dropped so every
rank runs the same number of steps). It yields ``(epoch, position)`` keys, so the plan is right
even in persistent DataLoader workers that never see :meth:`MixedDataset.set_epoch`.

Example:
    >>> from svde.data.synthetic import SyntheticDataset
    >>> a = SyntheticDataset(length=10, height=32, width=48)
    >>> b = SyntheticDataset(length=10, height=32, width=48, depth_type="utss")
    >>> mixed = MixedDataset([a, b], weights=[3, 1], epoch_length=8)
    >>> [k for k, _ in mixed.plan(0)].count(0)
    6
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from svde.data.base import DataError
from svde.data.warp import pack_sources


class MixedDataset(Dataset):
    """Several datasets mixed by weight into epochs of ``epoch_length`` samples.

    Args:
        datasets: map-style datasets returning samples in the common contract.
        weights: one non-negative weight per dataset (not all zero); proportions of each epoch.
        epoch_length: samples per epoch (``len(self)``).
        seed: base seed of the plans.
        skip_corrupt: on a :class:`DataError` while reading a sample, warn, count it in
            :attr:`skipped` and read the dataset's next sample instead (up to ``max_skips`` in a
            row) rather than failing the run.
        max_skips: how many consecutive bad samples are tolerated before the error is raised.

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> mixed = MixedDataset([SyntheticDataset(length=4, height=32, width=48)], [1.0], epoch_length=6)
        >>> mixed.set_epoch(1); len(mixed), mixed[0]["image"].shape
        (6, torch.Size([3, 32, 48]))
    """

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float], epoch_length: int, seed: int = 0,
                 skip_corrupt: bool = False, max_skips: int = 10) -> None:
        if not datasets:
            raise ValueError("MixedDataset needs at least one dataset")
        if len(weights) != len(datasets):
            raise ValueError(f"MixedDataset: {len(datasets)} datasets but {len(weights)} weights")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"MixedDataset: weights must be finite, >= 0 and not all zero, got {list(weights)}")
        for k, ds in enumerate(datasets):
            if w[k] > 0 and len(ds) == 0:
                raise ValueError(f"MixedDataset: dataset {k} ({type(ds).__name__}) is empty but has weight {w[k]}")
        if int(epoch_length) < 1:
            raise ValueError(f"MixedDataset: epoch_length must be >= 1, got {epoch_length}")
        self.datasets = list(datasets)
        self.weights = w / w.sum()
        self.epoch_length = int(epoch_length)
        self.seed = int(seed)
        self.epoch = 0
        self.skip_corrupt = skip_corrupt
        self.max_skips = int(max_skips)
        self.skipped = 0
        # A plan is O(epoch_length); keep the last two so __getitem__ does not rebuild it (a plain
        # dict rather than functools.lru_cache, which would make the dataset unpicklable for workers).
        self._plans: dict[int, list[tuple[int, int]]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch plan used by plain integer indices."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.epoch_length

    def quotas(self) -> np.ndarray:
        """Samples per dataset in every epoch (sums to ``epoch_length``)."""
        exact = self.weights * self.epoch_length
        counts = np.floor(exact).astype(np.int64)
        # Largest remainder; ties go to the earlier dataset, so quotas do not change between epochs.
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[: self.epoch_length - counts.sum()]] += 1
        return counts

    def plan(self, epoch: int) -> list[tuple[int, int]]:
        """``(dataset, sample)`` for every position of ``epoch``; a pure function of ``(seed, epoch)``."""
        epoch = int(epoch)
        if epoch not in self._plans:
            if len(self._plans) >= 2:
                self._plans.pop(next(iter(self._plans)))
            self._plans[epoch] = self._make_plan(epoch)
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        for k, quota in enumerate(self.quotas()):
            if quota == 0:
                continue
            n = len(self.datasets[k])
            # Consecutive permutations: every sample is used once before any repeats.
            idx = np.concatenate([rng.permutation(n) for _ in range(math.ceil(quota / n))])[:quota]
            parts.append(np.stack([np.full(quota, k), idx], axis=1))
        table = np.concatenate(parts)[rng.permutation(self.epoch_length)]
        return [(int(k), int(i)) for k, i in table]

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch, pos = index if isinstance(index, tuple) else (self.epoch, index)
        if not 0 <= pos < self.epoch_length:
            raise IndexError(f"MixedDataset: position {pos} out of range for epoch_length {self.epoch_length}")
        k, i = self.plan(epoch)[pos]
        ds = self.datasets[k]
        for attempt in range(self.max_skips + 1):
            try:
                return ds[(i + attempt) % len(ds)]
            except DataError as e:
                if not self.skip_corrupt or attempt == self.max_skips:
                    raise
                self.skipped += 1
                warnings.warn(f"skipping corrupt sample {(i + attempt) % len(ds)} of dataset {k} "
                              f"({self.skipped} skipped so far in this process): {e}", stacklevel=2)
        raise AssertionError("unreachable")


class MixedSampler(Sampler):
    """This rank's share of a :class:`MixedDataset` epoch, as ``(epoch, position)`` keys.

    Args:
        dataset: the mixed dataset.
        rank, world_size: default to ``torch.distributed``'s when it is initialised, else 0 and 1.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``).

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> mixed = MixedDataset([SyntheticDataset(length=4, height=32, width=48)], [1.0], epoch_length=10)
        >>> list(MixedSampler(mixed, rank=1, world_size=4))
        [(0, 1), (0, 5)]
    """

    def __init__(self, dataset: MixedDataset, rank: int | None = None, world_size: int | None = None) -> None:
        if world_size is None:
            world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < world_size:
            raise ValueError(f"MixedSampler: rank {rank} not in [0, {world_size})")
        if dataset.epoch_length < world_size:
            raise ValueError(f"MixedSampler: epoch_length {dataset.epoch_length} < world_size {world_size}")
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.dataset.epoch_length // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for pos in range(self.rank, len(self) * self.world_size, self.world_size):
            yield (self.epoch, pos)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples of the common contract.

    ``image``/``target``/``mask`` (and ``colour``, :mod:`svde.data.colour`) are stacked (all samples
    must share one size; samples the device resamples, :mod:`svde.data.warp`, give their decoded
    arrays packed as ``sources`` and ``layout`` and a stacked ``warp``), ``depth_type`` and
    ``meta`` become lists, and ``pairs`` (when any sample has them) a list of (K_i, 5) tensors,
    empty for samples without pairs.

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> ds = SyntheticDataset(length=2, height=32, width=48)
        >>> batch = collate([ds[0], ds[1]])
        >>> batch["image"].shape, batch["depth_type"]
        (torch.Size([2, 3, 32, 48]), ['absolute', 'absolute'])
    """
    if not samples:
        raise ValueError("collate: empty batch")
    warped = _all_or_none(samples, "warp", "leave their resampling to the device (data.warp_on)", "warp_on_device")
    sizes = {tuple(s["warp"][1:3].tolist()) if warped else tuple(s["image"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        files = [s.get("meta", {}).get("file", "?") for s in samples]
        raise DataError(f"collate: samples have different sizes {sorted(sizes)} (files {files}); "
                        f"crop them to one size (build_train_transform) or use batch_size=1")
    # uint8 and normalised float images cannot share a batch
    deferred = _all_or_none(samples, "colour", "defer their colour jitter to the device (data.colour_on)",
                            "colour_on_device")
    if warped:  # sources of different sizes: one packed buffer, cropped on the device (svde.data.warp)
        sources, layout = pack_sources([s["image"] for s in samples], [s["target"] for s in samples])
        batch: dict[str, Any] = {"sources": sources, "layout": layout,
                                 **{key: torch.stack([s[key] for s in samples]) for key in ("warp", "colour")}}
    else:
        keys = ("image", "target", "mask", "colour") if deferred else ("image", "target", "mask")
        batch = {key: torch.stack([s[key] for s in samples]) for key in keys}
    batch["depth_type"] = [s["depth_type"] for s in samples]
    batch["meta"] = [s["meta"] for s in samples]
    if any("pairs" in s for s in samples):
        batch["pairs"] = [s["pairs"] if "pairs" in s else torch.zeros((0, 5)) for s in samples]
    return batch


def _all_or_none(samples: Sequence[dict[str, Any]], key: str, what: str, option: str) -> bool:
    """Whether the samples carry ``key``; a :class:`DataError` when only some do."""
    has = [key in s for s in samples]
    if any(has) and not all(has):
        raise DataError(f"collate: some samples {what} and some do not; build every training dataset with the "
                        f"same {option}")
    return all(has)
