"""Training-set loaders: ReDWeb (UTSS disparity), DIML Indoor (absolute depth), MegaDepth (UTS depth).

Layouts (``root`` is the dataset folder passed to the constructor):

* ``redweb``: ``<root>/Imgs/*.jpg`` + ``<root>/RDs/<same stem>.png``.
* ``diml``: ``<root>/<split>/**/col/*_c.png`` + the sibling ``up_png/*_ud.png`` (uint16 mm).
* ``megadepth``: ``<root>/**/dense*/imgs/*.jpg`` + ``<root>/**/dense*/depths/<same stem>.h5``,
  or an explicit list file.

Example:
    >>> from svde.data import build_dataset
    >>> ds = build_dataset("redweb", "/data/ReDWeb_V1")  # doctest: +SKIP
    >>> ds[0]["depth_type"]  # doctest: +SKIP
    'utss'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.eval_sets import IMAGE_EXTS, check_split, pair_by_stem, parse_list, read_h5
from svde.data.io import read_depth_any, read_gray, read_image

TRAIN_SPLITS = (None, "train")  # sets without an official split: everything under root


class ReDWebDataset(DepthDataset):
    """ReDWeb V1 (Xian et al. 2018): ``<root>/Imgs/*.jpg`` + ``<root>/RDs/<stem>.png``.

    The "RD" maps are 8-bit greyscale relative-depth maps from stereo matching, larger = closer,
    i.e. disparity known only up to scale and shift (UTSS). They are returned as value / 255.
    Assumption: 0 marks pixels without a stereo estimate, so they are masked (the base class
    masks non-positive values); for a valid pixel this loses at most the farthest quantisation
    level. A 16-bit map would be read rescaled to 8 bits (harmless for UTSS up to quantisation).
    """

    name = "redweb"
    depth_type = "utss"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None) -> None:
        check_split(self.name, split, TRAIN_SPLITS)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return "expected <root>/Imgs/*.jpg with <root>/RDs/<same name>.png (8-bit relative disparity)"

    def index(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
        return pair_by_stem(self.require(root / "Imgs"), self.require(root / "RDs"),
                            lambda p: [p.stem + ".png"], dataset=self.name)

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, rd = record
        disparity = read_gray(rd)
        if disparity.dtype != np.uint8:
            raise DataError(f"{rd}: expected an 8-bit relative-disparity map, got {disparity.dtype}")
        return {"image": read_image(image), "target": disparity.astype(np.float32) / 255.0,
                "intrinsics": None, "file": str(image)}


class DIMLIndoorDataset(DepthDataset):
    """DIML/CVL RGB-D Indoor (Kinect v2), high-resolution part, as released:

    ``<root>/<split>/<any folders>/col/<name>_c.png`` with the up-sampled depth
    ``<root>/<split>/<same folders>/up_png/<name>_ud.png`` (uint16, millimetres, 0 = no data).
    A depth file named like the colour image (``<name>_c.png``) is accepted as well.

    Args:
        split: the sub-folder of ``root`` to read (default ``"train"``).
        depth_scale: raw units per metre (1000: millimetres).
        color_dir, depth_dir: folder names of colour and depth images.
    """

    name = "diml"
    depth_type = "absolute"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_scale: float = 1000.0, color_dir: str = "col", depth_dir: str = "up_png") -> None:
        self.depth_scale = depth_scale
        self.color_dir, self.depth_dir = color_dir, depth_dir
        super().__init__(root, split or "train", transform)

    def layout_hint(self) -> str:
        return (f"expected <root>/{self.split}/**/{self.color_dir}/<name>_c.png with the sibling "
                f"{self.depth_dir}/<name>_ud.png (uint16, mm)")

    @staticmethod
    def _depth_names(image: Path) -> list[str]:
        stem = image.stem
        names = [stem[:-2] + "_ud.png"] if stem.endswith("_c") else []
        return names + [stem + ".png"]

    def index(self) -> list[tuple[Path, Path]]:
        base = self.require(self.require(self.root) / self.split)
        records = []
        for col in sorted(p for p in base.rglob(self.color_dir) if p.is_dir()):
            records += pair_by_stem(col, col.parent / self.depth_dir, self._depth_names, dataset=self.name)
        return records

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, depth = record
        return {"image": read_image(image), "target": read_depth_any(depth, self.depth_scale),
                "intrinsics": None, "file": str(image)}


class MegaDepthDataset(DepthDataset):
    """MegaDepth v1 (Li & Snavely 2018): SfM depth, known up to scale (UTS).

    Layout: ``.../<scene>/dense*/imgs/<name>.jpg`` with ``.../<scene>/dense*/depths/<name>.h5``
    (HDF5 dataset ``/depth``, float32, 0 = no reconstruction), found recursively under ``root``
    (e.g. ``<root>/phoenix/S6/zl548/MegaDepth_v1/``). Or, with ``list_file`` (relative to
    ``root``), one sample per line: ``<image path> [<depth path>]`` relative to ``root``; the
    depth path defaults to the image path with ``/imgs/`` -> ``/depths/`` and ``.h5``.
    Only the metric-SfM depth maps are meant: negative values are masked by the base class.

    Args:
        list_file: optional list of samples (e.g. a train or validation list).
        depth_key: the HDF5 dataset holding the depth.
    """

    name = "megadepth"
    depth_type = "uts"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 list_file: str | os.PathLike | None = None, depth_key: str = "depth") -> None:
        check_split(self.name, split, TRAIN_SPLITS)
        self.list_file = None if list_file is None else Path(root) / list_file
        self.depth_key = depth_key
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected <root>/**/dense*/imgs/<name>.jpg with <root>/**/dense*/depths/<name>.h5 ('/depth'), "
                "or list_file lines '<image> [<depth.h5>]' relative to <root>")

    @staticmethod
    def depth_for(image: Path) -> Path:
        """``.../imgs/<name>.jpg`` -> ``.../depths/<name>.h5``."""
        if image.parent.name != "imgs":
            raise DataError(f"megadepth: cannot derive a depth path for {image} (not in an imgs/ folder)")
        return image.parent.parent / "depths" / (image.stem + ".h5")

    def index(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
        if self.list_file is not None:
            path = self.require(self.list_file)
            records = []
            for n, tokens in parse_list(path):
                image = root / tokens[0]
                try:
                    depth = root / tokens[1] if len(tokens) > 1 else self.depth_for(image)
                except DataError as e:
                    raise DataError(f"{path}:{n}: {e}; give the depth path as a second field") from None
                for p in (image, depth):
                    if not p.is_file():
                        raise DataError(f"{path}:{n}: {p} not found; {self.layout_hint()}")
                records.append((image, depth))
            return records
        records = []
        for imgs in sorted(p for p in root.rglob("imgs") if p.is_dir() and p.parent.name.startswith("dense")):
            records += pair_by_stem(imgs, imgs.parent / "depths", lambda p: [p.stem + ".h5"],
                                    image_exts=IMAGE_EXTS, dataset=self.name)
        return records

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, depth = record
        target = np.asarray(read_h5(depth, self.depth_key), dtype=np.float32)
        if target.ndim != 2:
            raise DataError(f"{depth}: /{self.depth_key} must be (H, W), got shape {target.shape}")
        return {"image": read_image(image), "target": target, "intrinsics": None, "file": str(image)}

