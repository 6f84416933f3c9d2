"""The training augmentation's resampling on the training device (``data.warp_on: device``).

With the colour jitter on the device (:mod:`svde.data.colour`), what a DataLoader worker still
does besides decoding is the geometric warp: one ``cv2.warpAffine`` of the image and one of the
depth, the depth's scaling and validity, and the channels-first copy. With ``data.warp_on:
device`` (``auto`` picks it on CUDA) the worker stops after drawing:
:class:`~svde.data.transforms.TrainAugment` draws every parameter exactly as before, then
(:func:`defer_warp`) sends the arrays as decoded (uint8 (h, w, 3) RGB, the depth as stored:
uint16 with its scale, or float; copied only to zero a dataset mask's invalid depth), and a ``warp`` vector (:data:`WARP_FIELDS`:
the inverse pixel map, a rotated crop's source window, the depth scale, the depth conversion
that :class:`~svde.data.transforms.ToUTS` / ``ToUTSS`` drew). :func:`finish_warp` (called by
:func:`svde.data.colour.finish_batch`) resamples each sample on the device (image bilinear /
bicubic with ``grid_sample``, nearest by index like the depth), then scales, masks and converts
the depth there. A batch's arrays travel packed in one buffer (:func:`pack_sources`, made in the
worker's shared memory): one copy, and a fixed number of tensors (file descriptors) per batch;
cutting the crop's window out first would have been a second copy.

The pixel convention is OpenCV's: ``warpAffine`` with ``WARP_INVERSE_MAP`` samples source
pixel ``M @ (x, y, 1)`` for output pixel ``(x, y)``, pixel centres at integer coordinates, and
0 outside the source (``BORDER_CONSTANT``); nearest rounds ties up. ``grid_sample`` with
``align_corners=False`` places pixel ``p`` of a ``w``-pixel row at ``(2 p + 1) / w - 1``
(PyTorch's documentation of ``torch.nn.functional.grid_sample``). The results differ from the
in-worker path only where cv2 rounds: it quantises bilinear positions to 1/32 pixel and nearest
ones to 1/1024, and rounds the image to uint8 (``tests/test_warp_on_device.py`` measures the
difference against ``cv2.warpAffine``). Interpolations: nearest, bilinear and bicubic (cv2's
Lanczos has no ``grid_sample`` counterpart).

A source much larger than the crop (a large photo cropped small) would cost more to move than
to warp: above :data:`MAX_SOURCE_RATIO` times the crop's pixels the worker warps it itself and
sends the crop (``warp[0] == 0``: the device only scales, masks and converts).

Example:
    >>> resolve_warp_place("auto", "device", "cuda:0"), resolve_warp_place("auto", "device", "cpu")
    ('device', 'workers')
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

__all__ = ["MAX_SOURCE_RATIO", "WARP_FIELDS", "WARP_PLACES", "defer_warp", "finish_warp", "pack_sources",
           "resolve_warp_place", "unpack_sources", "warp_vector", "with_conversion"]

# Where the geometric resampling runs: ``auto`` = ``device`` when training on CUDA (with the colour there too).
WARP_PLACES = ("auto", "workers", "device")
# A deferred sample's ``warp`` (float64): 0 the resampling (cv2's INTER_NEAREST, INTER_LINEAR or INTER_CUBIC
# plus 1; 0: already cropped); 1, 2 output height, width; 3..8 the inverse map (output pixel -> source
# pixel) as a 2x3 matrix; 9..12 the source rows and columns [r0, r1) x [c0, c1) with valid depth (a rotated
# crop's window; the image reads its interpolation's margin more); 13 depth = stored / this;
# 14 depth conversion (0 none, 1 UTS, 2 UTSS); 15, 16 its scale and shift.
WARP_FIELDS = 17
CONVERSIONS = {None: 0.0, "uts": 1.0, "utss": 2.0}
# A source above this many times the crop's pixels is warped in the worker: moving it would cost more
# than warping it there (a 1600x1200 photo is 9.8 times a 384x512 crop; a 480x640 one 1.6 times).
MAX_SOURCE_RATIO = 2.5
_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}  # cv2.INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, plus 1
_MARGINS = {1: 0, 2: 1, 3: 2}  # source pixels each reads beyond the nearest one


def resolve_warp_place(place: str, colour_place: str, device: torch.device | str) -> str:
    """``workers`` or ``device`` for a ``data.warp_on`` value, the resolved colour place and the
    training device. The colour jitter reads the warped crop (its contrast step uses the crop's
    mean), so warping on the device needs the colour there too.

    Example:
        >>> resolve_warp_place("device", "workers", "cpu")
        Traceback (most recent call last):
        ValueError: data.warp_on 'device' needs the colour jitter on the device too (data.colour_on: device)
    """
    if place not in WARP_PLACES:
        raise ValueError(f"data.warp_on {place!r} is not one of {', '.join(WARP_PLACES)}")
    if place == "auto":
        return "device" if torch.device(device).type == "cuda" and colour_place == "device" else "workers"
    if place == "device" and colour_place != "device":
        raise ValueError("data.warp_on 'device' needs the colour jitter on the device too (data.colour_on: device)")
    return place


def warp_vector(resample: int, size: tuple[int, int], inverse: np.ndarray, window: tuple[int, int, int, int],
                depth_scale: float | None = None) -> np.ndarray:
    """A sample's ``warp`` (:data:`WARP_FIELDS`) without a depth conversion; ``resample``: cv2's
    interpolation + 1, or 0 for a crop the worker warped; ``window``: the source pixels with valid depth.

    Example:
        >>> warp_vector(2, (4, 6), np.eye(3), (0, 4, 0, 6), 1000.0)[[0, 1, 2, 13]].tolist()
        [2.0, 4.0, 6.0, 1000.0]
    """
    scale = 1.0 if depth_scale is None else float(depth_scale)
    return np.array([resample, *size, *np.asarray(inverse, np.float64)[:2].ravel(), *window, scale, 0.0, 1.0, 0.0])


def defer_warp(image: np.ndarray, target: np.ndarray, mask: np.ndarray | None, affine: np.ndarray,
               window: tuple[int, int, int, int] | None, size: tuple[int, int], interpolation: int,
               depth_scale: float | None) -> dict[str, Any] | None:
    """The worker's part of a deferred warp: ``image`` (RGB, uint8 or float: the sample rounds it,
    :func:`svde.preprocess.rgb_uint8`) and ``target`` (the stored depth, uint16 or float32; 0 where
    the dataset's ``mask`` is False) as they are, and their
    ``warp`` to a crop of ``size`` through ``affine`` (3x3, source -> output pixel); ``window``: a
    rotated crop's source rectangle (depth outside it is invalid). None when the source is over
    :data:`MAX_SOURCE_RATIO` times the crop (then the worker warps).

    Example:
        >>> out = defer_warp(np.zeros((4, 6, 3), np.uint8), np.ones((4, 6), np.uint16), None, np.eye(3), None,
        ...                  (4, 6), 1, 1000.0)
        >>> out["target"].dtype, out["warp"][[0, 13]].tolist()
        (dtype('uint16'), [2.0, 1000.0])
    """
    height, width = image.shape[:2]
    if height * width > MAX_SOURCE_RATIO * size[0] * size[1]:
        return None
    if mask is not None:
        target = np.where(mask, target, target.dtype.type(0))
    inverse = np.linalg.inv(affine)
    inverse[:2, 2] += 1e-6  # the ties cv2's path breaks the same way (TrainAugment._warp)
    return {"image": image, "target": target,
            "warp": warp_vector(interpolation + 1, size, inverse, window or (0, height, 0, width), depth_scale)}


def with_conversion(warp: np.ndarray, kind: str, scale: float, shift: float = 0.0) -> np.ndarray:
    """``warp`` with the depth conversion ``kind`` (``uts``: depth * scale; ``utss``: disparity
    scale / depth + shift * its median; :func:`svde.data.transforms.to_uts` / ``to_utss``) to
    apply on the device after the warp.

    Example:
        >>> with_conversion(np.zeros(WARP_FIELDS), "utss", 2.0, 0.5)[14:].tolist()
        [2.0, 2.0, 0.5]
    """
    if warp[14] != 0:
        raise ValueError("the sample's depth is already converted once")
    out = np.array(warp, np.float64)
    out[14:] = CONVERSIONS[kind], scale, shift
    return out


def finish_warp(images: list[torch.Tensor], targets: list[torch.Tensor], warp: torch.Tensor,
                device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The device's part: images float32 (B, 3, H, W) in [0, 1], depth float32 (B, 1, H, W)
    (scaled, converted, 0 where invalid) and mask bool (B, 1, H, W) from the workers' arrays
    (``images`` uint8 (h, w, 3), ``targets`` (h, w): float32, or uint16 travelling as int16;
    ``warp`` (B, :data:`WARP_FIELDS`), read on the CPU).

    Example:
        >>> vector = warp_vector(2, (2, 2), np.eye(3), (0, 2, 0, 2), 1000.0)  # bilinear, identity
        >>> depth = torch.tensor([[1000, 0], [3000, 2000]], dtype=torch.int16)
        >>> image, target, mask = finish_warp([torch.zeros(2, 2, 3, dtype=torch.uint8)], [depth],
        ...                                   torch.tensor(vector)[None], "cpu")
        >>> target.flatten().tolist(), mask.flatten().tolist()
        ([1.0, 0.0, 3.0, 2.0], [True, False, True, True])
    """
    plan = warp.detach().to("cpu", torch.float64)
    if plan.ndim != 2 or plan.shape[1] != WARP_FIELDS or len(plan) != len(images) or len(images) != len(targets):
        raise ValueError(f"finish_warp: expected {len(images)} images, depth maps and warp rows of {WARP_FIELDS}, "
                         f"got {len(targets)} and {tuple(plan.shape)}")
    if not torch.isfinite(plan).all() or not set(plan[:, 0].tolist()) <= {0.0, *map(float, _MODES)}:
        raise ValueError("finish_warp: the warp parameters hold NaN, inf or an unknown resampling")
    height, width = (int(v) for v in plan[0, 1:3])
    out_images, out_depths, pixels = [], [], None
    for image, target, row in zip(images, targets, plan.tolist()):
        rgb = image.to(device, non_blocking=True).permute(2, 0, 1)[None].float().div_(255.0)
        depth = _stored_depth(target.to(device, non_blocking=True))[None, None]
        if row[0] > 0:
            if pixels is None:  # the output pixel grid (y, x), once per batch
                exact = torch.float32 if rgb.device.type == "mps" else torch.float64  # MPS has no float64
                pixels = torch.meshgrid(torch.arange(height, dtype=exact, device=rgb.device),
                                        torch.arange(width, dtype=exact, device=rgb.device), indexing="ij")
            rgb, depth = _resample(rgb, depth, row, pixels)
        if tuple(rgb.shape[-2:]) != (height, width) or tuple(depth.shape[-2:]) != (height, width):
            raise ValueError(f"finish_warp: a sample is {tuple(depth.shape[-2:])}, the batch {(height, width)}")
        out_images.append(rgb.clamp_(0.0, 1.0))
        out_depths.append(depth)
    image, depth = torch.cat(out_images), torch.cat(out_depths)
    # the per-sample numbers in one copy to the device (a tensor made there from Python numbers would
    # be a blocking copy each): depth scale, conversion scale and shift
    numbers = plan[:, [13, 15, 16]].to(torch.float32).to(depth.device, non_blocking=True)
    if (plan[:, 13] != 1).any():  # stored integers / scale, one float32 division (svde.data.base.scale_depth)
        depth = depth / numbers[:, 0].view(-1, 1, 1, 1)
    mask = torch.isfinite(depth) & (depth > 0)
    depth = torch.where(mask, depth, torch.zeros((), device=depth.device))
    return image, _convert(depth, mask, plan, numbers[:, 1:]), mask


_KINDS = {torch.uint8: 0, torch.int16: 1, torch.float32: 2}  # what a packed source holds
_DTYPES = {code: dtype for dtype, code in _KINDS.items()}


def pack_sources(images: list[torch.Tensor], targets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's images and depth maps (:func:`finish_warp`'s inputs, each its own size) as one
    uint8 buffer and a (2B, 4) int64 layout (byte offset, height, width, kind): two tensors to
    pass from a DataLoader worker instead of 2B (each costs the worker a file descriptor while in
    flight, and the main process one copy to the device instead of 2B). In a worker the buffer
    is allocated in shared memory, as ``default_collate`` does, so it is copied once.

    Example:
        >>> buffer, layout = pack_sources([torch.zeros(2, 3, 3, dtype=torch.uint8)], [torch.ones(2, 3)])
        >>> [t.tolist() for t in unpack_sources(buffer, layout, "cpu")[1]]
        [[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]
    """
    arrays = [*images, *targets]
    layout, offset = [], 0
    for array in arrays:
        if array.dtype not in _KINDS or array.ndim != (3 if len(layout) < len(images) else 2):
            raise ValueError(f"pack_sources: cannot pack a {array.dtype} array of shape {tuple(array.shape)}")
        layout.append((offset, array.shape[0], array.shape[1], _KINDS[array.dtype]))
        offset += -(-array.numel() * array.element_size() // 8) * 8  # 8-byte aligned: each views as its dtype
    buffer = _empty_for_transfer(offset)
    for array, (start, *_rest) in zip(arrays, layout):
        flat = array.contiguous().reshape(-1).view(torch.uint8)
        buffer[start:start + flat.numel()].copy_(flat)
    return buffer, torch.tensor(layout, dtype=torch.int64).reshape(-1, 4)


def unpack_sources(buffer: torch.Tensor, layout: torch.Tensor,
                   device: torch.device | str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:func:`pack_sources`' images and depth maps, on ``device`` (one copy of the buffer)."""
    data = buffer.to(device, non_blocking=True)
    arrays = []
    for start, height, width, kind in layout.tolist():
        dtype = _DTYPES[kind]
        size = height * width * (3 if kind == 0 else 1) * torch.empty((), dtype=dtype).element_size()
        array = data[start:start + size].view(dtype)
        arrays.append(array.view(height, width, 3) if kind == 0 else array.view(height, width))
    return arrays[: len(arrays) // 2], arrays[len(arrays) // 2:]


def _empty_for_transfer(nbytes: int) -> torch.Tensor:
    """A uint8 buffer; in a DataLoader worker in shared memory already (the way ``default_collate``
    allocates its batches), so that passing it to the main process copies nothing more."""
    if get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


def _stored_depth(target: torch.Tensor) -> torch.Tensor:
    """A deferred depth map as float32 (uint16 travels as int16: torch moves that everywhere)."""
    if target.dtype == torch.int16:
        return target.to(torch.int32).bitwise_and_(0xFFFF).float()
    return target.float()


def _resample(rgb: torch.Tensor, depth: torch.Tensor, row: list[float],
              pixels: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's (1, 3, h, w) image and (1, 1, h, w) depth through its ``warp`` ``row``;
    ``pixels``: the output grid's (y, x), float64 (float32 on MPS: ties may round otherwise)."""
    mode, (h, w), (ys, xs) = _MODES[int(row[0])], rgb.shape[-2:], pixels
    size = tuple(ys.shape)
    x, y = row[3] * xs + row[4] * ys + row[5], row[6] * xs + row[7] * ys + row[8]  # source pixels
    r0, r1, c0, c1 = (int(v) for v in row[9:13])
    if r1 <= r0 or c1 <= c0:  # no source pixel: nothing valid
        return rgb.new_zeros((1, 3, *size)), depth.new_zeros((1, 1, *size))
    depth = _nearest(depth, x, y, (r0, r1, c0, c1))
    margin = _MARGINS[int(row[0])]  # the image reads around the window as its interpolation needs
    r0, r1, c0, c1 = max(r0 - margin, 0), min(r1 + margin, h), max(c0 - margin, 0), min(c1 + margin, w)
    if mode == "nearest":  # exactly the depth's pixels
        return _nearest(rgb, x, y, (r0, r1, c0, c1)), depth
    # grid_sample's pixel p of a w-pixel row is at (2 p + 1) / w - 1 (align_corners=False)
    window = rgb[:, :, r0:r1, c0:c1]
    grid = torch.stack(((2 * (x - c0) + 1) / (c1 - c0) - 1, (2 * (y - r0) + 1) / (r1 - r0) - 1), dim=-1)
    return F.grid_sample(window, grid.float()[None], mode=mode, padding_mode="zeros", align_corners=False), depth


def _nearest(array: torch.Tensor, x: torch.Tensor, y: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    """(1, C, h, w) ``array`` at the nearest pixel centres to (x, y), 0 outside ``window`` (r0, r1, c0, c1):
    cv2's INTER_NEAREST (ties round up; in float64, where the warp's 1e-6 tie-break survives, unlike a
    float32 grid)."""
    r0, r1, c0, c1 = window
    xi, yi = torch.floor(x + 0.5).long(), torch.floor(y + 0.5).long()
    inside = (xi >= c0) & (xi < c1) & (yi >= r0) & (yi < r1)
    picked = array[0][:, yi.clamp(r0, max(r1 - 1, r0)), xi.clamp(c0, max(c1 - 1, c0))]
    return torch.where(inside, picked, torch.zeros((), dtype=array.dtype, device=array.device))[None]


def _convert(depth: torch.Tensor, mask: torch.Tensor, plan: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
    """The conversions the samples drew (``warp[14:17]``; ``numbers``: their scale and shift on the
    device), as :func:`~svde.data.transforms.to_uts` and ``to_utss`` do them on the worker's crop."""
    kinds = plan[:, 14].round().long().tolist()
    if not any(kinds):
        return depth
    out = depth.clone()
    zero = torch.zeros((), device=depth.device)
    for i, kind in enumerate(kinds):
        scale, shift = numbers[i, 0], numbers[i, 1]
        if kind == 1:
            out[i] = torch.where(mask[i], depth[i] * scale, zero)
        elif kind == 2:
            disparity = torch.where(mask[i], scale / torch.where(mask[i], depth[i], 1.0), torch.nan)
            median = torch.nanquantile(disparity.flatten(), 0.5)  # np.median: the mean of the middle two
            out[i] = torch.where(mask[i], disparity + shift * median, zero)
    return out
