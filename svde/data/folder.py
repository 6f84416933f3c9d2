"""Generic folder datasets, so users can train and evaluate on their own data.

``rgbd_folder`` (:class:`RGBDFolderDataset`): RGB images with depth maps (absolute, UTS or UTSS)::

    root/[split/]rgb/<name>.jpg|.jpeg|.png|.bmp|.tif|.tiff
    root/[split/]depth/<name>.png (16-bit, divided by depth_scale) | .pfm | .npy | .dpt
    root/[split/]mask/<name>.png   optional, non-zero = valid

or a list file (``list_file=...``, or ``root/<split>.txt`` when it exists): one sample per line,
``image depth [mask]``, paths relative to ``root`` (or absolute), ``#`` starts a comment.

``stereo_folder`` (:class:`StereoFolderDataset`): 3D-Movies-style stereo data, i.e. left images
with disparity maps of unknown scale and shift (``utss``)::

    root/[split/]left/<name>.jpg|.png|...
    root/[split/]disparity/<name>.pfm|.png|.npy   (PNG divided by disparity_scale)
    root/[split/]mask/<name>.png   optional

Example:
    >>> ds = RGBDFolderDataset("my_scans", depth_scale=1000.0)  # doctest: +SKIP
    >>> ds[0]["target"].max()  # metres  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from svde.data.base import DataError, DepthDataset, dense_depth_type
from svde.data.io import read_depth_scaled, read_gray, read_image
from svde.data.layout import USER_IMAGE_EXTS, check_intrinsics, pair_by_stem, parse_list
from svde.types import DepthType

IMAGE_EXTS = USER_IMAGE_EXTS  # the image files a folder may hold
DEPTH_EXTS = (".png", ".pfm", ".npy", ".dpt")


class RGBDFolderDataset(DepthDataset):
    """RGB + depth files in folders or listed in a text file (see the module docstring).

    Args:
        root: dataset folder.
        split: optional; uses ``root/<split>.txt`` as the list file if it exists, else the
            sub-folder ``root/<split>``.
        transform: joint augmentation (see :mod:`svde.data.transforms`).
        list_file: text file of ``image depth [mask]`` lines (relative to ``root``).
        image_dir, depth_dir, mask_dir: sub-folder names for the folder layout; the mask folder
            is optional.
        image_glob: pattern selecting images inside ``image_dir``.
        depth_scale: stored value / ``depth_scale`` = depth (e.g. 1000 for millimetre PNGs).
        depth_type: ``"absolute"``, ``"uts"`` or ``"utss"`` (then the files hold disparity).
        intrinsics: optional ``[fx, fy, cx, cy]`` of the stored resolution, shared by all samples.

    Example:
        >>> ds = RGBDFolderDataset("scans", split="val", depth_scale=1000)  # doctest: +SKIP
    """

    name = "rgbd_folder"
    default_dirs = ("rgb", "depth", "mask")
    default_depth_type = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike, split: str | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 list_file: str | os.PathLike | None = None, image_dir: str | None = None,
                 depth_dir: str | None = None, mask_dir: str | None = None, image_glob: str = "*",
                 depth_scale: float = 1.0, depth_type: str | None = None,
                 intrinsics: Sequence[float] | None = None) -> None:
        if root is None:
            raise DataError(f"{self.name}: a root folder is required; {self._hint(image_dir, depth_dir, mask_dir)}")
        depth_type = dense_depth_type(depth_type or self.default_depth_type, self.name)
        if not (np.isfinite(depth_scale) and depth_scale > 0):
            raise DataError(f"{self.name}: depth_scale must be a positive number, got {depth_scale!r}")
        self.depth_type = depth_type
        self.depth_scale = float(depth_scale)
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        self.dirs = (image_dir or self.default_dirs[0], depth_dir or self.default_dirs[1], mask_dir or self.default_dirs[2])
        self.list_file = Path(list_file) if list_file is not None else None
        self.image_glob = image_glob
        super().__init__(root, split, transform)

    def _hint(self, image_dir: str | None = None, depth_dir: str | None = None, mask_dir: str | None = None) -> str:
        img, dep, msk = (image_dir or self.default_dirs[0], depth_dir or self.default_dirs[1],
                         mask_dir or self.default_dirs[2])
        return (f"expected root/[split/]{img}/<name>{{{','.join(IMAGE_EXTS)}}} with root/[split/]{dep}/<name>"
                f"{{{','.join(DEPTH_EXTS)}}} (optional root/[split/]{msk}/<name>.png), or a list file of "
                f"'image depth [mask]' lines")

    def layout_hint(self) -> str:
        return self._hint(*self.dirs)

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def index(self) -> list[tuple[Path, Path, Path | None]]:
        if not self.root.is_dir():
            raise DataError(f"{self.name}: root folder {self.root} not found; {self.layout_hint()}")
        list_file = self.list_file
        if list_file is None and self.split is not None and (self.root / f"{self.split}.txt").is_file():
            list_file = self.root / f"{self.split}.txt"
        if list_file is not None:
            return self._index_list(list_file if list_file.is_absolute() else self.root / list_file)
        return self._index_folders()

    def _index_list(self, list_file: Path) -> list[tuple[Path, Path, Path | None]]:
        records = []
        for n, fields in parse_list(self.require(list_file), inline_comments=True):
            if len(fields) not in (2, 3):
                raise DataError(f"{list_file}:{n}: expected 'image depth [mask]', got {' '.join(fields)!r}")
            paths = [self._resolve(f) for f in fields]
            for p in paths:
                if not p.is_file():
                    raise DataError(f"{list_file}:{n}: file {p} not found")
            records.append((paths[0], paths[1], paths[2] if len(paths) == 3 else None))
        return records

    def _index_folders(self) -> list[tuple[Path, Path, Path | None]]:
        base = self.root
        if self.split is not None:
            base = self.root / self.split
            if not base.is_dir():
                raise DataError(f"{self.name}: split {self.split!r} not found: neither {self.root / (self.split + '.txt')} "
                                f"nor {base} exists; {self.layout_hint()}")
        image_dir, depth_dir, mask_dir = (base / d for d in self.dirs)
        pairs = pair_by_stem(self.require(image_dir), self.require(depth_dir),
                             lambda p: [p.stem + ext for ext in DEPTH_EXTS], image_exts=IMAGE_EXTS,
                             dataset=self.name, pattern=self.image_glob)
        records = []
        for image, depth in pairs:
            mask = None
            if mask_dir.is_dir():
                mask = mask_dir / (image.stem + ".png")
                if not mask.is_file():
                    raise DataError(f"{self.name}: mask folder {mask_dir} exists but {mask} is missing")
            records.append((image, depth, mask))
        return records

    def read(self, record: tuple[Path, Path, Path | None]) -> dict[str, Any]:
        image_path, depth_path, mask_path = record
        image = read_image(image_path)
        target, depth_scale = read_depth_scaled(depth_path, self.depth_scale)  # a PNG's scaling waits for the crop
        if target.shape != image.shape[:2]:
            raise DataError(f"{depth_path}: depth is {target.shape[1]}x{target.shape[0]} (WxH) but image "
                            f"{image_path} is {image.shape[1]}x{image.shape[0]}")
        raw: dict[str, Any] = {"image": image, "target": target, "depth_scale": depth_scale, "file": str(image_path),
                               "intrinsics": self.intrinsics, "depth_type": self.depth_type}
        if mask_path is not None:
            mask = read_gray(mask_path)
            if mask.shape != image.shape[:2]:
                raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but image "
                                f"{image_path} is {image.shape[1]}x{image.shape[0]}")
            raw["mask"] = mask > 0
        return raw


class StereoFolderDataset(RGBDFolderDataset):
    """3D-Movies-style stereo data: left images with UTSS disparity (see the module docstring).

    Args:
        disparity_scale: stored value / ``disparity_scale`` = disparity (16-bit PNGs).
        Others as :class:`RGBDFolderDataset` (``image_dir`` defaults to ``left``, ``depth_dir``
        to ``disparity``); the depth type is always ``utss``.

    Example:
        >>> ds = StereoFolderDataset("movies", split="train", disparity_scale=64)  # doctest: +SKIP
    """

    name = "stereo_folder"
    default_dirs = ("left", "disparity", "mask")
    default_depth_type = DepthType.UTSS

    def __init__(self, root: str | os.PathLike, split: str | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 list_file: str | os.PathLike | None = None, image_dir: str | None = None,
                 depth_dir: str | None = None, mask_dir: str | None = None, image_glob: str = "*",
                 disparity_scale: float = 1.0, intrinsics: Sequence[float] | None = None) -> None:
        super().__init__(root, split, transform, list_file=list_file, image_dir=image_dir, depth_dir=depth_dir,
                         mask_dir=mask_dir, image_glob=image_glob, depth_scale=disparity_scale,
                         depth_type=DepthType.UTSS, intrinsics=intrinsics)
