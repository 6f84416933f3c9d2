"""Data: one sample contract for every dataset, a registry, augmentation and mixing.

Example:
    >>> from svde.data import build_dataset
    >>> sample = build_dataset("synthetic", length=2, height=64, width=96)[0]
    >>> sample["image"].shape, sample["depth_type"]
    (torch.Size([3, 64, 96]), 'absolute')
"""

from svde.data.base import DEPTH_TYPES, DataError, DepthDataset, denormalize_image, normalize_image
from svde.data.colour import finish_batch
from svde.data.folder import RGBDFolderDataset, StereoFolderDataset
from svde.data.mixing import MixedDataset, MixedSampler, collate
from svde.data.registry import DATASETS, build_dataset, dataset_class
from svde.data.synthetic import SyntheticDataset
from svde.data.transforms import Compose, ToUTS, ToUTSS, build_train_transform, to_uts, to_utss

__all__ = [
    "DATASETS",
    "DEPTH_TYPES",
    "Compose",
    "DataError",
    "DepthDataset",
    "MixedDataset",
    "MixedSampler",
    "RGBDFolderDataset",
    "StereoFolderDataset",
    "SyntheticDataset",
    "ToUTS",
    "ToUTSS",
    "build_dataset",
    "build_train_transform",
    "collate",
    "dataset_class",
    "denormalize_image",
    "finish_batch",
    "normalize_image",
    "to_uts",
    "to_utss",
]
