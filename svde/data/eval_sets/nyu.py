"""NYUv2: the labeled ``.mat`` with its official splits, and the BTS "sync" frames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import read_depth_any, read_h5, read_image
from svde.data.layout import EVAL_SPLITS, IMAGE_EXTS, check_intrinsics, check_split
from svde.types import DepthType

# NYUv2 Kinect colour camera (Silberman et al. toolbox, camera_params.m), 640x480.
NYU_INTRINSICS = (518.8579, 519.46961, 325.58245, 253.73617)


class NYUv2LabeledDataset(DepthDataset):
    """NYUv2 labeled set: ``<root>/nyu_depth_v2_labeled.mat`` with ``splits.mat`` beside it.

    The .mat is MATLAB v7.3 (HDF5). MATLAB stores ``images`` as 480x640x3xN column-major, which
    h5py sees as (N, 3, W, H) uint8; ``rawDepths`` (Kinect depth with holes, what the "NYUv2 Raw"
    protocol evaluates) and ``depths`` (colourised/inpainted) as (N, W, H) float32 metres. Both
    are transposed back to (H, W). ``splits.mat`` (MATLAB v5, or v7.3) holds the 1-based
    ``testNdxs`` (654) and ``trainNdxs`` (795). This is how the authors read it
    (SamsungLabs/geometry-preserving-de, datasets/validation_datasets.py, ``NYUDataset``:
    ``images`` transposed ``(0, 3, 2, 1)``, ``rawDepths`` ``(0, 2, 1)``, ``testNdxs - 1``); a raw
    depth of 0 is a Kinect hole (masked).

    Args:
        split: ``"test"`` (default), ``"train"`` or ``"all"`` (all frames; no splits.mat needed).
        depth_key: ``"rawDepths"`` (default) or ``"depths"``.
        mat_file, splits_file: file names (or paths) relative to ``root``.
        intrinsics: ``[fx, fy, cx, cy]``; the NYU colour camera by default.

    Example:
        >>> ds = NYUv2LabeledDataset("/data/nyu", split="test")  # doctest: +SKIP
    """

    name = "nyu"
    depth_type = DepthType.ABSOLUTE
    SPLIT_KEYS = {"test": "testNdxs", "train": "trainNdxs"}

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_key: str = "rawDepths", mat_file: str = "nyu_depth_v2_labeled.mat",
                 splits_file: str = "splits.mat", intrinsics: Sequence[float] | None = NYU_INTRINSICS) -> None:
        split = split or "test"
        check_split(self.name, split, ("test", "train", "all"))
        if depth_key not in ("rawDepths", "depths"):
            raise DataError(f"{self.name}: depth_key must be 'rawDepths' or 'depths', got {depth_key!r}")
        self.depth_key = depth_key
        self.mat_path = Path(root) / mat_file
        self.splits_path = Path(root) / splits_file
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        self._h5: Any = None
        self._h5_pid: int | None = None
        super().__init__(root, split, transform)
        # Not kept open after indexing: DataLoader workers forked later open their own handle.
        self.close()

    def close(self) -> None:
        """Close the .mat file (it is reopened on the next read)."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5, self._h5_pid = None, None

    def layout_hint(self) -> str:
        return ("expected <root>/nyu_depth_v2_labeled.mat (MATLAB v7.3/HDF5 with 'images' and "
                "'rawDepths'/'depths') and <root>/splits.mat (testNdxs, trainNdxs)")

    def _file(self) -> Any:
        # h5py handles must not cross a fork: DataLoader workers reopen the file in their process.
        if self._h5 is None or self._h5_pid != os.getpid():
            import h5py

            try:
                self._h5 = h5py.File(self.require(self.mat_path), "r")
            except OSError as e:
                raise DataError(f"{self.mat_path}: cannot read as MATLAB v7.3/HDF5 ({e}); {self.layout_hint()}") from None
            self._h5_pid = os.getpid()
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None, "_h5_pid": None}

    def index(self) -> list[int]:
        f = self._file()
        for key in ("images", self.depth_key):
            if key not in f:
                raise DataError(f"{self.mat_path}: no {key!r} dataset; it holds {sorted(f.keys())}")
        images, depths = f["images"], f[self.depth_key]
        if images.ndim != 4 or images.shape[1] != 3 or depths.ndim != 3 or depths.shape != (images.shape[0],) + images.shape[2:]:
            raise DataError(f"{self.mat_path}: expected 'images' (N, 3, W, H) and {self.depth_key!r} (N, W, H) "
                            f"as h5py reads MATLAB v7.3, got {images.shape} and {depths.shape}")
        n = images.shape[0]
        if self.split == "all":
            return list(range(n))
        key = self.SPLIT_KEYS[self.split]
        idx = self._split_indices(key)
        bad = idx[(idx < 1) | (idx > n)]
        if bad.size:
            raise DataError(f"{self.splits_path}: {key} holds 1-based index {int(bad[0])} outside 1..{n} "
                            f"(the number of frames in {self.mat_path.name})")
        return [int(i) - 1 for i in idx]

    def _split_indices(self, key: str) -> np.ndarray:
        import scipy.io

        path = self.require(self.splits_path)
        try:
            values = scipy.io.loadmat(str(path), variable_names=[key]).get(key)
        except NotImplementedError:  # scipy cannot read v7.3 files: those are HDF5
            values = read_h5(path, key)
        except (ValueError, TypeError, OSError) as e:
            raise DataError(f"{path}: cannot read as a MATLAB file ({e}); {self.layout_hint()}") from None
        if values is None:
            raise DataError(f"{path}: no {key!r} variable; expected 'testNdxs' and 'trainNdxs' (1-based)")
        values = np.asarray(values).reshape(-1)
        if values.size == 0 or not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DataError(f"{path}: {key} must be a non-empty list of integer indices")
        return values.astype(np.int64)

    def read(self, record: int) -> dict[str, Any]:
        f = self._file()
        image = np.asarray(f["images"][record])
        if image.dtype != np.uint8:
            raise DataError(f"{self.mat_path}: 'images' must be uint8, got {image.dtype}")
        return {
            "image": np.ascontiguousarray(image.transpose(2, 1, 0)),  # (3, W, H) -> (H, W, 3)
            "target": np.ascontiguousarray(np.asarray(f[self.depth_key][record], dtype=np.float32).T),
            "intrinsics": self.intrinsics,
            "file": f"{self.mat_path}[{record}]",
        }


class NYUv2SyncDataset(DepthDataset):
    """NYUv2 "sync" frames: ``rgb_XXXXX.jpg`` + ``sync_depth_XXXXX.png`` (uint16 mm, 0 = no data).

    Layout and units as the BTS release of the frames is read (cleinc/bts,
    pytorch/bts_dataloader.py: ``depth_gt / 1000.0`` for ``nyu``).

    Two layouts, found recursively under ``root``: the depth beside the image (the BTS/"sync"
    layout, ``<root>/<scene>/rgb_00000.jpg`` + ``sync_depth_00000.png``), or sibling folders
    ``.../rgb/rgb_00000.jpg`` + ``.../depth/sync_depth_00000.png``.

    Args:
        depth_scale: raw units per metre (1000: millimetres).
        intrinsics: ``[fx, fy, cx, cy]``; the NYU colour camera by default.
    """

    name = "nyu_sync"
    depth_type = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_scale: float = 1000.0, intrinsics: Sequence[float] | None = NYU_INTRINSICS) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.depth_scale = depth_scale
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected rgb_XXXXX.jpg with sync_depth_XXXXX.png (uint16 mm) beside it, or in "
                "sibling rgb/ and depth/ folders, anywhere under <root>")

    def index(self) -> list[tuple[Path, Path]]:
        root = self.require(self.root)
        records = []
        for image in sorted(p for p in root.rglob("rgb_*") if p.suffix.lower() in IMAGE_EXTS):
            name = "sync_depth_" + image.stem[len("rgb_"):] + ".png"
            candidates = [image.parent / name]
            if image.parent.name == "rgb":
                candidates.append(image.parent.parent / "depth" / name)
            depth = next((c for c in candidates if c.is_file()), None)
            if depth is None:
                raise DataError(f"{self.name}: no depth for {image}; looked for "
                                f"{', '.join(map(str, candidates))}; {self.layout_hint()}")
            records.append((image, depth))
        return records

    def read(self, record: tuple[Path, Path]) -> dict[str, Any]:
        image, depth = record
        return {"image": read_image(image), "target": read_depth_any(depth, self.depth_scale),
                "intrinsics": self.intrinsics, "file": str(image)}
