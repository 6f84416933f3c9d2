"""Dataset registry: a YAML ``name`` -> the class that reads it.

Classes are imported when built, so that reading one dataset does not import every format's
dependencies (h5py, scipy, ...).
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from svde.data.base import DepthDataset
from svde.errors import did_you_mean, unknown_name

# name -> (module, class)
DATASETS: dict[str, tuple[str, str]] = {
    # built-in and generic
    "synthetic": ("svde.data.synthetic", "SyntheticDataset"),
    "rgbd_folder": ("svde.data.folder", "RGBDFolderDataset"),
    "stereo_folder": ("svde.data.folder", "StereoFolderDataset"),
    # training sets
    "redweb": ("svde.data.train_sets", "ReDWebDataset"),
    "diml": ("svde.data.train_sets", "DIMLIndoorDataset"),
    "megadepth": ("svde.data.train_sets", "MegaDepthDataset"),
    # evaluation sets
    "nyu": ("svde.data.eval_sets.nyu", "NYUv2LabeledDataset"),
    "nyu_sync": ("svde.data.eval_sets.nyu", "NYUv2SyncDataset"),
    "tum": ("svde.data.eval_sets.tum", "TUMH5Dataset"),
    "tum_raw": ("svde.data.eval_sets.tum", "TUMRawDataset"),
    "kitti": ("svde.data.eval_sets.kitti", "KITTIDataset"),
    "sintel": ("svde.data.eval_sets.sintel", "SintelDataset"),
    "diw": ("svde.data.eval_sets.diw", "DIWDataset"),
    "eth3d": ("svde.data.eval_sets.eth3d", "ETH3DDataset"),
}


def dataset_class(name: str) -> type[DepthDataset]:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    module, cls = DATASETS[name]
    return getattr(importlib.import_module(module), cls)


def build_dataset(name: str, root: str | os.PathLike | None = None, split: str | None = None, **options: Any) -> DepthDataset:
    """Build a dataset by registry name.

    Example:
        >>> ds = build_dataset("synthetic", split="val", length=4, height=64, width=96)
        >>> sorted(ds[0])
        ['depth_type', 'image', 'mask', 'meta', 'target']
    """
    return dataset_class(name)(root=root, split=split, **options)


# constructor arguments that are not dataset options (set from an entry's own keys)
NOT_OPTIONS = ("self", "root", "split", "transform")


def option_problems(name: str, options: Any, where: str) -> list[str]:
    """What is wrong with a dataset entry's ``name`` and ``options`` (empty: nothing).

    Every option must be an argument of the dataset's class; a misspelt one is named with a
    did-you-mean. One check for the training config, the eval config and the PoC.

    Example:
        >>> option_problems("synthetic", {"lenght": 4}, "val.dataset")
        ["val.dataset.options.lenght: dataset 'synthetic' has no option 'lenght' (did you mean 'length'?); valid options: length, height, width, seed, depth_type"]
    """
    if name not in DATASETS:
        return [f"{where}.name: {unknown_name('dataset', name, DATASETS)}"]
    if not isinstance(options, dict):
        return [f"{where}.options: expected a mapping of option -> value, got {options!r}"]
    params = inspect.signature(dataset_class(name).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    valid = [n for n in params if n not in NOT_OPTIONS]
    problems = []
    for key in options:
        if key not in valid:
            problems.append(f"{where}.options.{key}: dataset {name!r} has no option {key!r}{did_you_mean(key, valid)}; "
                            f"valid options: {', '.join(valid) or 'none'}")
    return problems
