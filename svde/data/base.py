"""The one sample contract and the dataset base class every loader derives from.

A sample is a dict:

* ``image``: float32 (3, H, W), ImageNet-normalised RGB (decoded as uint8, or as float in
  [0, 1] where a dataset stores float RGB, e.g. TUM's ``/gt/img_1``: kept float, never rounded);
  or, when a transform defers the colour jitter to the training device (``data.colour_on``),
  uint8 (3, H, W) RGB (float RGB rounded to 8 bits) with ``colour``: float32 (9,), the drawn
  jitter (:func:`svde.data.colour.finish_batch` turns the batch into the float form); when the
  transform defers the resampling too (``data.warp_on``), uint8 (h, w, 3) RGB as decoded, with
  ``target`` the stored depth ((h, w) float32, or uint16 travelling as int16), no ``mask``, and
  ``warp`` (:mod:`svde.data.warp`), from which ``finish_batch`` makes the crop (a source too
  large to move comes already cropped, its depth scaled: ``warp[0] == 0``);
* ``target``: float32 (1, H, W): depth for ``absolute``/``uts``, disparity for ``utss``,
  zeros for ``ordinal``; invalid pixels hold 0;
* ``mask``: bool (1, H, W), True where ``target`` is valid (finite and > 0);
* ``depth_type``: one of :data:`DEPTH_TYPES` (the values of :class:`svde.types.DepthType`), as a
  plain ``str`` so that samples stay YAML-, JSON- and ``weights_only``-safe (a ``DepthType``
  compares equal to it);
* ``meta``: dict with ``dataset``, ``file`` and ``intrinsics`` (float32 tensor
  ``[fx, fy, cx, cy]`` in pixels of *this* sample's resolution, or ``None``);
* ``pairs`` (ordinal data only): float32 (K, 5) = yA, xA, yB, xB, rel; 0-based; rel = +1 when
  A is farther, -1 when B is farther.

Subclasses implement two narrow hooks: :meth:`DepthDataset.index` (list the samples once) and
:meth:`DepthDataset.read` (decode one into numpy arrays). Validation, masking of bad depths,
augmentation and tensor conversion happen here, once, for every dataset. Images are normalised
with the networks' input contract, :func:`svde.preprocess.normalize_image` (re-exported here).

Example:
    >>> from svde.data.synthetic import SyntheticDataset
    >>> sample = SyntheticDataset(length=1, height=32, width=32, depth_type="uts")[0]
    >>> sample["depth_type"] == DepthType.UTS, type(sample["depth_type"]).__name__, DEPTH_TYPES
    (True, 'str', ('absolute', 'uts', 'utss', 'ordinal'))
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from svde.errors import UserError
from svde.preprocess import IMAGENET_MEAN, IMAGENET_STD, denormalize_image, normalize_image, rgb_uint8, uint8_chw
from svde.types import DENSE, DepthType

__all__ = ["DEPTH_TYPES", "DataError", "DepthDataset", "IMAGENET_MEAN", "IMAGENET_STD", "MIN_SAMPLE_SIZE",
           "check_rgb", "dense_depth_type", "denormalize_image", "normalize_image", "scale_depth", "valid_depth_mask",
           "worker_error"]

ComplexWarning = np.exceptions.ComplexWarning
DEPTH_TYPES = tuple(t.value for t in DepthType)  # ("absolute", "uts", "utss", "ordinal")
# The smallest sample, in pixels per side: one pixel has no depth structure to learn or score (and a
# bilinear resize of it is degenerate).
MIN_SAMPLE_SIZE = 2


class DataError(UserError):
    """A dataset root, file or value is missing or not what the loader expects."""


def check_rgb(image: np.ndarray, file: str) -> None:
    """Raise a :class:`DataError` unless ``image`` is uint8 (H, W, 3), or float (H, W, 3) in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{file}: decoded image must be (H, W, 3) RGB, got {image.dtype} {image.shape}")
    if image.dtype == np.uint8:
        return
    if image.dtype not in (np.float32, np.float64):
        raise DataError(f"{file}: decoded image must be uint8, or float32 in [0, 1], got {image.dtype}")
    if image.size and (not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0):
        raise DataError(f"{file}: a float image must hold finite values in [0, 1], "
                        f"got range [{image.min()}, {image.max()}]")


def check_depth_array(target: Any, file: str) -> None:
    """Raise a :class:`DataError` unless ``target`` is a real-valued (integer or float) numpy array.

    Example:
        >>> check_depth_array(np.zeros((2, 2), np.complex64), "d.npy")
        Traceback (most recent call last):
        svde.data.base.DataError: d.npy: depth must hold real numbers (integer or float), got complex64 values
    """
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iuf":
        kind = target.dtype if isinstance(target, np.ndarray) else type(target).__name__
        raise DataError(f"{file}: depth must hold real numbers (integer or float), got {kind} values")


def describe_record(record: Any) -> str:
    """A dataset record (a path, or a tuple of paths) as the files to name in a message.

    Example:
        >>> describe_record((Path("rgb/a.png"), Path("depth/a.npy"), None))
        'rgb/a.png, depth/a.npy'
    """
    if isinstance(record, (tuple, list)):
        return ", ".join(str(part) for part in record if part is not None)
    return str(record)


def worker_error(exc: BaseException) -> BaseException:
    """``exc`` with its own one-line message when a DataLoader worker raised it; else ``exc`` itself.

    PyTorch re-raises a worker's exception in the main process as the same class, but its message
    is the worker's whole traceback (``Caught DataError in DataLoader worker process 0.`` ...
    ``svde.data.base.DataError: <message>``); the message is the text after that last line's
    class name.

    Example:
        >>> wrapped = DataError("Caught DataError in DataLoader worker process 0." + chr(10) +
        ...                     "svde.data.base.DataError: a.png: corrupt")
        >>> str(worker_error(wrapped))
        'a.png: corrupt'
    """
    text = str(exc)
    if not (text.startswith("Caught ") and "DataLoader worker" in text.split("\n", 1)[0]):
        return exc
    cls = type(exc)
    for prefix in (f"\n{cls.__module__}.{cls.__qualname__}: ", f"\n{cls.__qualname__}: "):
        at = text.rfind(prefix)
        if at >= 0:
            try:
                return cls(text[at + len(prefix):].strip())
            except Exception:  # noqa: BLE001 - a class that takes other arguments keeps the long message
                return exc
    return exc


def dense_depth_type(value: Any, where: str) -> DepthType:
    """``value`` as a :data:`svde.types.DENSE` depth type, else a :class:`DataError` naming ``where``.

    Example:
        >>> dense_depth_type("utss", "rgbd_folder")
        'utss'
    """
    if value not in DENSE:
        raise DataError(f"{where}: depth_type must be {', '.join(map(repr, DENSE[:-1]))} or {DENSE[-1]!r}, got {value!r}")
    return DepthType(value)


def scale_depth(raw: np.ndarray, scale: float) -> np.ndarray:
    """Stored integer depth as float32 in its units, ``raw / scale``, in one pass (uint16 -> float32
    is exact, then one float32 division): how :func:`svde.data.io.read_depth_any` scales a 16-bit PNG.

    Example:
        >>> scale_depth(np.array([1500, 0], np.uint16), 1000.0).tolist()
        [1.5, 0.0]
    """
    return raw.astype(np.float32) if scale == 1.0 else np.divide(raw, np.float32(scale), dtype=np.float32)


def valid_depth_mask(target: np.ndarray) -> np.ndarray:
    """True where a depth/disparity value is usable: finite and strictly positive."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(target) & (target > 0)


class DepthDataset(Dataset):
    """Base class: ``index()`` lists records, ``read(record)`` decodes one.

    ``read`` returns a dict of numpy arrays: ``image`` uint8 (H, W, 3) RGB (or float32 RGB in
    [0, 1] where the dataset stores float colour), ``target``
    float32 (H, W) (depth or disparity in the dataset's ``depth_type``; or the stored integers with
    ``depth_scale``, target = integers / depth_scale: :func:`svde.data.io.read_depth_scaled`), optionally ``mask``
    bool (H, W) (extra validity, ANDed with finite & > 0), ``intrinsics`` (4,) and ``pairs``
    (K, 5), and ``file`` (the path to name in messages).

    Args:
        root: the dataset's root folder (``None`` for generated data).
        split: dataset-specific split name (``None`` for the default).
        transform: a joint transform ``f(raw_dict) -> raw_dict`` applied to the numpy sample
            (see :mod:`svde.data.transforms`), before normalisation.
    """

    name: str = ""
    depth_type: DepthType = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike | None, split: str | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.split = split
        self.transform = transform
        if self.depth_type not in DEPTH_TYPES:
            raise DataError(f"{type(self).__name__}.depth_type must be one of {DEPTH_TYPES}, got {self.depth_type!r}")
        self.depth_type = DepthType(self.depth_type)
        self.records = list(self.index())
        if not self.records:
            raise DataError(f"{self.name or type(self).__name__}: no samples found under {self.root}"
                            f"{f' for split {split!r}' if split else ''}; {self.layout_hint()}")

    # ---- hooks -------------------------------------------------------------------------
    def index(self) -> list[Any]:
        """List the dataset's samples (called once). Raise :class:`DataError` on a bad layout."""
        raise NotImplementedError

    def read(self, record: Any) -> dict[str, Any]:
        """Decode one record into numpy arrays (see the class docstring)."""
        raise NotImplementedError

    def layout_hint(self) -> str:
        """One line describing the expected files, for error messages."""
        return "see the dataset's docstring for the expected layout"

    # ---- shared machinery --------------------------------------------------------------
    def require(self, path: Path | None) -> Path:
        """Return ``path`` if it exists, else raise an error naming it and the expected layout
        (``None``: no root folder was given)."""
        if path is None:
            raise DataError(f"{self.name or type(self).__name__}: no root folder given (root is null); "
                            f"{self.layout_hint()}")
        if not path.exists():
            raise DataError(f"{self.name}: expected {path} (not found); {self.layout_hint()}")
        return path

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record = self.records[i]
        with warnings.catch_warnings():
            # A loader's float cast of complex values would silently drop their imaginary part.
            warnings.simplefilter("error", ComplexWarning)
            try:
                raw = self.read(record)
            except ComplexWarning:
                raise DataError(f"{describe_record(record)}: the file holds complex numbers; depth maps and images "
                                "must hold real numbers") from None
        return self.finish(raw)

    def finish(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate, mask, transform and convert one decoded sample to the sample contract."""
        file = str(raw.get("file", "?"))
        image, target = raw["image"], raw["target"]
        check_rgb(image, file)
        check_depth_array(target, file)
        if min(image.shape[:2]) < MIN_SAMPLE_SIZE:
            raise DataError(f"{file}: the sample is {image.shape[1]}x{image.shape[0]} (WxH); samples must be at "
                            f"least {MIN_SAMPLE_SIZE}x{MIN_SAMPLE_SIZE} pixels")
        if target.shape != image.shape[:2]:
            raise DataError(f"{file}: image is {image.shape[1]}x{image.shape[0]} (WxH) but depth is "
                            f"{target.shape[1] if target.ndim > 1 else '?'}x{target.shape[0]}")
        # A transform that zeroes invalid depth itself (TrainAugment) decides validity (finite, > 0)
        # and scales at its output size, after its warp: fewer pixels, one pass each; it gets only the
        # dataset's own mask. Else it all happens here, at the stored size.
        late = getattr(self.transform, "zeroes_invalid", False)
        scale = raw.get("depth_scale")
        mask = None if raw.get("mask") is None else raw["mask"].astype(bool)
        if not late:
            if scale is not None:
                target, scale = scale_depth(target, scale), None
            target = target.astype(np.float32, copy=False)
            mask = valid_depth_mask(target) if mask is None else valid_depth_mask(target) & mask
            target = np.where(mask, target, np.float32(0))
        # depth_type is set before the transform so that depth-type conversions can check it.
        raw = {**raw, "target": target, "mask": mask, "depth_scale": scale,
               "depth_type": raw.get("depth_type", self.depth_type)}
        if self.transform is not None:
            raw = self.transform(raw)
        if raw.get("depth_scale") is not None:  # a transform's bug, not the data's
            raise RuntimeError(f"{type(self.transform).__name__} left the depth of {file} unscaled")
        depth_type = raw.get("depth_type", self.depth_type)
        if depth_type not in DEPTH_TYPES:
            raise DataError(f"{file}: depth_type must be one of {DEPTH_TYPES}, got {depth_type!r}")
        sample = {
            **(_deferred_arrays(raw) if raw.get("warp") is not None else {
                "image": normalize_image(raw["image"]) if raw.get("colour") is None else uint8_chw(raw["image"]),
                "target": torch.from_numpy(np.ascontiguousarray(raw["target"], dtype=np.float32))[None],
                "mask": torch.from_numpy(np.ascontiguousarray(raw["mask"], dtype=bool))[None]}),
            "depth_type": DepthType(depth_type).value,
            "meta": {
                "dataset": self.name,
                "file": file,
                "intrinsics": None if raw.get("intrinsics") is None
                else torch.as_tensor(np.asarray(raw["intrinsics"], dtype=np.float32)),
            },
        }
        if raw.get("colour") is not None:  # jittered and normalised on the batch (svde.data.colour)
            sample["colour"] = torch.as_tensor(np.asarray(raw["colour"], dtype=np.float32))
        if raw.get("pairs") is not None:
            sample["pairs"] = torch.as_tensor(np.asarray(raw["pairs"], dtype=np.float32))
        return sample


def _deferred_arrays(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A sample the device resamples (:mod:`svde.data.warp`): the arrays as they come, not copied."""
    image, target = rgb_uint8(raw["image"]), raw["target"]
    target = target.view(np.int16) if target.dtype == np.uint16 else target.astype(np.float32, copy=False)
    return {"image": torch.from_numpy(np.ascontiguousarray(image)),
            "target": torch.from_numpy(np.ascontiguousarray(target)), "warp": torch.from_numpy(np.asarray(raw["warp"], np.float64))}
