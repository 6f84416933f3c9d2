"""TUM RGB-D: the HDF5 subset of Li et al. the authors evaluate on, and raw sequences."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import as_rgb, read_depth_any, read_h5, read_image
from svde.data.layout import EVAL_SPLITS, check_intrinsics, check_split, parse_list
from svde.geometry import scale_intrinsics
from svde.types import DepthType

# TUM RGB-D published calibration of the three Kinects, 640x480 (vision.in.tum.de, "Intrinsic
# Camera Calibration of the Kinect"); the ROS default 525/319.5/239.5 is not used.
TUM_INTRINSICS: dict[str, tuple[float, float, float, float]] = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
}
TUM_SIZE = (640, 480)  # (width, height) the TUM intrinsics refer to


class TUMH5Dataset(DepthDataset):
    """TUM RGB-D subset of Li et al. (Mannequin Challenge), the authors' evaluation files: ``<root>/*.h5``.

    Each file holds ``/gt/img_1`` (H, W, 3), float RGB in [0, 1] (uint8 accepted), kept float all
    the way to normalisation as the authors do (SamsungLabs/geometry-preserving-de,
    datasets/validation_datasets.py, ``TUMDataset``); ``/gt/gt_depth`` (H, W) in metres, valid
    where > 0 (the authors: ``depth > 1e-8``); and ``/gt/intrinsic``, the 3x3 camera matrix of
    the stored frame (google/mannequinchallenge, loaders/image_folder.py, ``TUMImageFolder``
    reads it as ``K`` and uses it on the stored pixel grid), read into ``meta["intrinsics"]`` as
    ``[K[0,0], K[1,1], K[0,2], K[1,2]]``.

    Args:
        intrinsics: ``[fx, fy, cx, cy]`` overriding the files' ``/gt/intrinsic``. Where a file
            has no ``/gt/intrinsic`` and none is given, the fr2 Kinect calibration (640x480) is
            scaled to the stored resolution.
    """

    name = "tum"
    depth_type = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 intrinsics: Sequence[float] | None = None) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected <root>/*.h5, each with /gt/img_1 (H, W, 3), /gt/gt_depth (H, W, metres) "
                "and /gt/intrinsic (3x3)")

    def index(self) -> list[Path]:
        return sorted(self.require(self.root).glob("*.h5"))

    def read(self, record: Path) -> dict[str, Any]:
        image = as_rgb(read_h5(record, "gt/img_1"), f"{record}:/gt/img_1")
        depth = np.asarray(read_h5(record, "gt/gt_depth"), dtype=np.float32)
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[:, :, 0]
        k = self.intrinsics
        if k is None:
            K = read_h5(record, "gt/intrinsic", optional=True)
            if K is None:
                k = np.array(scale_intrinsics(TUM_INTRINSICS["fr2"], TUM_SIZE[::-1], image.shape[:2]))
            else:
                K = np.asarray(K, dtype=np.float64)
                if K.shape != (3, 3):
                    raise DataError(f"{record}:/gt/intrinsic must be a 3x3 camera matrix, got shape {K.shape}")
                k = check_intrinsics([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], f"{record}:/gt/intrinsic")
        return {"image": image, "target": depth, "file": str(record), "intrinsics": k}


def associate_timestamps(a: np.ndarray, b: np.ndarray, max_dt: float) -> list[tuple[int, int]]:
    """One-to-one association of two timestamp lists, closest pairs first, within ``max_dt``.

    The greedy rule of TUM's ``associate.py``; returns (index in a, index in b) sorted by ``a``.

    Example:
        >>> associate_timestamps(np.array([0.0, 1.0, 2.0]), np.array([0.01, 1.5, 2.015]), 0.02)
        [(0, 0), (2, 2)]
    """
    order = np.argsort(b, kind="stable")
    bs = b[order]
    candidates = []
    for i, t in enumerate(a):
        lo, hi = np.searchsorted(bs, t - max_dt, side="left"), np.searchsorted(bs, t + max_dt, side="right")
        for j in range(lo, hi):
            if abs(bs[j] - t) < max_dt:  # strict, as associate.py
                candidates.append((abs(bs[j] - t), i, int(order[j])))
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in sorted(candidates):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return sorted(pairs)


class TUMRawDataset(DepthDataset):
    """Raw TUM RGB-D sequences: ``rgb.txt`` and ``depth.txt`` (``timestamp path`` lines).

    ``root`` is one sequence folder, or a folder whose sub-folders are sequences. Each RGB frame
    is matched to the depth frame with the nearest timestamp within ``max_dt`` seconds
    (one-to-one, as TUM's ``associate.py``); unmatched frames are left out. Depth PNGs are uint16
    with 5000 units per metre, 0 = no data (TUM RGB-D "File Formats" page,
    vision.in.tum.de/data/datasets/rgbd-dataset/file_formats: "scaled by a factor of 5000 ... A
    pixel value of 0 means missing value/no data").

    Args:
        max_dt: largest timestamp difference (s) for a match.
        depth_scale: raw units per metre.
        intrinsics: ``[fx, fy, cx, cy]`` for every sequence, or ``None`` to pick the published
            fr1/fr2/fr3 calibration from the sequence name (``freiburgN`` or ``frN``), else none.
    """

    name = "tum_raw"
    depth_type = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 max_dt: float = 0.02, depth_scale: float = 5000.0, intrinsics: Sequence[float] | None = None) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.max_dt = float(max_dt)
        self.depth_scale = depth_scale
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected a TUM RGB-D sequence folder with rgb.txt and depth.txt ('timestamp path' lines), "
                "or a folder of such sequences")

    @staticmethod
    def sequence_intrinsics(sequence: str) -> np.ndarray | None:
        """The published fr1/fr2/fr3 calibration for a sequence name, or ``None``.

        Example:
            >>> TUMRawDataset.sequence_intrinsics("rgbd_dataset_freiburg2_desk_with_person").tolist()
            [520.9, 521.0, 325.1, 249.7]
        """
        m = re.search(r"(?:freiburg|fr)([123])(?!\d)", sequence.lower())
        return None if m is None else np.array(TUM_INTRINSICS[f"fr{m.group(1)}"])

    def _read_list(self, path: Path) -> tuple[np.ndarray, list[Path]]:
        stamps, files = [], []
        for n, tokens in parse_list(self.require(path), min_tokens=2):
            try:
                stamps.append(float(tokens[0]))
            except ValueError:
                raise DataError(f"{path}:{n}: expected 'timestamp path', got {' '.join(tokens)!r}") from None
            files.append(path.parent / tokens[1])
        return np.array(stamps, dtype=np.float64), files

    def index(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        root = self.require(self.root)
        sequences = [root] if (root / "rgb.txt").is_file() else sorted(
            p for p in root.iterdir() if p.is_dir() and (p / "rgb.txt").is_file())
        records = []
        for seq in sequences:
            rgb_t, rgb_f = self._read_list(seq / "rgb.txt")
            dep_t, dep_f = self._read_list(seq / "depth.txt")
            k = self.intrinsics if self.intrinsics is not None else self.sequence_intrinsics(seq.name)
            records += [(rgb_f[i], dep_f[j], k) for i, j in associate_timestamps(rgb_t, dep_t, self.max_dt)]
        return records

    def read(self, record: tuple[Path, Path, np.ndarray | None]) -> dict[str, Any]:
        image, depth, k = record
        return {"image": read_image(image), "target": read_depth_any(depth, self.depth_scale),
                "intrinsics": k, "file": str(image)}
