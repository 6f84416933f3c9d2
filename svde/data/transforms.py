"""Joint augmentation (paper §4.1.1) and depth-type conversion (paper §4.4.1).

Transforms are callables on the raw numpy dict that :meth:`DepthDataset.finish` passes them
(``image`` uint8 (H, W, 3), ``target`` float32 (H, W) with 0 at invalid pixels, ``mask`` bool
(H, W), ``depth_type``, and optionally ``intrinsics`` (4,), ``pairs`` (K, 5), ``file``); they
return a dict of the same form. A transform with ``zeroes_invalid = True`` (:class:`TrainAugment`,
first in a :class:`Compose`) is passed the depth as read instead (NaN, inf and values <= 0
kept; stored uint16 with ``depth_scale``; ``mask`` only the dataset's own, or None) and decides
validity, zeroes and scales it itself, at its output size.

* :func:`build_train_transform`: resize (to cover the crop, times a random scale), pad, random
  crop, rotation, horizontal flip and colour jitter. By default (:class:`TrainAugment`) the
  geometric steps are composed into one pixel map and applied with one ``cv2.warpAffine`` per
  array (or on the device: :mod:`svde.data.warp`), the image in its decoded dtype (uint8);
  ``legacy=True``: svde 0.2's albumentations pipeline (:class:`JointTransform`: one resampling
  per step), kept for the benchmark (no config reaches it). Depth is resampled nearest-neighbour (the mask
  follows it: :class:`TrainAugment` derives it from the warped depth, the legacy pipeline warps
  it) and padded / rotated-in pixels are invalid (mask 0), so image and depth stay aligned to the pixel.
  Intrinsics are updated exactly for resize, pad, crop and flip (a flipped sample shows the
  mirrored scene, so ``fx`` stays positive). A rotation about the image centre is a camera roll about the optical axis when
  ``fx == fy``: the intrinsics are then kept (same focal length, principal point rotated with
  the image) and the sample's camera frame is the rolled one; with ``fx != fy`` a rotated image
  is no longer a pinhole view and intrinsics become ``None``. Ordinal ``pairs`` move with the
  pixels; pairs leaving the crop are dropped.
* :class:`ToUTS` / :class:`ToUTSS` turn absolute depth into up-to-scale depth or up-to-shift-scale
  disparity with random factors; :func:`to_uts` / :func:`to_utss` are the deterministic cores.

Random draws come from torch's global generator, so augmentation is reproducible under
``torch.manual_seed`` and differs between DataLoader workers (which torch seeds separately).

Example:
    >>> import numpy as np
    >>> t = build_train_transform(height=64, width=96)
    >>> raw = {"image": np.zeros((120, 160, 3), np.uint8), "target": np.ones((120, 160), np.float32),
    ...        "mask": np.ones((120, 160), bool), "depth_type": "absolute", "intrinsics": [100, 100, 79.5, 59.5]}
    >>> out = t(raw)
    >>> out["image"].shape, out["image"].dtype, out["target"].shape, out["mask"].dtype
    ((64, 96, 3), dtype('uint8'), (64, 96), dtype('bool'))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import cv2
import numpy as np
import torch

from svde.data.base import DataError, scale_depth, valid_depth_mask
from svde.data.colour import JITTER, encode_colour, jitter_image
from svde.data.warp import defer_warp, warp_vector, with_conversion
from svde.types import SCALE_INVARIANT, DepthType

if TYPE_CHECKING:  # albumentations takes ~2 s to import: only the augmentation builders load it
    import albumentations as A

Raw = dict[str, Any]
RawTransform = Callable[[Raw], Raw]

_RESIZES = ("SmallestMaxSize", "LongestMaxSize", "RandomScale", "Resize")  # albumentations resizes


# ---- depth-type conversion -------------------------------------------------------------------
def to_uts(depth: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """Up-to-scale depth: ``depth * scale`` on ``mask``, 0 elsewhere.

    Example:
        >>> to_uts(np.array([2.0, 4.0]), np.array([True, False]), 0.5)
        array([1., 0.], dtype=float32)
    """
    if not (math.isfinite(scale) and scale > 0):
        raise DataError(f"UTS scale must be a positive finite number, got {scale}")
    return np.where(mask, depth * np.float32(scale), 0.0).astype(np.float32)


def to_utss(depth: np.ndarray, mask: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Up-to-shift-scale disparity: ``scale / depth + shift * median(scale / depth)`` on ``mask``.

    The shift is relative to the median scaled disparity, so one ``shift_range`` suits every
    depth range; it must be >= 0 so that disparity stays positive (the sample contract).

    Example:
        >>> to_utss(np.array([1.0, 2.0, 4.0]), np.ones(3, bool), 2.0, 0.5)
        array([2.5, 1.5, 1. ], dtype=float32)
    """
    if not (math.isfinite(scale) and scale > 0):
        raise DataError(f"UTSS scale must be a positive finite number, got {scale}")
    if not (math.isfinite(shift) and shift >= 0):
        raise DataError(f"UTSS shift must be a finite number >= 0 (disparity must stay positive), got {shift}")
    out = np.zeros(depth.shape, np.float32)
    if mask.any():
        disp = np.float32(scale) / depth[mask].astype(np.float32)
        out[mask] = disp + np.float32(shift) * np.median(disp)
    return out


def _uniform(low: float, high: float) -> float:
    """One draw from torch's global generator (seeded per DataLoader worker)."""
    return float(low + (high - low) * torch.rand(()).item())


def _check_range(name: str, rng: Sequence[float], positive: bool) -> tuple[float, float]:
    lo, hi = (float(v) for v in rng)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi) or (positive and lo <= 0) or (not positive and lo < 0):
        raise ValueError(f"{name} must be (low, high) with {'0 <' if positive else '0 <='} low <= high, got {tuple(rng)}")
    return lo, hi


class ToUTS:
    """Absolute (or UTS) depth -> UTS depth times a log-uniform factor in ``scale_range``.

    Example:
        >>> raw = {"target": np.array([[2.0]], np.float32), "mask": np.array([[True]]), "depth_type": "absolute"}
        >>> ToUTS(scale_range=(3.0, 3.0))(raw)["target"]
        array([[6.]], dtype=float32)
    """

    def __init__(self, scale_range: Sequence[float] = (0.1, 10.0)) -> None:
        self.scale_range = _check_range("scale_range", scale_range, positive=True)

    def __call__(self, raw: Raw) -> Raw:
        _require_depth(raw, "ToUTS")
        scale = math.exp(_uniform(math.log(self.scale_range[0]), math.log(self.scale_range[1])))
        if raw.get("warp") is not None:  # the device warps, then converts (svde.data.warp)
            return {**raw, "warp": with_conversion(raw["warp"], "uts", scale), "depth_type": DepthType.UTS}
        return {**raw, "target": to_uts(raw["target"], raw["mask"], scale), "depth_type": DepthType.UTS}


class ToUTSS:
    """Absolute or UTS depth -> UTSS disparity (see :func:`to_utss`) with a log-uniform scale in
    ``scale_range`` and a uniform relative shift in ``shift_range``.

    Example:
        >>> raw = {"target": np.array([[2.0, 0.0]], np.float32), "mask": np.array([[True, False]]), "depth_type": "uts"}
        >>> ToUTSS(scale_range=(1, 1), shift_range=(0, 0))(raw)["target"]
        array([[0.5, 0. ]], dtype=float32)
    """

    def __init__(self, scale_range: Sequence[float] = (0.1, 10.0), shift_range: Sequence[float] = (0.0, 1.0)) -> None:
        self.scale_range = _check_range("scale_range", scale_range, positive=True)
        self.shift_range = _check_range("shift_range", shift_range, positive=False)

    def __call__(self, raw: Raw) -> Raw:
        _require_depth(raw, "ToUTSS")
        scale = math.exp(_uniform(math.log(self.scale_range[0]), math.log(self.scale_range[1])))
        shift = _uniform(*self.shift_range)
        if raw.get("warp") is not None:  # the median is the crop's: on the device, after the warp
            return {**raw, "warp": with_conversion(raw["warp"], "utss", scale, shift), "depth_type": DepthType.UTSS}
        return {**raw, "target": to_utss(raw["target"], raw["mask"], scale, shift), "depth_type": DepthType.UTSS}


def _require_depth(raw: Raw, who: str) -> None:
    """A scale-invariant (absolute or UTS) depth target, the input of both depth-type conversions."""
    kind = raw.get("depth_type", DepthType.ABSOLUTE)
    if kind not in SCALE_INVARIANT:
        allowed = tuple(t.value for t in SCALE_INVARIANT)
        raise DataError(f"{raw.get('file', '?')}: {who} needs depth of type {allowed}, got {kind!r}")


class Compose:
    """Apply raw-dict transforms in order (``None`` entries are skipped).

    Example:
        >>> t = Compose([build_train_transform(64, 96), ToUTS()])
    """

    def __init__(self, transforms: Sequence[RawTransform | None]) -> None:
        self.transforms = [t for t in transforms if t is not None]
        # the first transform's promise (see TrainAugment.zeroes_invalid): it sees the raw dict first
        self.zeroes_invalid = bool(self.transforms) and getattr(self.transforms[0], "zeroes_invalid", False)

    def __call__(self, raw: Raw) -> Raw:
        for t in self.transforms:
            raw = t(raw)
        return raw


# ---- joint augmentation ----------------------------------------------------------------------
class JointTransform:
    """An albumentations pipeline applied jointly to image, depth and mask of a raw sample,
    keeping intrinsics and ordinal pairs consistent (see the module docstring). Each call seeds the
    pipeline from torch; albumentations then seeds every step alike, so the steps' draws are
    correlated (svde 0.2's training: a rotated sample was also flipped, colour-jittered and scaled
    below the mean). ``transforms``: geometric ones must be among resize (SmallestMaxSize,
    LongestMaxSize, RandomScale, Resize), PadIfNeeded, RandomCrop, Rotate, HorizontalFlip; others
    must be pixel-only.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform]) -> None:
        import albumentations as A

        for t in transforms:
            name = type(t).__name__
            if not (isinstance(t, A.ImageOnlyTransform) or name in (*_RESIZES, "PadIfNeeded", "RandomCrop", "Rotate", "HorizontalFlip")):
                raise ValueError(f"JointTransform cannot track the geometry of {name}; use resize, PadIfNeeded, "
                                 f"RandomCrop, Rotate, HorizontalFlip or pixel-only transforms")
        # strict=True: albumentations otherwise silently ignores misspelled arguments.
        self.compose = A.Compose(list(transforms), additional_targets={"depth": "mask"}, strict=True,
                                 save_applied_params=True)

    def __call__(self, raw: Raw) -> Raw:
        image, target = raw["image"], raw["target"]
        mask = raw["mask"] if raw.get("mask") is not None else np.ones(target.shape, bool)
        self.compose.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        # uint8 mask: bool masks crash Rotate; fill_mask=0 marks padded / rotated-in pixels invalid.
        out = self.compose(image=image, depth=target.astype(np.float32, copy=False), mask=mask.astype(np.uint8))
        new_mask = out["mask"] > 0
        result = {**raw, "image": out["image"], "target": np.where(new_mask, out["depth"], 0.0).astype(np.float32),
                  "mask": new_mask}
        affine = pixel_affine(out["applied_transforms"], out["image"].shape)
        if raw.get("intrinsics") is not None:
            result["intrinsics"] = transform_intrinsics(np.asarray(raw["intrinsics"], np.float64), affine, out["image"].shape)
        if raw.get("pairs") is not None:
            result["pairs"] = transform_pairs(np.asarray(raw["pairs"], np.float32), affine, out["image"].shape)
        return result


def pixel_affine(applied: list[tuple[str, dict[str, Any]]], final_shape: tuple[int, ...]) -> np.ndarray:
    """The 3x3 map from input to output pixel coordinates (pixel centres at integers) of the
    transforms albumentations reports as applied (``save_applied_params=True``).

    Example:
        >>> pixel_affine([("HorizontalFlip", {"shape": (4, 10, 3)})], (4, 10, 3))[0]
        array([-1.,  0.,  9.])
    """
    total = np.eye(3)
    for k, (name, params) in enumerate(applied):
        h, w = params["shape"][:2]
        step = np.eye(3)
        if name in _RESIZES:
            h2, w2 = (applied[k + 1][1]["shape"] if k + 1 < len(applied) else final_shape)[:2]
            sx, sy = w2 / w, h2 / h
            # cv2.resize maps pixel centres: x' = (x + 0.5) * s - 0.5
            step = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        elif name == "PadIfNeeded":
            step[0, 2], step[1, 2] = params["pad_left"], params["pad_top"]
        elif name == "RandomCrop":
            if params.get("pad_params"):
                raise ValueError("RandomCrop(pad_if_needed=True) is not tracked; use PadIfNeeded before it")
            step[0, 2], step[1, 2] = -params["crop_coords"][0], -params["crop_coords"][1]
        elif name == "Rotate":
            step = np.asarray(params["matrix"], np.float64)
        elif name == "HorizontalFlip":
            step[0, 0], step[0, 2] = -1.0, w - 1.0
        total = step @ total
    return total


def transform_intrinsics(intrinsics: np.ndarray, affine: np.ndarray, shape: tuple[int, ...],
                         tolerance_px: float = 0.25) -> np.ndarray | None:
    """New ``[fx, fy, cx, cy]`` after an image warp ``affine`` (3x3), or ``None`` when the warped
    image is no pinhole view (skew beyond ``tolerance_px`` pixels over the image).

    The warp of the projection is ``affine @ K``; it is a valid pinhole camera (possibly rolled
    about the optical axis and/or mirrored) when its 2x2 part is ``diag(fx', fy') @ Q`` with
    ``Q`` orthogonal, i.e. when its rows are orthogonal.

    Example:
        >>> transform_intrinsics(np.array([100.0, 100, 50, 40]), np.diag([2.0, 2.0, 1.0]), (80, 100))
        array([200., 200., 100.,  80.], dtype=float32)
    """
    fx, fy, cx, cy = intrinsics
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    m = affine @ k
    r0, r1 = m[0, :2], m[1, :2]
    fx2, fy2 = np.linalg.norm(r0), np.linalg.norm(r1)
    # |cos| of the angle between the rows, times the largest normalised image coordinate, is the
    # pixel error of pretending the rows are orthogonal.
    skew = abs(r0 @ r1) / (fx2 * fy2)
    h, w = shape[:2]
    extent = max(w, h) * 0.5 * math.sqrt(2.0)
    if skew * extent > tolerance_px:
        return None
    return np.array([fx2, fy2, m[0, 2], m[1, 2]], np.float32)


def transform_pairs(pairs: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Move ordinal pairs ``(yA, xA, yB, xB, rel)`` with the image; drop pairs leaving it.

    Example:
        >>> transform_pairs(np.array([[1, 2, 3, 4, 1.0]], np.float32), np.eye(3), (5, 5))
        array([[1., 2., 3., 4., 1.]], dtype=float32)
    """
    if pairs.size == 0:
        return pairs.reshape(0, 5).astype(np.float32)
    h, w = shape[:2]
    out = pairs.astype(np.float64).copy()
    for yc, xc in ((0, 1), (2, 3)):
        x = affine[0, 0] * pairs[:, xc] + affine[0, 1] * pairs[:, yc] + affine[0, 2]
        y = affine[1, 0] * pairs[:, xc] + affine[1, 1] * pairs[:, yc] + affine[1, 2]
        out[:, xc], out[:, yc] = np.round(x), np.round(y)
    keep = np.all((out[:, [0, 2]] >= 0) & (out[:, [0, 2]] <= h - 1) & (out[:, [1, 3]] >= 0) & (out[:, [1, 3]] <= w - 1), axis=1)
    return out[keep].astype(np.float32)


# ---- the training augmentation: one resampling, uint8 until the end ----------------------------
_WARP_MARGINS = {cv2.INTER_NEAREST: 0, cv2.INTER_LINEAR: 1, cv2.INTER_CUBIC: 2, cv2.INTER_LANCZOS4: 4}  # pixels read
_DRAWS = 17  # uniforms per sample: scale, pad (2), crop (2), rotate (2), flip, colour (1 + 4 + 4)


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


class TrainAugment:
    """The paper's training augmentation (see :func:`build_train_transform`) with one resampling.

    The geometric steps (resize to cover the crop, random scale, pad, random crop, rotation, flip) compose
    into one pixel map, so image and depth are each resampled once (the image in its own dtype, uint8 as
    decoded; depth nearest-neighbour, with 0 at the input ``mask``'s invalid pixels, and the output mask is
    where the warped depth is positive; stored uint16 depth with its ``depth_scale`` is warped as it is and
    scaled at the crop's size); each colour step is one pass over the uint8 crop
    (:func:`~svde.data.colour.jitter_image`), or, with ``colour_on_device``, the drawn parameters go with the
    sample as ``colour`` (:mod:`svde.data.colour`); with ``warp_on_device`` the resampling, scaling and
    depth conversion too (:mod:`svde.data.warp`). Pixels rotated in from outside the crop window are
    invalid, as after a crop then a rotation. Parameters are drawn as albumentations draws them (sizes,
    offsets, ranges, probabilities, colour step order), each independently, from torch's generator: :meth:`plan`.

    Example:
        >>> t = TrainAugment(32, 48)
        >>> t.plan((40, 60)).affine.shape
        (3, 3)
    """

    # It sets ``target`` to 0 wherever ``mask`` is False itself: DepthDataset.finish need not do so first.
    zeroes_invalid = True

    def __init__(self, height: int, width: int, scale_range: Sequence[float] = (0.8, 1.25), rotate_limit: float = 10.0,
                 rotate_p: float = 0.5, flip_p: float = 0.5, color_p: float = 0.8,
                 interpolation: int = cv2.INTER_LINEAR, colour_on_device: bool = False,
                 warp_on_device: bool = False) -> None:
        interpolation = cv2.INTER_NEAREST if interpolation == cv2.INTER_NEAREST_EXACT else interpolation
        if interpolation not in _WARP_MARGINS:
            raise ValueError(f"interpolation must be one of cv2's INTER_NEAREST(_EXACT), INTER_LINEAR, INTER_CUBIC "
                             f"or INTER_LANCZOS4, got {interpolation}")
        if warp_on_device and (not colour_on_device or interpolation == cv2.INTER_LANCZOS4):
            raise ValueError("warp_on_device needs colour_on_device (the jitter reads the warped crop) and a nearest, "
                             "linear or cubic interpolation")
        self.size = (int(height), int(width))
        self.scale_range = _check_range("scale_range", scale_range, positive=True)
        self.rotate_limit, self.rotate_p, self.flip_p, self.color_p = rotate_limit, rotate_p, flip_p, color_p
        self.interpolation, self.colour_on_device = interpolation, bool(colour_on_device)
        self.warp_on_device = bool(warp_on_device)

    def plan(self, shape: tuple[int, ...]) -> AugmentPlan:
        """Draw one sample's parameters for an input of ``shape`` (one call to torch's generator)."""
        u = torch.rand(_DRAWS, dtype=torch.float64).tolist()
        (height, width), (h0, w0) = self.size, shape[:2]
        s = max(height / h0, width / w0)  # SmallestMaxSize(max_size_hw)
        h1, w1 = max(1, round(h0 * s)), max(1, round(w0 * s))
        lo, hi = self.scale_range
        if (lo, hi) != (1.0, 1.0):  # RandomScale: int() of the scaled size
            f = lo + (hi - lo) * u[0]
            h1, w1 = max(1, int(h1 * f)), max(1, int(w1 * f))
        sx, sy = w1 / w0, h1 / h0
        pad_h, pad_w = max(0, height - h1), max(0, width - w1)  # PadIfNeeded(position="random")
        top, left = min(int(u[1] * (pad_h + 1)), pad_h), min(int(u[2] * (pad_w + 1)), pad_w)
        y0, x0 = int((h1 + pad_h - height + 1) * u[3]), int((w1 + pad_w - width + 1) * u[4])  # RandomCrop
        tx, ty = left - x0, top - y0  # resized pixel -> crop pixel
        # cv2.resize maps pixel centres: x' = (x + 0.5) * s - 0.5
        affine = np.array([[sx, 0, 0.5 * sx - 0.5 + tx], [0, sy, 0.5 * sy - 0.5 + ty], [0, 0, 1]])
        window = None
        if self.rotate_limit > 0 and u[5] < self.rotate_p:
            angle = math.radians(-self.rotate_limit + 2 * self.rotate_limit * u[6])
            c, sn = math.cos(angle), math.sin(angle)
            centre = (width / 2 - 0.5, height / 2 - 0.5)
            rotate = np.array([[c, sn, 0], [-sn, c, 0], [0, 0, 1.0]])
            affine = _translate(*centre) @ rotate @ _translate(-centre[0], -centre[1]) @ affine
            # the source pixels nearest to the crop window (its edges, in resized pixels, / scale)
            window = (max(0, round(max(0, -ty) / sy)), min(h0, round(min(h1, height - ty) / sy)),
                      max(0, round(max(0, -tx) / sx)), min(w0, round(min(w1, width - tx) / sx)))
        if u[7] < self.flip_p:
            affine = np.array([[-1.0, 0, width - 1], [0, 1, 0], [0, 0, 1]]) @ affine
        colour = None
        if u[8] < self.color_p:  # ColorJitter(0.2, 0.2, 0.2, 0.05): factors 0.8..1.2, hue -0.05..0.05
            colour = (*(float(k < 3) - JITTER[k] + 2 * JITTER[k] * u[9 + k] for k in range(4)),
                      [int(k) for k in np.argsort(u[13:17], kind="stable")])  # a uniform random order
        return AugmentPlan(affine, window, colour)

    def __call__(self, raw: Raw) -> Raw:
        image, target, mask, scale = raw["image"], raw["target"], raw.get("mask"), raw.get("depth_scale")
        if target.dtype != np.uint16:  # cv2 warps stored uint16 depth as it is, anything else as float32
            target = target.astype(np.float32, copy=False)
        plan = self.plan(image.shape)
        deferred = self.warp_on_device and defer_warp(image, target, mask, plan.affine, plan.window, self.size,
                                                      self.interpolation, scale)
        if deferred:  # the device resamples the window (svde.data.warp)
            result = {**raw, **deferred, "mask": None, "depth_scale": None}
        else:
            result = {**raw, **self._crop(image, target, mask, scale, plan)}
        if self.warp_on_device and not deferred:  # warped here (a large source): the device scales and masks
            result["warp"] = warp_vector(0, self.size, np.eye(3), (0, self.size[0], 0, self.size[1]))
        if self.colour_on_device:  # drawn all the same, applied on the batch (svde.data.colour)
            result["colour"] = encode_colour(plan.colour)
        elif plan.colour is not None:
            result["image"] = jitter_image(result["image"], plan.colour)
        if raw.get("intrinsics") is not None:
            result["intrinsics"] = transform_intrinsics(np.asarray(raw["intrinsics"], np.float64), plan.affine, self.size)
        if raw.get("pairs") is not None:
            pairs = np.asarray(raw["pairs"], np.float32)
            if plan.window is not None and pairs.size:  # rotated-in points are invalid pixels
                r0, r1, c0, c1 = plan.window
                y, x = pairs[:, [0, 2]], pairs[:, [1, 3]]
                pairs = pairs[np.all((y >= r0) & (y < r1) & (x >= c0) & (x < c1), axis=1)]
            result["pairs"] = transform_pairs(pairs, plan.affine, self.size)
        return result

    def _crop(self, image: np.ndarray, target: np.ndarray, mask: np.ndarray | None, scale: float | None,
              plan: AugmentPlan) -> Raw:
        """The in-worker resampling: ``image``, ``target`` (scaled, 0 where invalid) and ``mask`` of the crop."""
        if mask is not None:  # invalid pixels hold 0: then the mask need not be warped (below)
            target = np.where(mask, target, target.dtype.type(0))
        # the image reads around the window as its interpolation needs; nearest: exactly the depth's pixels
        out_image = self._warp(image, plan, self.interpolation, margin=_WARP_MARGINS[self.interpolation])
        warped = self._warp(target, plan, cv2.INTER_NEAREST)
        # Nearest sampling copies values and the border is 0: the valid pixels are the positive ones
        # (one warp fewer than warping the mask; NaN > 0 is False); stored integers are scaled now.
        new_mask = warped > 0 if warped.dtype == np.uint16 else valid_depth_mask(warped)  # inf: invalid too
        if warped.dtype != np.float32 or scale is not None:
            warped = scale_depth(warped, 1.0 if scale is None else scale)
        warped[~new_mask] = 0
        return {"image": out_image, "target": warped, "mask": new_mask, "depth_scale": None}

    def _warp(self, array: np.ndarray, plan: AugmentPlan, interpolation: int, margin: int = 0) -> np.ndarray:
        """``array`` (its crop window's pixels, plus ``margin`` for interpolation) through the plan's map."""
        inverse = np.linalg.inv(plan.affine)
        if plan.window is not None:
            r0, r1, c0, c1 = (max(v - margin, 0) if k % 2 == 0 else v + margin for k, v in enumerate(plan.window))
            array, inverse = array[r0:r1, c0:c1], _translate(-c0, -r0) @ inverse
        # +1e-6 px breaks exact ties (x.5), which cv2 rounds differently for different array types:
        # image, depth and mask then sample the same pixels.
        inverse[:2, 2] += 1e-6
        height, width = self.size
        return cv2.warpAffine(array, inverse[:2], (width, height), flags=interpolation | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class AugmentPlan(NamedTuple):
    """One sample's augmentation: ``affine`` (3x3, input -> output pixel), the crop ``window``
    ``(row0, row1, col0, col1)`` of input pixels when a rotation brings outside pixels in, and
    ``colour`` ``(brightness, contrast, saturation, hue, order)`` or None."""

    affine: np.ndarray
    window: tuple[int, int, int, int] | None
    colour: tuple[float, float, float, float, list[int]] | None


def build_train_transform(height: int = 384, width: int = 512, scale_range: Sequence[float] = (0.8, 1.25),
                          rotate_limit: float = 10.0, rotate_p: float = 0.5, flip_p: float = 0.5,
                          color_p: float = 0.8, interpolation: int = cv2.INTER_LINEAR,
                          legacy: bool = False, colour_on_device: bool = False,
                          warp_on_device: bool = False) -> TrainAugment | JointTransform:
    """The paper's training augmentation: resize, pad and random-crop to ``height`` x ``width``,
    rotation (``rotate_p``, within ``rotate_limit`` degrees), horizontal flip (``flip_p``) and
    colour jitter (``color_p``: brightness, contrast, saturation 0.8..1.2, hue +-0.05).

    The image is first resized to just cover the crop (keeping its aspect ratio), then by a random
    factor in ``scale_range``; smaller results are padded with invalid pixels. ``interpolation``
    is the image's (depth and mask are always nearest-neighbour, sampling the nearest pixel
    centre; with a nearest ``interpolation`` the image is sampled exactly like the depth).
    ``legacy=True``: the albumentations pipeline of svde 0.2 (one resampling and rounding per
    step), with the same parameter distributions. ``colour_on_device=True``: the colour parameters
    are drawn but applied later, on the batch (:mod:`svde.data.colour`; not with ``legacy``);
    ``warp_on_device=True`` (with it): the resampling too (:mod:`svde.data.warp`).

    Example:
        >>> type(build_train_transform(64, 96)).__name__, build_train_transform(64, 96, legacy=True).compose.strict
        ('TrainAugment', True)
    """
    if not legacy:
        return TrainAugment(height, width, scale_range, rotate_limit, rotate_p, flip_p, color_p, interpolation,
                            colour_on_device, warp_on_device)
    if colour_on_device or warp_on_device:
        raise ValueError("colour_on_device and warp_on_device need the default augmentation (legacy=False)")
    import albumentations as A

    lo, hi = _check_range("scale_range", scale_range, positive=True)
    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}
    # INTER_NEAREST_EXACT samples the nearest pixel *centre* (cv2.resize's INTER_NEAREST is shifted by
    # up to half a pixel); warpAffine's INTER_NEAREST rounds to the nearest centre (exact for Rotate).
    nearest = cv2.INTER_NEAREST_EXACT
    is_nearest = interpolation in (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)
    resize_interp, rotate_interp = (nearest, cv2.INTER_NEAREST) if is_nearest else (interpolation, interpolation)
    steps: list[A.BasicTransform] = [A.SmallestMaxSize(max_size_hw=(height, width), interpolation=resize_interp,
                                                       mask_interpolation=nearest, p=1.0)]
    if (lo, hi) != (1.0, 1.0):
        steps.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=resize_interp,
                                   mask_interpolation=nearest, p=1.0))
    steps += [A.PadIfNeeded(min_height=height, min_width=width, position="random", **border),
              A.RandomCrop(height=height, width=width)]
    if rotate_limit > 0 and rotate_p > 0:
        steps.append(A.Rotate(limit=(-rotate_limit, rotate_limit), interpolation=rotate_interp,
                              mask_interpolation=cv2.INTER_NEAREST, p=rotate_p, **border))
    if flip_p > 0:
        steps.append(A.HorizontalFlip(p=flip_p))
    if color_p > 0:
        steps.append(A.ColorJitter(*JITTER, p=color_p))
    return JointTransform(steps)

