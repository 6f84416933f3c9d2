"""The networks' input contract, in one place: stride, normalisation, input size and resizing.

Every path that feeds a network goes through here (datasets normalise with
:func:`normalize_image`; the evaluator, :mod:`svde.api` prediction and export all size and
resize with :func:`network_size` and :func:`resize_image`), so a prediction made with the API
reproduces an evaluated one to the pixel. :class:`~svde.models.DepthModel` exposes the same
contract as attributes (``stride``, ``mean``, ``std``) and methods (``input_size``,
``prepare_input``).

* Images are RGB, scaled to [0, 1] (uint8 / 255, or float already in [0, 1]) and normalised
  with the ImageNet mean and std that the encoders were pretrained with.
* Height and width must be multiples of :data:`STRIDE`, the encoders' output stride.
* Resizing is bilinear with ``align_corners=False`` and no antialiasing, applied to the
  normalised float image (normalisation is per-channel affine, so the order does not matter
  up to float rounding).

Example:
    >>> import numpy as np
    >>> x = prepare_input(np.zeros((50, 70, 3), np.uint8))
    >>> tuple(x.shape), network_size(480, 640, short_side=384)
    ((1, 3, 64, 64), (384, 512))
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

STRIDE = 32  # the encoders' output stride: network inputs must be multiples of it
# The paper's evaluation size: the shorter side becomes 384 (the authors' eval.py); prediction's default.
EVAL_SHORT_SIDE = 384
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# (x - mean) / std as one multiply-subtract per pixel: this runs for every loaded sample.
_UINT8_SCALE = torch.from_numpy(1.0 / (255.0 * IMAGENET_STD)).view(3, 1, 1)
_FLOAT_SCALE = torch.from_numpy(1.0 / IMAGENET_STD).view(3, 1, 1)
_OFFSET = torch.from_numpy(IMAGENET_MEAN / IMAGENET_STD).view(3, 1, 1)


def check_multiple(value: int, what: str, multiple: int = STRIDE) -> int:
    """``value`` if it is a positive multiple of ``multiple``, else a ``ValueError`` naming ``what``.

    Example:
        >>> check_multiple(384, "--height")
        384
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 or value % multiple:
        raise ValueError(f"{what} must be a positive multiple of {multiple} (the encoder stride), got {value!r}")
    return int(value)


def network_size(height: int, width: int, short_side: int | None = None, multiple: int = STRIDE) -> tuple[int, int]:
    """The (height, width) the network sees: optionally rescaled, then rounded to ``multiple``.

    With ``short_side`` the image is first scaled (aspect ratio kept) so that its shorter side
    has that length, as in the paper's evaluation (384); each side is then rounded to the
    nearest multiple of ``multiple`` with Python's ``round`` (halves to even), at least one
    multiple. This is the authors' ``BaseDataset.get_size`` with ``strategy="smallest_equal"``
    (SamsungLabs/geometry-preserving-de ``datasets/validation_datasets.py``, ``eval.py``). The
    evaluator, prediction and export all use this rule, so they feed the network the same size.

    Example:
        >>> network_size(480, 640), network_size(480, 640, short_side=384), network_size(384, 400, 384)
        ((480, 640), (384, 512), (384, 384))
        >>> network_size(480, 500, short_side=384), network_size(464, 624, short_side=384)
        ((384, 384), (384, 512))
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width} (HxW)")
    short = min(height, width)

    def side(length: int) -> float:
        if not short_side:
            return float(length)
        return float(short_side) if length == short else short_side / short * length

    return tuple(max(multiple, round(side(n) / multiple) * multiple) for n in (height, width))


def normalize_image(rgb: np.ndarray) -> torch.Tensor:
    """RGB (H, W, 3), uint8 or float in [0, 1] -> ImageNet-normalised float32 (3, H, W).

    Example:
        >>> normalize_image(np.zeros((2, 3, 3), np.uint8)).shape
        torch.Size([3, 2, 3])
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
    scale = _UINT8_SCALE if rgb.dtype == np.uint8 else _FLOAT_SCALE
    # Channels first before the float conversion: one contiguous float copy instead of two.
    x = (uint8_chw(rgb) if rgb.dtype == np.uint8 else torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
         .contiguous()).float()
    return x.mul_(scale).sub_(_OFFSET)


def rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as uint8: itself when it is, float images in [0, 1] rounded to 8 bits.

    Example:
        >>> rgb_uint8(np.array([[[0.5, 0.0, 1.0]]], np.float32)).tolist()
        [[[128, 0, 255]]]
    """
    return rgb if rgb.dtype == np.uint8 else np.clip(np.round(np.asarray(rgb, np.float32) * 255.0), 0, 255).astype(np.uint8)


def uint8_chw(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) RGB -> a contiguous uint8 (3, H, W) tensor; float images in [0, 1] are rounded to
    8 bits (:func:`rgb_uint8`: what a deferred-colour training sample carries, :mod:`svde.data.colour`).

    Example:
        >>> uint8_chw(np.full((2, 4, 3), 0.5, np.float32))[:, 0, 0].tolist()
        [128, 128, 128]
    """
    rgb = rgb_uint8(rgb)
    # cv2.split copies each plane with SIMD: 5x faster than a strided permute-copy at 384x512
    if not rgb.size:
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return torch.from_numpy(np.stack(cv2.split(np.ascontiguousarray(rgb))))


def denormalize_image(image: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_image`: (3, H, W) tensor -> uint8 (H, W, 3)."""
    x = image.detach().float().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``, no antialiasing) of a (3, H, W) or (B, 3, H, W) image."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batched = image if image.ndim == 4 else image[None]
    out = F.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=False)
    return out if image.ndim == 4 else out[0]


def prepare_input(image: np.ndarray | torch.Tensor, size: tuple[int, int] | None = None,
                  short_side: int | None = None) -> torch.Tensor:
    """A network-ready (1, 3, h, w) batch from one image.

    ``image`` is RGB (H, W, 3) as a numpy array (uint8, or float in [0, 1]), or an already
    normalised (3, H, W) tensor as datasets return it. ``size`` is the network size; by default
    :func:`network_size` of the image (with ``short_side``).
    """
    x = normalize_image(image) if isinstance(image, np.ndarray) else image
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a normalised (3, H, W) image tensor, got {tuple(x.shape)}")
    size = size or network_size(*x.shape[-2:], short_side=short_side)
    return resize_image(x, size)[None]
