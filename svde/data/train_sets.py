"""Training-set loaders: ReDWeb (UTSS disparity), DIML Indoor (absolute depth), MegaDepth (UTS depth).

Layouts (``root`` is the dataset folder passed to the constructor):

* ``redweb``: ``<root>/Imgs/*.jpg`` + ``<root>/RDs/<same stem>.png``.
* ``diml``: ``<root>[/indoor]/<scene>/<date>/<batch>/col/<name>_c.png`` + the sibling
  ``up_png/<name>_<suffix>`` (uint16 mm), as the DIML/CVL indoor archives unpack.
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
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import read_depth_scaled, read_gray, read_h5, read_image
from svde.data.layout import IMAGE_EXTS, TRAIN_SPLITS, check_split, pair_by_stem, parse_list
from svde.types import DepthType


class ReDWebDataset(DepthDataset):
    """ReDWeb V1 (Xian et al. 2018): ``<root>/Imgs/*.jpg`` + ``<root>/RDs/<stem>.png``.

    The "RD" maps are 8-bit relative-depth maps from stereo matching: **0 is the nearest point,
    larger values are farther, 255 marks sky / background** (no valid depth). Source: isl-org/MiDaS
    issue #16 ("How to covert RedWeb dataset label to disparity"), where the MiDaS maintainer
    gives their loader: mask ``value != 255``, then negate ``value / 255`` (ReDWeb being "likely
    (negative) disparity"). Here the target is ``(255 - value) / 255``: the same negation shifted
    to stay positive, so it increases towards the camera like every UTSS disparity of the sample
    contract (the shift is irrelevant under UTSS), 0 (nearest) maps to 1.0 and stays valid, and
    the 255 pixels are masked. Maps are read as 1-channel PNGs or as 3-channel PNGs with three
    identical channels (some copies are saved so); differing channels are an error.
    """

    name = "redweb"
    depth_type = DepthType.UTSS
    SKY = 255  # RD value of sky / background: no depth

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None) -> None:
        check_split(self.name, split, TRAIN_SPLITS)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected <root>/Imgs/*.jpg with <root>/RDs/<same name>.png (8-bit relative depth: "
                "0 nearest, 255 sky)")

    def index(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
        return pair_by_stem(self.require(root / "Imgs"), self.require(root / "RDs"),
                            lambda p: [p.stem + ".png"], dataset=self.name)

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, rd = record
        value = read_gray(rd, replicated_channels=True)
        if value.dtype != np.uint8:
            raise DataError(f"{rd}: expected an 8-bit ReDWeb relative-depth map, got {value.dtype}")
        disparity = (np.float32(self.SKY) - value.astype(np.float32)) / np.float32(self.SKY)
        return {"image": read_image(image), "target": disparity, "mask": value != self.SKY,
                "intrinsics": None, "file": str(image)}


class DIMLIndoorDataset(DepthDataset):
    """DIML/CVL RGB-D Indoor (Kinect v2), the full release the paper trains on (about 220K frames).

    Layout, as the per-scene archives of https://dimlrgbd.github.io unpack and as the public loader
    ``DIMLDataset`` of anhtu293/nndepth (nndepth/data/datasets/diml.py and its README) reads them:
    ``<root>/indoor/<scene>/<date>/<batch>/col/<name>_c.png`` (colour) with the up-sampled depth
    ``.../<batch>/up_png/<name>_<suffix>`` beside it (the archives also hold ``raw_png`` and
    ``warp_png``). There is no split level. Some archives lack the ``<date>`` level or add others,
    so every ``col`` folder under ``root`` that has an ``up_png`` sibling is read, at any depth;
    ``root`` may be the folder holding ``indoor/`` or the ``indoor`` folder itself. The depth
    suffix is discovered per ``up_png`` folder (the part after the last ``_`` of its file names,
    as nndepth does); a folder mixing suffixes is an error. Depth: uint16 PNG, millimetres
    (nndepth: ``/ 1000`` "mm -> meters"), 0 = no data (nndepth: valid where ``depth > 0``).

    Args:
        split: ``None`` or ``"train"``: everything under ``root`` (the release has no splits).
        depth_scale: raw units per metre (1000: millimetres).
        color_dir, depth_dir: folder names of colour and depth images.
    """

    name = "diml"
    depth_type = DepthType.ABSOLUTE
    COLOR_SUFFIX = "_c.png"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_scale: float = 1000.0, color_dir: str = "col", depth_dir: str = "up_png") -> None:
        check_split(self.name, split, TRAIN_SPLITS)
        self.depth_scale = depth_scale
        self.color_dir, self.depth_dir = color_dir, depth_dir
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return (f"expected <root>[/indoor]/<scene>/<date>/<batch>/{self.color_dir}/<name>_c.png with the sibling "
                f"{self.depth_dir}/<name>_<suffix> (uint16 PNG, mm)")

    def _depth_suffix(self, depth_dir: Path) -> str:
        suffixes = {p.name.rsplit("_", 1)[-1] for p in depth_dir.iterdir()
                    if p.is_file() and p.suffix.lower() == ".png" and "_" in p.name}
        if len(suffixes) != 1:
            raise DataError(f"{self.name}: cannot tell the depth file suffix in {depth_dir}: expected one "
                            f"'<name>_<suffix>' pattern, found {sorted(suffixes) or 'no <name>_<suffix>.png files'}")
        return suffixes.pop()

    def index(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
        base = root / "indoor" if (root / "indoor").is_dir() else root
        records = []
        for col in sorted(p for p in base.rglob(self.color_dir) if p.is_dir() and (p.parent / self.depth_dir).is_dir()):
            depth_dir = col.parent / self.depth_dir
            images = [p for p in sorted(col.iterdir()) if p.is_file() and p.name.endswith(self.COLOR_SUFFIX)]
            if not images:
                continue
            suffix = self._depth_suffix(depth_dir)
            for image in images:
                depth = depth_dir / f"{image.name[:-len(self.COLOR_SUFFIX)]}_{suffix}"
                if not depth.is_file():
                    raise DataError(f"{self.name}: no depth file for {image}; looked for {depth}")
                records.append((image, depth))
        return records

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, depth = record
        target, depth_scale = read_depth_scaled(depth, self.depth_scale)  # a PNG's scaling waits for the crop
        return {"image": read_image(image), "target": target, "depth_scale": depth_scale, "intrinsics": None,
                "file": str(image)}


class MegaDepthDataset(DepthDataset):
    """MegaDepth v1 (Li & Snavely 2018): SfM depth, known up to scale (UTS).

    Layout: ``.../<scene>/dense*/imgs/<name>.jpg`` with ``.../<scene>/dense*/depths/<name>.h5``
    (HDF5 dataset ``/depth``, float32, 0 = no reconstruction), found recursively under ``root``
    (e.g. ``<root>/phoenix/S6/zl548/MegaDepth_v1/``). Or, with ``list_file`` (relative to
    ``root``), one sample per line: ``<image> [<depth>]`` relative to ``root``; the depth path
    defaults to the image path with ``/imgs/`` -> ``/depths/`` and ``.h5``. Source of the key,
    the layout and 0 = no depth: the authors' loader, zhengqili/MegaDepth (formerly
    lixx2938/MegaDepth) data/image_folder.py, ``ImageFolder.load_MD``:
    ``h5py.File(depth_path).get('/depth')``, same H x W as the image, ``mask = gt > 1e-8``.

    **Ordinal maps.** The release also holds the automatically labelled ordinal ("semantic")
    depth maps of the paper's section 3.3, under the same key and in the same ``depths/``
    folders: zhengqili/MegaDepth issue #1, the maintainer's answer ("ordinal depth and dense map
    are stored as the same name in HDF5"). They hold labels, not depth: -1 and positive values,
    0 being unlabelled (faustoTapia/PhoneDepth dataset_utils/md_utils.py, ``load_depth``:
    "Should be -1 for ordinal images"; its ordinal loss, depth_utils.py ``error_ordinal``,
    samples background pixels where < 0 and foreground ones where > 0). Only their values tell
    them apart: the authors' released code is evaluation code with no such test, and public
    loaders filter the maps by value, as done here, a map with any negative value being
    ordinal: ubc-vision/COTR prepare_data.md ("Some depth maps provided by Megadepth are
    actually semantic depth, which is an ordering mask [...] filter out any depth map that the
    minimum depth value is less than 0") and scripts/prepare_megadepth_valid_list.py (keeps a
    map iff ``depth.min() >= 0``); faustoTapia/PhoneDepth dataset_utils/create_noOrdinal_list.py
    (removes a map from its MegaDepth train list iff ``np.amin(gt) < 0``). Read as depth, the
    positive labels would become UTS targets, so an ordinal map never reaches a target here:

    * at read time, always (no extra I/O: the map is read anyway): an ordinal map comes out with
      an all-False mask and a zero target, so it adds no pixel to any SI/SSI term; it still takes
      a place in the batch, and a warning (once per process) says so;
    * with ``drop_ordinal=True``, the index also reads every depth map once and drops the
      ordinal ones, with a warning giving the count (their images in :attr:`ordinal`). It is
      off by default because it reads every HDF5 map of the release each time the dataset is
      built; a ``list_file`` of the dense maps, written once, avoids both costs.

    Args:
        list_file: optional list of samples (e.g. a train or validation list).
        depth_key: the HDF5 dataset holding the depth.
        drop_ordinal: read every depth map while indexing and drop the ordinal ones.

    Example:
        >>> MegaDepthDataset.is_ordinal(np.array([[-1.0, 0.0], [1.0, 2.0]], np.float32))
        True
    """

    name = "megadepth"
    depth_type = DepthType.UTS

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 list_file: str | os.PathLike | None = None, depth_key: str = "depth",
                 drop_ordinal: bool = False) -> None:
        check_split(self.name, split, TRAIN_SPLITS)
        self.list_file = None if list_file is None else Path(root) / list_file
        self.depth_key = depth_key
        self.drop_ordinal = bool(drop_ordinal)
        self.ordinal: list[str] = []  # images of the ordinal maps dropped by the index
        self.ordinal_masked = 0  # ordinal maps read (and masked) by this process
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected <root>/**/dense*/imgs/<name>.jpg with <root>/**/dense*/depths/<name>.h5 ('/depth'), "
                "or list_file lines '<image> [<depth.h5>]' relative to <root>")

    @staticmethod
    def is_ordinal(depth: np.ndarray) -> bool:
        """True for an ordinal ("semantic") map: one with a negative value (see the class docstring)."""
        with np.errstate(invalid="ignore"):
            return bool(np.any(depth < 0))

    @staticmethod
    def depth_for(image: Path) -> Path:
        """``.../imgs/<name>.jpg`` -> ``.../depths/<name>.h5``."""
        if image.parent.name != "imgs":
            raise DataError(f"megadepth: cannot derive a depth path for {image} (not in an imgs/ folder)")
        return image.parent.parent / "depths" / (image.stem + ".h5")

    def index(self) -> list[tuple[Path, Path]]:
        records = self._listed() if self.list_file is not None else self._found()
        return self._without_ordinal(records) if self.drop_ordinal else records

    def _listed(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
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

    def _found(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
        records = []
        for imgs in sorted(p for p in root.rglob("imgs") if p.is_dir() and p.parent.name.startswith("dense")):
            records += pair_by_stem(imgs, imgs.parent / "depths", lambda p: [p.stem + ".h5"],
                                    image_exts=IMAGE_EXTS, dataset=self.name)
        return records

    def _without_ordinal(self, records: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
        dense = []
        for image, depth in records:
            if self.is_ordinal(self._read_depth(depth)):
                self.ordinal.append(str(image))
            else:
                dense.append((image, depth))
        if self.ordinal:
            warnings.warn(f"{self.name}: {len(self.ordinal)} of {len(records)} depth maps are ordinal ('semantic') "
                          f"maps, not depth, and are dropped (see .ordinal)", stacklevel=5)
        if records and not dense:
            raise DataError(f"{self.name}: all {len(records)} depth maps under {self.root} are ordinal ('semantic') "
                            f"maps (negative values), none is depth; e.g. {self.ordinal[0]}")
        return dense

    def _read_depth(self, depth: Path) -> np.ndarray:
        target = np.asarray(read_h5(depth, self.depth_key), dtype=np.float32)
        if target.ndim != 2:
            raise DataError(f"{depth}: /{self.depth_key} must be (H, W), got shape {target.shape}")
        return target

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, depth = record
        target = self._read_depth(depth)
        raw = {"image": read_image(image), "target": target, "intrinsics": None, "file": str(image)}
        if self.is_ordinal(target):
            # Ordinal labels are not depth: no pixel of this map may reach an SI/SSI target.
            raw["target"] = np.zeros_like(target)
            raw["mask"] = np.zeros(target.shape, bool)
            self.ordinal_masked += 1
            if self.ordinal_masked == 1:
                warnings.warn(f"{self.name}: {depth} is an ordinal ('semantic') map (negative values), not depth: "
                              "every pixel of such maps is masked, so they add nothing to the loss but take "
                              "batch places; build the dataset with drop_ordinal=True (or a list_file of dense "
                              "maps) to drop them from the index", stacklevel=3)
        return raw
