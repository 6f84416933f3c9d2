"""Which samples are drawn, and in what order: fixed subsets of a dataset.

(The training mixture's resumable, per-sample-seeded ordering lives here too; see
:mod:`svde.data.mixing` for the weighted mixture itself.)

Example:
    >>> from svde.data.synthetic import SyntheticDataset
    >>> ds = SyntheticDataset(length=10, height=32, width=48)
    >>> len(take_subset(ds, [0.0, 0.3])), len(take_subset(ds, [0.3, 1.0]))
    (3, 7)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from svde.data.base import DataError


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
