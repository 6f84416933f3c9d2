"""Data: one sample contract for every dataset, a registry, augmentation and mixing.

Example:
    >>> from svde.data import build_dataset
    >>> sample = build_dataset("synthetic", length=2, height=64, width=96)[0]
    >>> sample["image"].shape, sample["depth_type"]
    (torch.Size([3, 64, 96]), 'absolute')
"""

from svde.data.base import DEPTH_TYPES, DataError, DepthDataset, denormalize_image, normalize_image
from svde.data.registry import DATASETS, build_dataset, dataset_class

__all__ = [
    "DATASETS",
    "DEPTH_TYPES",
    "DataError",
    "DepthDataset",
    "build_dataset",
    "dataset_class",
    "denormalize_image",
    "normalize_image",
]
