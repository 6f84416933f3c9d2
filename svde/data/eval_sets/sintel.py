"""MPI Sintel: rendered frames with ``.dpt`` depth and ``.cam`` intrinsics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import read_dpt, read_image, read_sintel_cam
from svde.data.layout import EVAL_SPLITS, check_split, pair_by_stem
from svde.types import DepthType

class SintelDataset(DepthDataset):
    """MPI Sintel: ``<root>/<pass>/<scene>/frame_XXXX.png`` + ``<root>/depth/<scene>/frame_XXXX.dpt``.

    Depth is in Sintel's scene units, read from ``.dpt`` (:func:`svde.data.io.read_dpt`: float32
    tag 202021.25, int32 width, int32 height, then float32 rows), paired as the authors do
    (SamsungLabs/geometry-preserving-de, datasets/validation_datasets.py, ``SintelDataset``:
    ``final/*/*.png`` -> ``depth/<scene>/<frame>.dpt``, ``depth_read``).
    Intrinsics come from ``<root>/camdata_left/<scene>/frame_XXXX.cam`` when present (Sintel SDK
    ``cam_read``: tag, then K 3x3 and [R|t] 3x4 as float64).

    Args:
        pass_name: ``"final"`` (default) or ``"clean"``.
    """

    name = "sintel"
    depth_type = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 pass_name: str = "final") -> None:
        check_split(self.name, split, EVAL_SPLITS)
        if pass_name not in ("final", "clean"):
            raise DataError(f"{self.name}: pass_name must be 'final' or 'clean', got {pass_name!r}")
        self.pass_name = pass_name
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return (f"expected <root>/{self.pass_name}/<scene>/frame_XXXX.png with <root>/depth/<scene>/frame_XXXX.dpt "
                "(and optionally <root>/camdata_left/<scene>/frame_XXXX.cam)")

    def index(self) -> list[tuple[Path, Path, Path | None]]:
        images = self.require(self.require(self.root) / self.pass_name)
        depths = self.require(self.root / "depth")
        records = []
        for scene in sorted(p for p in images.iterdir() if p.is_dir()):
            cams = self.root / "camdata_left" / scene.name
            for image, depth in pair_by_stem(scene, depths / scene.name, lambda p: [p.stem + ".dpt"],
                                             image_exts=(".png",), dataset=self.name):
                cam = cams / (image.stem + ".cam")
                records.append((image, depth, cam if cam.is_file() else None))
        return records

    def read(self, record: tuple[Path, Path, Path | None]) -> dict[str, Any]:
        image, depth, cam = record
        k = None
        if cam is not None:
            K, _ = read_sintel_cam(cam)
            k = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        return {"image": read_image(image), "target": read_dpt(depth), "intrinsics": k, "file": str(image)}
