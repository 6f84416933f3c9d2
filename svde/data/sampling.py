"""Which samples are drawn, and in what order: fixed subsets of a dataset, and the training
mixture's resumable, per-sample-seeded order (:mod:`svde.data.mixing` builds the weighted
mixture itself).

Example:
    >>> from svde.data.synthetic import SyntheticDataset
    >>> ds = SyntheticDataset(length=10, height=32, width=48)
    >>> len(take_subset(ds, [0.0, 0.3])), len(take_subset(ds, [0.3, 1.0]))
    (3, 7)
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from svde.data.base import DataError
from svde.data.mixing import MixedDataset, MixedSampler


def subset_problem(subset: Any, where: str) -> str | None:
    """What is wrong with a dataset entry's ``subset`` (None: nothing): the one rule, checked by
    the training config and by evaluation entries alike.

    Example:
        >>> subset_problem([0.0, 0.5], "data.train.0"), subset_problem([0.5, 0.2], "val.dataset")
        (None, 'val.dataset.subset must be [start, end] with 0 <= start < end <= 1, got [0.5, 0.2]')
    """
    if subset is None or (isinstance(subset, (list, tuple)) and len(subset) == 2
                          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in subset)
                          and 0.0 <= subset[0] < subset[1] <= 1.0):
        return None
    return f"{where}.subset must be [start, end] with 0 <= start < end <= 1, got {subset!r}"


def take_subset(dataset: Dataset, subset: Sequence[float] | None, name: str = "") -> Dataset:
    """The ``[start, end]`` fraction of ``dataset`` (all of it when ``subset`` is None).

    The samples are put in one fixed shuffled order (seed 0, whatever the run's seed: every run
    slices the same order) and positions ``[round(start * n), round(end * n))`` are kept, so
    ``[0, p]`` and ``[p, 1]`` partition the dataset exactly (the paper's §4.4.1 UTS / UTSS
    split), and a slice of a dataset stored in scene order is not just a few scenes.
    """
    if subset is None:
        return dataset
    n = len(dataset)
    start, end = round(subset[0] * n), round(subset[1] * n)
    if start >= end:
        raise DataError(f"dataset {name or type(dataset).__name__!r}: subset {list(subset)} of its {n} samples is empty")
    order = np.random.default_rng(0).permutation(n)
    return Subset(dataset, order[start:end].tolist())


# The held-out validation slice (split_holdout) is drawn with its own fixed seed, not the run's:
# every run of a config keeps the same samples out, and they differ from take_subset's order.
HOLDOUT_SEED = 1


def split_holdout(dataset: Dataset, n: int, name: str = "") -> tuple[Dataset, Dataset]:
    """``(train, heldout)``: ``n`` samples of ``dataset`` kept out of training, and the rest.

    The held-out samples are the first ``n`` of one fixed shuffled order (:data:`HOLDOUT_SEED`,
    whatever the run's seed), so every run of a config validates on the same samples and never
    trains on them. The two parts are disjoint and together are the whole dataset.

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> train, held = split_holdout(SyntheticDataset(length=10, height=32, width=48), 3)
        >>> len(train), len(held), sorted(set(train.indices) | set(held.indices)) == list(range(10))
        (7, 3, True)
    """
    size = len(dataset)
    if not 0 < n < size:
        raise DataError(f"dataset {name or type(dataset).__name__!r}: cannot hold out {n} of its {size} samples "
                        f"for validation (val.holdout must be at least 1 and leave samples to train on)")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(size)
    return Subset(dataset, sorted(order[n:].tolist())), Subset(dataset, sorted(order[:n].tolist()))


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
