"""Colour jitter and ImageNet normalisation on a whole batch, on the training device.

The paper's colour jitter (brightness, contrast, saturation 0.8..1.2, hue +-0.05, in a random
order; §4.1.1) is per-pixel work that a GPU does for free and a DataLoader worker pays for on
every sample. With ``data.colour_on: device`` (``auto`` picks it on CUDA) the workers stop after
the geometric augmentation: :class:`~svde.data.transforms.TrainAugment` still *draws* each
sample's colour parameters, exactly as it draws them for the in-worker jitter, but stores them
(:func:`encode_colour`, the sample's ``colour``) with the uint8 (3, H, W) crop instead of
applying them. :func:`finish_batch` moves the batch to the device and applies them there
(:func:`apply_colour`), then normalises. The uint8 images are also a quarter of the float bytes
to pass from the workers and to copy to the GPU.

The steps follow albumentations' ``ColorJitter`` on float images (the in-worker path,
:func:`jitter_image`, mirrors its uint8 functions): brightness scales; contrast blends with
the image's mean grey level at that step; saturation blends with each pixel's grey level (grey
= 0.299 R + 0.587 G + 0.114 B, OpenCV's ``RGB2GRAY``); hue rotates the HSV hue; the result is
clipped to [0, 1] after each step. Unlike the uint8 path nothing is rounded between steps, so the
two agree to about one grey level (``tests/test_colour_on_device.py`` measures it). The hue
rotation is checked there against torchvision's ``adjust_hue``.

Example:
    >>> import torch
    >>> image = torch.full((1, 3, 4, 4), 128, dtype=torch.uint8)
    >>> brighter = torch.tensor(encode_colour((1.2, 1.0, 1.0, 0.0, [0, 1, 2, 3])))[None]
    >>> out = apply_colour(image, brighter, normalize=False)
    >>> round(float(out.mean()) * 255, 1)  # 128 * 1.2
    153.6
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
import torch

from svde.data.warp import finish_warp, unpack_sources
from svde.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["COLOUR_PLACES", "GREY", "IDENTITY", "JITTER", "apply_colour", "colour_matrix", "encode_colour",
           "finish_batch", "jitter_image", "resolve_colour_place", "shift_hue"]

# Where colour jitter and normalisation run: ``auto`` = ``device`` when training on CUDA, else ``workers``.
COLOUR_PLACES = ("auto", "workers", "device")
# applied, brightness, contrast, saturation, hue, then the order of the four steps (0..3)
IDENTITY = (0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 2.0, 3.0)
GREY = np.array([0.299, 0.587, 0.114])  # OpenCV's RGB2GRAY weights, as albumentations' ColorJitter uses them
JITTER = (0.2, 0.2, 0.2, 0.05)  # brightness, contrast, saturation, hue: ColorJitter's arguments (§4.1.1)


def resolve_colour_place(place: str, device: torch.device | str) -> str:
    """``workers`` or ``device`` for a ``data.colour_on`` value and the training device.

    Example:
        >>> resolve_colour_place("auto", "cpu"), resolve_colour_place("auto", "cuda:0")
        ('workers', 'device')
    """
    if place not in COLOUR_PLACES:
        raise ValueError(f"data.colour_on {place!r} is not one of {', '.join(COLOUR_PLACES)}")
    if place != "auto":
        return place
    return "device" if torch.device(device).type == "cuda" else "workers"


def encode_colour(colour: tuple[float, float, float, float, Sequence[int]] | None) -> np.ndarray:
    """One sample's colour plan ``(brightness, contrast, saturation, hue, order)`` (or ``None``:
    no jitter) as the float32 (9,) vector a sample carries as ``colour``.

    Example:
        >>> encode_colour(None).tolist() == list(IDENTITY)
        True
    """
    if colour is None:
        return np.asarray(IDENTITY, np.float32)
    *factors, hue, order = colour
    if sorted(int(k) for k in order) != [0, 1, 2, 3]:
        raise ValueError(f"colour order must be a permutation of 0..3, got {order}")
    return np.asarray([1.0, *factors, hue, *order], np.float32)


# ---- in the DataLoader workers: uint8, as albumentations does it ------------------------------


def colour_matrix(brightness: float, contrast: float, saturation: float, order: Sequence[int],
                  mean_rgb: np.ndarray) -> np.ndarray:
    """The (3, 4) affine RGB map of brightness (0), contrast (1) and saturation (2) changes applied
    in ``order`` to an image whose mean colour is ``mean_rgb`` (albumentations' ``ColorJitter``,
    torchvision semantics: brightness scales; contrast blends with the mean grey level of the image
    as it is at that step; saturation blends with each pixel's grey level). Several steps compose
    without the rounding and clipping between them.

    Example:
        >>> colour_matrix(1.5, 1.0, 1.0, [0, 1, 2], np.zeros(3)).round(3).tolist()[0]
        [1.5, 0.0, 0.0, 0.0]
    """
    m, t = np.eye(3), np.zeros(3)
    mean = np.asarray(mean_rgb, np.float64)[:3]
    for op in order:
        if op == 0:
            step, offset = brightness * np.eye(3), np.zeros(3)
        elif op == 1:
            grey = float(GREY @ (m @ mean + t))  # the mean grey level of the image at this step
            step, offset = contrast * np.eye(3), np.full(3, (1.0 - contrast) * grey)
        else:
            step, offset = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), GREY), np.zeros(3)
        m, t = step @ m, step @ t + offset
    return np.concatenate([m, t[:, None]], axis=1)


def jitter_image(image: np.ndarray, colour: tuple) -> np.ndarray:
    """Colour jitter ``(brightness, contrast, saturation, hue, order)`` as albumentations'
    ``ColorJitter`` applies it: each linear step one ``cv2.transform`` (:func:`colour_matrix`;
    uint8 rounds and clips after each step), the hue shift in HSV."""
    *factors, hue, order = colour
    for op in order:
        if op < 3 and factors[op] != 1.0:
            mean = np.asarray(cv2.mean(image)[:3]) if op == 1 else np.zeros(3)
            matrix = colour_matrix(*factors, [op], mean_rgb=mean)
            image = cv2.transform(image, matrix) if image.dtype == np.uint8 else np.clip(
                cv2.transform(image, matrix.astype(image.dtype)), 0.0, 1.0)
        elif op == 3 and image.dtype == np.uint8 and round(hue * 256) % 256:  # 256 hue levels, wrapping in uint8
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
            hsv[..., 0] += np.uint8(round(hue * 256) % 256)
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
        elif op == 3 and image.dtype != np.uint8 and hue:  # float: hue in degrees
            hsv = cv2.cvtColor(image.astype(np.float32, copy=False), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(360.0 * hue), np.float32(360.0))
            image = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0).astype(image.dtype, copy=False)
    return image


# ---- on the training device: the whole batch in float ------------------------------------------


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """RGB images ``x`` (B, 3, H, W) in [0, 1] with their HSV hue turned by ``shift`` (B,)
    (fractions of a turn); samples with ``shift == 0`` are returned unchanged.

    Value (the largest channel) and saturation are kept, as in OpenCV's and torchvision's
    HSV round trip.

    Example:
        >>> red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        >>> shift_hue(red, torch.tensor([1 / 3])).flatten().tolist()  # red -> green
        [0.0, 1.0, 0.0]
    """
    value, largest = x.max(dim=1)
    delta = value - x.min(dim=1).values
    r, g, b = x.unbind(dim=1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    sector = torch.where(largest == 0, (g - b) / safe,
                         torch.where(largest == 1, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue6 = torch.remainder(sector + 6.0 * shift.view(-1, 1, 1), 6.0)  # hue in sixths of a turn
    # HSV -> RGB: channel n is value - delta * clamp(min(k, 4 - k), 0, 1), k = (n' + hue6) mod 6
    k = torch.remainder(torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
                        + hue6[:, None], 6.0)
    out = value[:, None] - delta[:, None] * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return torch.where((shift != 0).view(-1, 1, 1, 1), out, x)


def apply_colour(image: torch.Tensor, colour: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The deferred colour jitter of a batch: uint8 ``image`` (B, 3, H, W) (or float in [0, 1]) and ``colour`` (B, 9)
    (:func:`encode_colour`) -> float32 (B, 3, H, W), ImageNet-normalised unless ``normalize=False``
    (then in [0, 1]). Runs where ``image`` is; ``colour`` is read on the CPU (where the loader
    gives it: no device sync) to pick, for each of the four step positions, the samples whose step
    there is a linear one or a hue turn.
    """
    if image.ndim != 4 or image.shape[1] != 3 or not (image.dtype == torch.uint8 or image.is_floating_point()):
        raise ValueError(f"apply_colour: expected uint8 (or float in [0, 1]) (B, 3, H, W) images, got {image.dtype} "
                         f"{tuple(image.shape)}")
    if tuple(colour.shape) != (image.shape[0], len(IDENTITY)):
        raise ValueError(f"apply_colour: expected colour ({image.shape[0]}, {len(IDENTITY)}), got {tuple(colour.shape)}")
    plan = colour.detach().to("cpu", torch.float32)
    if not torch.isfinite(plan).all():
        raise ValueError("apply_colour: the colour parameters hold NaN or inf")
    applied = plan[:, 0] > 0
    if not (plan[applied, 5:].sort(dim=1).values == torch.arange(4.0)).all():
        raise ValueError("apply_colour: each jittered sample's step order must be a permutation of 0..3")
    x = image.float().div_(255.0) if image.dtype == torch.uint8 else image.to(torch.float32, copy=True)
    params = plan.to(x.device, non_blocking=True)
    brightness, contrast, saturation, hue = params[:, 1:5].unbind(dim=1)
    grey = torch.tensor(GREY, device=x.device, dtype=torch.float32)
    eye = torch.eye(3, device=x.device).expand(x.shape[0], 3, 3)
    desaturate = grey.view(1, 1, 3).expand(x.shape[0], 3, 3)  # every channel becomes the pixel's grey
    for position in range(4):  # each sample's step at this position
        op_cpu = torch.where(applied, plan[:, 5 + position].round().long(), -1)
        if ((op_cpu >= 0) & (op_cpu < 3)).any():  # brightness, contrast, saturation: one (3, 4) map each
            op = op_cpu.to(x.device, non_blocking=True)
            factor = torch.where(op == 0, brightness, torch.where(op == 1, contrast, torch.where(
                op == 2, saturation, torch.ones_like(hue))))
            # brightness and contrast scale; saturation blends with each pixel's grey level
            blend = torch.where(op == 2, 1.0 - saturation, torch.zeros_like(saturation))
            matrix = factor.view(-1, 1, 1) * eye + blend.view(-1, 1, 1) * desaturate
            mean_grey = torch.einsum("c,bchw->b", grey, x) / (x.shape[2] * x.shape[3])
            offset = torch.where(op == 1, (1.0 - contrast) * mean_grey, torch.zeros_like(mean_grey))
            x = (torch.einsum("bij,bjhw->bihw", matrix, x) + offset.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
        rows = ((op_cpu == 3) & (plan[:, 4] != 0)).nonzero().flatten()
        if len(rows):  # the hue turn: only the samples whose step this is
            rows = rows.to(x.device, non_blocking=True)
            x[rows] = shift_hue(x[rows], hue[rows]).clamp_(0.0, 1.0)
    if not normalize:
        return x
    mean = torch.from_numpy(IMAGENET_MEAN).to(x.device).view(1, 3, 1, 1)
    std = torch.from_numpy(IMAGENET_STD).to(x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def finish_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """``batch`` with ``image``, ``target`` and ``mask`` on ``device``; a batch with deferred colour
    (uint8 images and ``colour``) is jittered and normalised there (:func:`apply_colour`), so the
    result always holds the network's normalised float images; one with ``warp`` is first
    resampled there (:func:`svde.data.warp.finish_warp`).

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> from svde.data.mixing import collate
        >>> from svde.data.transforms import build_train_transform
        >>> ds = SyntheticDataset(length=2, height=64, width=64,
        ...                       transform=build_train_transform(32, 32, colour_on_device=True))
        >>> batch = collate([ds[0], ds[1]])
        >>> batch["image"].dtype, finish_batch(batch, "cpu")["image"].dtype
        (torch.uint8, torch.float32)
    """
    if "warp" in batch:  # the decoded sources: cropped here (svde.data.warp), then jittered
        out = {key: value for key, value in batch.items() if key not in ("warp", "sources", "layout")}
        images, targets = unpack_sources(batch["sources"], batch["layout"], device)
        out["image"], out["target"], out["mask"] = finish_warp(images, targets, batch["warp"], device)
    else:
        out = {**batch, **{k: batch[k].to(device, non_blocking=True) for k in ("image", "target", "mask")}}
    if "colour" in batch:  # the parameters stay on the CPU: apply_colour reads them there without a sync
        out["image"] = apply_colour(out["image"], batch["colour"])
        del out["colour"]
    return out
