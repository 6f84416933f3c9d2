"""Evaluation-set loaders: NYUv2, TUM RGB-D, KITTI, Sintel, DIW and ETH3D in their native layouts.

Every loader returns the ground truth at its native resolution (the evaluator resizes the
prediction, never the ground truth) in metres (Sintel: its scene units), with invalid pixels
(0, NaN, inf, negative) masked by :class:`~svde.data.base.DepthDataset`. ``meta["intrinsics"]``
is ``[fx, fy, cx, cy]`` in pixels where the dataset provides it, else ``None``.

Layouts (``root`` is the dataset folder passed to the constructor):

* ``nyu``: ``<root>/nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5) with ``<root>/splits.mat``.
* ``nyu_sync``: ``rgb_XXXXX.jpg`` + ``sync_depth_XXXXX.png`` (uint16 mm), either side by side in
  one folder (the BTS "sync" layout, any depth of sub-folders) or in sibling ``rgb/`` and
  ``depth/`` folders.
* ``tum``: ``<root>/*.h5`` with ``/gt/img_1``, ``/gt/gt_depth`` and ``/gt/intrinsic`` (the subset of Li et al.).
* ``tum_raw``: a TUM RGB-D sequence folder (``rgb.txt``, ``depth.txt``), or a folder of them.
* ``kitti``: an Eigen test list + raw images + annotated depth, or ``<root>/rgb`` + ``<root>/depth``.
* ``sintel``: ``<root>/final/<scene>/*.png`` + ``<root>/depth/<scene>/*.dpt``
  (+ ``<root>/camdata_left/<scene>/*.cam``).
* ``diw``: ``<root>/DIW_test.csv`` + ``<root>/DIW_test/``.
* ``eth3d``: ``<root>/<scene>/images_out/dslr_images_undistorted/*.JPG`` +
  ``<root>/<scene>/depth/dslr_images_undistorted/*.png`` (uint16 mm, the authors' rendering), or
  the release's ``<scene>/images/dslr_images/*.JPG`` + ``<scene>/ground_truth_depth/dslr_images/``
  (raw float32, inf = no data).

Example:
    >>> from svde.data import build_dataset
    >>> ds = build_dataset("nyu", "/data/nyu", split="test")  # doctest: +SKIP
    >>> len(ds), ds[0]["target"].shape  # doctest: +SKIP
    (654, torch.Size([1, 480, 640]))
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import read_depth_any, read_dpt, read_image, read_raw_float32

logger = logging.getLogger(__name__)

# NYUv2 Kinect colour camera (Silberman et al. toolbox, camera_params.m), 640x480.
NYU_INTRINSICS = (518.8579, 519.46961, 325.58245, 253.73617)
# TUM RGB-D published calibration of the three Kinects, 640x480 (vision.in.tum.de, "Intrinsic
# Camera Calibration of the Kinect"); the ROS default 525/319.5/239.5 is not used.
TUM_INTRINSICS: dict[str, tuple[float, float, float, float]] = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
}
TUM_SIZE = (640, 480)  # (width, height) the TUM intrinsics refer to
SINTEL_CAM_TAG = 202021.25
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
EVAL_SPLITS = (None, "test")  # eval sets whose root *is* the test set


# ---- helpers shared by the loaders (train_sets imports them too) ---------------------------------
def check_split(dataset: str, split: str | None, allowed: Sequence[str | None]) -> None:
    """Raise a :class:`DataError` unless ``split`` is one of ``allowed``."""
    if split not in allowed:
        raise DataError(f"{dataset}: unknown split {split!r}; valid splits: {', '.join(map(repr, allowed))}")


def as_intrinsics(value: Any, where: str) -> np.ndarray | None:
    """``None`` or four positive finite numbers ``[fx, fy, cx, cy]`` -> float64 (4,) array."""
    if value is None:
        return None
    try:
        k = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        k = np.zeros(0)
    if k.shape != (4,) or not np.all(np.isfinite(k)) or not np.all(k > 0):
        raise DataError(f"{where}: intrinsics must be four positive numbers [fx, fy, cx, cy], got {value!r}")
    return k


def scale_intrinsics(k: np.ndarray | None, from_wh: tuple[int, int], to_wh: tuple[int, int]) -> np.ndarray | None:
    """Intrinsics of a ``from_wh`` frame for the same frame resized to ``to_wh`` (width, height).

    Example:
        >>> scale_intrinsics(np.array([500.0, 500.0, 320.0, 240.0]), (640, 480), (320, 240)).tolist()
        [250.0, 250.0, 160.0, 120.0]
    """
    if k is None or tuple(from_wh) == tuple(to_wh):
        return k
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    return np.array([k[0] * sx, k[1] * sy, k[2] * sx, k[3] * sy])


def read_h5(path: str | os.PathLike, key: str, optional: bool = False) -> np.ndarray | None:
    """Read one dataset of an HDF5 file (or MATLAB v7.3 ``.mat``) as a numpy array.

    A missing ``key`` is an error naming the file and what it holds, or ``None`` if ``optional``.

    Example:
        >>> depth = read_h5("megadepth/0001.h5", "depth")  # doctest: +SKIP
    """
    import h5py  # only the HDF5-based loaders need it

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            if key not in f or not isinstance(f[key], h5py.Dataset):
                if optional and key not in f:
                    return None
                raise DataError(f"{path}: no dataset {key!r} in the HDF5 file; it holds {_h5_names(f)}")
            return f[key][()]
    except OSError as e:  # not HDF5, truncated, ...
        raise DataError(f"{path}: cannot read as HDF5 ({e})") from None


def _h5_names(f: Any) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return names[:20]


def as_rgb(array: np.ndarray, file: str) -> np.ndarray:
    """An (H, W, 3) array as the sample contract's RGB: uint8 as it is, float as float32 in [0, 1].

    Float images are kept float (never rounded to 8 bits); one whose maximum exceeds 1 is taken to
    be on a 0..255 scale and divided by 255, as the authors' ``normalize_img`` does
    (SamsungLabs/geometry-preserving-de, datasets/validation_datasets.py).
    """
    if array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"{file}: expected an (H, W, 3) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{file}: expected a uint8 or float image, got {array.dtype}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255:
        raise DataError(f"{file}: float image values must be finite and in [0, 1] or [0, 255], "
                        f"got range [{np.nanmin(array)}, {np.nanmax(array)}]")
    image = np.ascontiguousarray(array, dtype=np.float32)
    return image / np.float32(255.0) if image.max() > 1.0 else image


def pair_by_stem(image_dir: Path, depth_dir: Path, depth_names: Callable[[Path], Iterable[str]],
                 image_exts: Sequence[str] = IMAGE_EXTS, dataset: str = "") -> list[tuple[Path, Path]]:
    """Pair every image in ``image_dir`` with the first existing ``depth_dir / name`` of ``depth_names(image)``.

    An image with no depth file is an error naming the image and the depth files looked for.
    """
    images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in image_exts)
    pairs = []
    for image in images:
        candidates = [depth_dir / n for n in depth_names(image)]
        depth = next((c for c in candidates if c.is_file()), None)
        if depth is None:
            raise DataError(f"{dataset}: no depth file for {image}; looked for {', '.join(map(str, candidates))}")
        pairs.append((image, depth))
    return pairs


def parse_list(path: Path, min_tokens: int = 1) -> list[tuple[int, list[str]]]:
    """(line number, tokens) of a whitespace-separated list file, skipping blanks and ``#`` comments.

    Example:
        >>> parse_list(Path("eigen_test_files.txt"))[0]  # doctest: +SKIP
        (1, ['2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png'])
    """
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < min_tokens:
            raise DataError(f"{path}:{n}: expected at least {min_tokens} fields, got {line!r}")
        rows.append((n, tokens))
    return rows


# ---- NYUv2 -----------------------------------------------------------------------------------------
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
    depth_type = "absolute"
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
        self.intrinsics = as_intrinsics(intrinsics, self.name)
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
    depth_type = "absolute"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_scale: float = 1000.0, intrinsics: Sequence[float] | None = NYU_INTRINSICS) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.depth_scale = depth_scale
        self.intrinsics = as_intrinsics(intrinsics, self.name)
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


# ---- TUM RGB-D -------------------------------------------------------------------------------------
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
    depth_type = "absolute"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 intrinsics: Sequence[float] | None = None) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.intrinsics = as_intrinsics(intrinsics, self.name)
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
                k = scale_intrinsics(np.array(TUM_INTRINSICS["fr2"]), TUM_SIZE, (image.shape[1], image.shape[0]))
            else:
                K = np.asarray(K, dtype=np.float64)
                if K.shape != (3, 3):
                    raise DataError(f"{record}:/gt/intrinsic must be a 3x3 camera matrix, got shape {K.shape}")
                k = as_intrinsics([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], f"{record}:/gt/intrinsic")
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
    depth_type = "absolute"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 max_dt: float = 0.02, depth_scale: float = 5000.0, intrinsics: Sequence[float] | None = None) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.max_dt = float(max_dt)
        self.depth_scale = depth_scale
        self.intrinsics = as_intrinsics(intrinsics, self.name)
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


# ---- KITTI -----------------------------------------------------------------------------------------
def read_kitti_calib(path: Path, camera: str = "02") -> np.ndarray:
    """``[fx, fy, cx, cy]`` of rectified camera ``camera`` from KITTI's ``calib_cam_to_cam.txt``.

    Example:
        >>> read_kitti_calib(Path("2011_09_26/calib_cam_to_cam.txt"))  # doctest: +SKIP
        array([721.5377, 721.5377, 609.5593, 172.854 ])
    """
    key = f"P_rect_{camera}:"
    for line in path.read_text().splitlines():
        if line.startswith(key):
            try:
                p = np.array([float(v) for v in line[len(key):].split()]).reshape(3, 4)
            except ValueError:
                break
            return np.array([p[0, 0], p[1, 1], p[0, 2], p[1, 2]])
    raise DataError(f"{path}: no valid '{key}' line (3x4 projection matrix)")


class KITTIDataset(DepthDataset):
    """KITTI with annotated depth (uint16 PNG, metres = value / 256, 0 = no data).

    Encoding from the KITTI depth prediction devkit readme.txt ("depth(u,v) = I(u,v)/256.0;
    valid(u,v) = I(u,v)>0"; a copy is in irolaina/FCRN-DepthPrediction,
    tensorflow/modules/evaluation/kitti_depth_prediction_devkit/readme.txt).

    Two layouts:

    * **list** (``split_file`` given, e.g. the Eigen test split): each line names an image of
      the raw data relative to ``rgb_root``, in one of the common forms

      - ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png [depth|None [focal]]``
        (the BTS list: the optional second field is the depth path relative to ``depth_root``,
        ``None`` meaning no ground truth);
      - ``2011_09_26/2011_09_26_drive_0002_sync 69 l`` (the monodepth2 list; ``l``/``r`` =
        ``image_02``/``image_03``);
      - ``<left image path> <right image path>`` (the monodepth list; the right view is ignored).

      Without an explicit depth path the annotated depth of the KITTI depth release is looked
      up as ``<depth_root>[/train|/val]/<drive>/proj_depth/groundtruth/image_0X/<frame>.png``
      (an explicit one is also looked for under ``train/`` and ``val/``, the release's folders).
      Image extensions ``.png``/``.jpg`` are interchangeable (lists often say ``.jpg``). Frames
      without ground truth are skipped (``missing_depth="skip"``, recorded in ``self.skipped``
      and warned about; 45 of the 697 Eigen test frames) or raise (``"error"``).
    * **folder** (no ``split_file``): ``<root>/rgb/*.png`` + ``<root>/depth/<same name>.png``.

    Intrinsics: the ``intrinsics`` option for every frame; else ``P_rect_0X`` of
    ``<rgb_root>/<date>/calib_cam_to_cam.txt`` (list layout) or ``cam_in`` of
    ``<root>/test_annotations.json`` matched by image name (folder layout); else ``None``.

    Args:
        split_file, rgb_root, depth_root: paths relative to ``root`` (absolute ones allowed);
            the roots default to ``root``.
        depth_scale: raw units per metre (256).
        intrinsics: ``[fx, fy, cx, cy]`` for every frame, overriding the calibration files.
        missing_depth: ``"skip"`` or ``"error"`` for listed frames without ground truth.
    """

    name = "kitti"
    depth_type = "absolute"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 split_file: str | os.PathLike | None = None, rgb_root: str | os.PathLike | None = None,
                 depth_root: str | os.PathLike | None = None, depth_scale: float = 256.0,
                 intrinsics: Sequence[float] | None = None, missing_depth: str = "skip") -> None:
        check_split(self.name, split, EVAL_SPLITS)
        if missing_depth not in ("skip", "error"):
            raise DataError(f"{self.name}: missing_depth must be 'skip' or 'error', got {missing_depth!r}")
        root = Path(root)
        self.split_file = None if split_file is None else root / split_file
        self.rgb_root = root if rgb_root is None else root / rgb_root
        self.depth_root = root if depth_root is None else root / depth_root
        self.depth_scale = depth_scale
        self.intrinsics = as_intrinsics(intrinsics, self.name)
        self.missing_depth = missing_depth
        self.skipped: list[str] = []
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected split_file (lines '<date>/<drive>/image_02/data/<frame>.png [depth]' under rgb_root, "
                "annotated depth under depth_root/<drive>/proj_depth/groundtruth/image_02/), "
                "or <root>/rgb/*.png with <root>/depth/*.png (uint16, metres * 256)")

    def index(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        self.require(self.root)
        return self._index_list() if self.split_file is not None else self._index_folder()

    def _index_folder(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        pairs = pair_by_stem(self.require(self.root / "rgb"), self.require(self.root / "depth"),
                             lambda p: [p.stem + ".png"], dataset=self.name)
        per_file: dict[str, np.ndarray | None] = {}
        annotations = self.root / "test_annotations.json"
        if self.intrinsics is None and annotations.is_file():
            try:
                entries = json.loads(annotations.read_text())["files"]
                per_file = {Path(e["rgb"]).name: as_intrinsics(e.get("cam_in"), str(annotations)) for e in entries}
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{annotations}: expected {{'files': [{{'rgb': ..., 'cam_in': [fx, fy, cx, cy]}}]}} ({e})") from None
        return [(img, dep, self.intrinsics if self.intrinsics is not None else per_file.get(img.name))
                for img, dep in pairs]

    def _index_list(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        path = self.require(self.split_file)
        calibs: dict[str, np.ndarray | None] = {}
        records = []
        for n, tokens in parse_list(path):
            where = f"{path}:{n}"
            if len(tokens) == 3 and tokens[1].isdigit() and tokens[2] in ("l", "r"):  # monodepth2 form
                cam = "image_02" if tokens[2] == "l" else "image_03"
                rel = Path(tokens[0]) / cam / "data" / f"{int(tokens[1]):010d}.png"
                depth_rel = None
            else:
                rel = Path(tokens[0])
                # A second image path is the right view of the monodepth list, not a depth map.
                depth_rel = tokens[1] if len(tokens) > 1 and not re.search(r"image_0[23]/data/", tokens[1]) else None
            parts = rel.parts
            if len(parts) != 5 or not re.fullmatch(r"image_0[23]", parts[2]) or parts[3] != "data":
                raise DataError(f"{where}: expected '<date>/<drive>/image_02|image_03/data/<frame>.png', got {tokens[0]!r}")
            date, drive, cam, _, frame = parts
            image = self._existing([self.rgb_root / rel.with_suffix(ext) for ext in (rel.suffix, ".png", ".jpg")])
            if image is None:
                raise DataError(f"{where}: image {self.rgb_root / rel} not found; {self.layout_hint()}")
            if depth_rel is None:
                gt = Path(drive) / "proj_depth" / "groundtruth" / cam / (Path(frame).stem + ".png")
                candidates = [self.depth_root / sub / gt for sub in ("", "train", "val")]
            else:
                candidates = [] if depth_rel == "None" else [self.depth_root / sub / depth_rel for sub in ("", "train", "val")]
            depth = self._existing(candidates)
            if depth is None:
                if self.missing_depth == "error":
                    raise DataError(f"{where}: no annotated depth for {image}; looked for "
                                    f"{', '.join(map(str, candidates)) or 'nothing (listed as None)'}")
                self.skipped.append(str(image))
                continue
            if self.intrinsics is not None:
                k = self.intrinsics
            else:
                if date not in calibs:
                    calib = self.rgb_root / date / "calib_cam_to_cam.txt"
                    calibs[date] = read_kitti_calib(calib, cam[-2:]) if calib.is_file() else None
                k = calibs[date]
            records.append((image, depth, k))
        if self.skipped:
            warnings.warn(f"{self.name}: {len(self.skipped)} of {len(records) + len(self.skipped)} listed frames "
                          f"have no annotated depth and are skipped (see .skipped)", stacklevel=3)
        return records

    @staticmethod
    def _existing(paths: Iterable[Path]) -> Path | None:
        return next((p for p in paths if p.is_file()), None)

    def read(self, record: tuple[Path, Path, np.ndarray | None]) -> dict[str, Any]:
        image, depth, k = record
        return {"image": read_image(image), "target": read_depth_any(depth, self.depth_scale),
                "intrinsics": k, "file": str(image)}


# ---- Sintel ----------------------------------------------------------------------------------------
def read_sintel_cam(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Sintel ``.cam`` file: float32 tag 202021.25, then K (3x3) and [R|t] (3x4) float64.

    Example:
        >>> K, Rt = read_sintel_cam("sintel/camdata_left/alley_1/frame_0001.cam")  # doctest: +SKIP
    """
    path = Path(path)
    raw = path.read_bytes() if path.is_file() else None
    if raw is None:
        raise DataError(f"{path}: file not found")
    if len(raw) != 4 + 8 * 21:
        raise DataError(f"{path}: a Sintel .cam file is {4 + 8 * 21} bytes, got {len(raw)}")
    tag = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if tag != np.float32(SINTEL_CAM_TAG):
        raise DataError(f"{path}: wrong .cam tag {tag}; expected {SINTEL_CAM_TAG}")
    values = np.frombuffer(raw, dtype="<f8", offset=4)
    return values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy()


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
    depth_type = "absolute"

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


# ---- DIW -------------------------------------------------------------------------------------------
class DIWDataset(DepthDataset):
    """Depth in the Wild (Chen et al.): ``<root>/DIW_test.csv`` + the images in ``<root>/DIW_test/``.

    The CSV has two lines per sample: the image path relative to ``root`` (e.g.
    ``./DIW_test/xxx.thumb``, a JPEG), then ``yA,xA,yB,xB,rel,w,h`` with 1-based pixel
    coordinates, ``rel`` ``>`` when point A is farther than B (``<``: closer), and the image
    width and height. Samples are ordinal: ``pairs`` (1, 5) = 0-based ``yA, xA, yB, xB`` and
    ``rel`` = +1 when A is farther, -1 otherwise; ``target`` is zeros and ``mask`` all False.

    Coordinates follow the authors (SamsungLabs/geometry-preserving-de,
    datasets/diw_dataset_eval.py): 1-based -> 0-based by subtracting 1, then clipped to the
    decoded image (``0..W-1``, ``0..H-1``) and floored; annotations that fall outside the image
    are thus moved to its border, not rejected. The image's own size is used (as the authors
    do); a CSV ``w, h`` that disagrees is logged.

    Args:
        csv_file: the annotation file, relative to ``root``.
    """

    name = "diw"
    depth_type = "ordinal"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 csv_file: str = "DIW_test.csv") -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.csv_path = Path(root) / csv_file
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected <root>/DIW_test.csv (two lines per sample: image path relative to <root>, then "
                "'yA,xA,yB,xB,>|<,width,height', 1-based) and the images in <root>/DIW_test/")

    def index(self) -> list[tuple[Path, np.ndarray, tuple[int, int], str]]:
        path = self.require(self.csv_path)
        lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        if len(lines) % 2:
            raise DataError(f"{path}: expected two lines per sample (image path, then annotation); "
                            f"the last sample (line {lines[-1][0]}) has no annotation line")
        records = []
        for (_, image_line), (n, ann) in zip(lines[::2], lines[1::2]):
            where = f"{path}:{n}"
            fields = [f.strip() for f in ann.split(",")]
            try:
                if len(fields) != 7 or fields[4] not in (">", "<"):
                    raise ValueError
                ya, xa, yb, xb = (float(fields[i]) for i in range(4))
                w, h = int(fields[5]), int(fields[6])
                if not all(np.isfinite([ya, xa, yb, xb])):
                    raise ValueError
            except ValueError:
                raise DataError(f"{where}: expected 'yA,xA,yB,xB,>|<,width,height' (numbers), got {ann!r}") from None
            rel = 1.0 if fields[4] == ">" else -1.0
            pairs = np.array([[ya - 1, xa - 1, yb - 1, xb - 1, rel]], dtype=np.float64)
            records.append((self.root / image_line, pairs, (w, h), where))
        return records

    def read(self, record: tuple[Path, np.ndarray, tuple[int, int], str]) -> dict[str, Any]:
        image_path, pairs, (w, h), where = record
        image = read_image(image_path)
        img_h, img_w = image.shape[:2]
        if (img_h, img_w) != (h, w):
            logger.warning("%s: image is %dx%d (WxH) but %s says %dx%d; clipping to the image", image_path,
                           img_w, img_h, where, w, h)
        pairs = pairs.copy()
        pairs[:, [0, 2]] = np.floor(np.clip(pairs[:, [0, 2]], 0, img_h - 1))
        pairs[:, [1, 3]] = np.floor(np.clip(pairs[:, [1, 3]], 0, img_w - 1))
        return {"image": image, "target": np.zeros((img_h, img_w), np.float32), "mask": np.zeros((img_h, img_w), bool),
                "pairs": pairs.astype(np.float32), "intrinsics": None, "file": str(image_path)}


# ---- ETH3D -----------------------------------------------------------------------------------------
class ETH3DDataset(DepthDataset):
    """ETH3D high-res multi-view training scenes, in either of two layouts (per scene):

    * **authors' rendering** (what SamsungLabs/geometry-preserving-de,
      datasets/validation_datasets.py, ``ETH3DDataset`` reads):
      ``<scene>/images_out/dslr_images_undistorted/DSC_XXXX.JPG`` with
      ``<scene>/depth/dslr_images_undistorted/DSC_XXXX.png``, uint16 millimetres (their
      ``/ 1000.0``), 0 = no data.
    * **official release** (https://www.eth3d.net/documentation; as prs-eth/Marigold,
      src/dataset/eth3d_dataset.py and data_split/eth3d/eth3d_filename_list.txt, pairs them):
      ``<scene>/images/dslr_images/DSC_XXXX.JPG`` with
      ``<scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG``, which despite its name is a
      headerless little-endian float32 raster of the image's size (6048x4032), metres, ``inf``
      where there is no ground truth (masked).

    ``meta["intrinsics"]`` is ``None`` unless given through ``intrinsics``.

    Args:
        depth_scale: raw PNG units per metre in the authors' layout (1000: millimetres).
    """

    name = "eth3d"
    depth_type = "absolute"
    IMAGES = Path("images_out") / "dslr_images_undistorted"
    DEPTHS = Path("depth") / "dslr_images_undistorted"
    RELEASE_IMAGES = Path("images") / "dslr_images"
    RELEASE_DEPTHS = Path("ground_truth_depth") / "dslr_images"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_scale: float = 1000.0, intrinsics: Sequence[float] | None = None) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.depth_scale = depth_scale
        self.intrinsics = as_intrinsics(intrinsics, self.name)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return (f"expected <root>/<scene>/{self.IMAGES.as_posix()}/*.JPG with "
                f"<root>/<scene>/{self.DEPTHS.as_posix()}/*.png (uint16, mm), or the release's "
                f"<root>/<scene>/{self.RELEASE_IMAGES.as_posix()}/*.JPG with "
                f"<root>/<scene>/{self.RELEASE_DEPTHS.as_posix()}/<same name> (raw float32, inf = no data)")

    def index(self) -> list[tuple[Path, Path, bool]]:
        root = self.require(self.root)
        records = []
        for scene in sorted(p for p in root.iterdir() if p.is_dir()):
            if (scene / self.IMAGES).is_dir():
                records += [(i, d, False) for i, d in pair_by_stem(
                    scene / self.IMAGES, scene / self.DEPTHS, lambda p: [p.stem + ".png"],
                    image_exts=(".jpg",), dataset=self.name)]
            elif (scene / self.RELEASE_IMAGES).is_dir():
                records += [(i, d, True) for i, d in pair_by_stem(
                    scene / self.RELEASE_IMAGES, scene / self.RELEASE_DEPTHS, lambda p: [p.name],
                    image_exts=(".jpg",), dataset=self.name)]
        return records

    def read(self, record: tuple[Path, Path, bool]) -> dict[str, Any]:
        image_path, depth_path, raw = record
        image = read_image(image_path)
        depth = (read_raw_float32(depth_path, *image.shape[:2]) if raw
                 else read_depth_any(depth_path, self.depth_scale))
        return {"image": image, "target": depth, "intrinsics": self.intrinsics, "file": str(image_path)}
