"""From an image to depth: the one prediction path (API, scripts, ``DepthModel.infer_image``).

:func:`predict` takes an RGB image of any size (numpy or PIL), prepares it with the model's own input
contract (:mod:`svde.preprocess`: the evaluator's exact resizing and normalisation, so a
prediction reproduces an evaluated one to the pixel), runs the fast inference snapshot
(:func:`svde.models.fast.for_inference`, cached until the weights change) and resizes the
log-disparity back to the input size. :func:`convert_domain` turns it into disparity, depth or
log-depth; for the scale-invariant (UTS) models depth and disparity are known up to one
unknown scale (log domains up to a shift).

Example:
    >>> import numpy as np
    >>> from svde.models import build_model
    >>> log_disp = predict(build_model("mn_lrn4"), np.zeros((50, 70, 3), np.uint8))
    >>> log_disp.shape, convert_domain(log_disp, "depth").dtype
    ((50, 70), dtype('float32'))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svde.errors import RunFailed, UnknownName, UserError
from svde.models.fast import for_inference
from svde.preprocess import EVAL_SHORT_SIDE, network_size, prepare_input

# What a prediction can be returned as; the network itself predicts log-disparity.
DOMAINS = ("log_disparity", "disparity", "depth", "log_depth")


class NonFiniteOutput(RunFailed, FloatingPointError):
    """The network or a domain conversion produced NaN or infinite values."""


def as_rgb_array(image: Any, bgr: bool = False) -> np.ndarray:
    """An (H, W, 3) RGB array from a numpy image (RGB, or BGR with ``bgr``, as cv2 reads it) or a
    PIL image (any mode; converted to RGB). A clear :class:`~svde.errors.UserError` otherwise.

    Example:
        >>> as_rgb_array(np.zeros((2, 3, 3), np.uint8)).shape
        (2, 3, 3)
    """
    if hasattr(image, "convert") and hasattr(image, "mode") and not isinstance(image, np.ndarray):  # PIL.Image
        if bgr:
            raise UserError("bgr=True is for numpy arrays read with cv2; a PIL image knows its channel order")
        image = np.array(image.convert("RGB"))  # a writable copy (torch.from_numpy warns on read-only)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise UserError(f"expected an RGB image: a PIL image or a numpy array of shape (H, W, 3), uint8 or float "
                        f"in [0, 1]; got {what}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise UserError(f"expected a uint8 image (0..255) or a float one in [0, 1], got {image.dtype}; "
                            f"convert it first, e.g. (img / 65535).astype(np.float32) for 16-bit")
        finite = np.isfinite(image)
        if not finite.all():
            raise UserError(f"the image holds {int((~finite).sum())} NaN or infinite values")
        if image.size and (float(image.max()) > 1.0 + 1e-3 or float(image.min()) < -1e-3):
            raise UserError(f"a float RGB image must hold values in [0, 1] (uint8 images may be 0..255), "
                            f"got values in {float(image.min()):g}..{float(image.max()):g}")
    return image[..., ::-1] if bgr else image


@torch.no_grad()
def predict(model: nn.Module, rgb: Any, short_side: int | None = EVAL_SHORT_SIDE,
            device: str | torch.device | None = None, bgr: bool = False) -> np.ndarray:
    """Log-disparity, float32 (H, W), for an RGB image of any size.

    Args:
        model: a :class:`~svde.models.DepthModel` (run as its cached BatchNorm-folded snapshot)
            or any module mapping (1, 3, h, w) -> (1, 1, h, w) log-disparity.
        rgb: (H, W, 3) RGB numpy array (uint8, or float in [0, 1]) or a PIL image.
        short_side: the network runs with the shorter side rescaled to this length, then both
            rounded to multiples of 32: the paper's evaluation size, 384, by default (the authors'
            size rule, so a prediction equals an evaluated one and its cost does not grow with the
            photo). ``None``: the native size (rounded), only when asked for.
        device: the model's device (the default); another one is an error.
        bgr: ``rgb`` is a BGR array, as ``cv2.imread`` gives.

    The output is upsampled in the log-disparity domain, as the authors' UTS evaluation does
    (SamsungLabs/geometry-preserving-de ``metrics/logdisp_metrics.py``), so the result equals
    what svde's UTS evaluation scores for the same image. ``infer_image``, ``svde.api.predict``
    and ``svde predict`` all call this function.

    Example:
        >>> from svde.models import build_model
        >>> predict(build_model("mn_lrn4"), np.zeros((50, 70, 3), np.uint8)).shape
        (50, 70)
    """
    rgb = as_rgb_array(rgb, bgr=bgr)
    if short_side is not None and (isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 1):
        raise UserError(f"short_side must be a positive number of pixels or None (native size), got {short_side!r}")
    net = for_inference(model)
    ref = next(net.parameters(), None)
    if device is not None and ref is not None and torch.device(device) != ref.device:
        raise UserError(f"device {str(device)!r}: the model is on {ref.device}; move it there first (model.to(...))")
    if device is None:
        device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    height, width = rgb.shape[:2]
    x = prepare_input(rgb, size=network_size(height, width, short_side)).to(device, dtype)
    out = net(x)
    out = F.interpolate(out.float(), size=(height, width), mode="bilinear", align_corners=False)
    out = out[0, 0].cpu().numpy().astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise NonFiniteOutput(f"{getattr(model, 'name', '') or 'the network'} produced {int((~np.isfinite(out)).sum())} "
                              f"non-finite values "
                              f"for a {width}x{height} image; the weights are probably broken")
    return out


def convert_domain(log_disparity: np.ndarray, domain: str) -> np.ndarray:
    """Convert the network's log-disparity to ``domain`` (one of :data:`DOMAINS`).

    disparity = exp(log-disparity); depth = 1 / disparity; log-depth = -log-disparity. For UTS
    models depth and disparity are known only up to a scale factor.

    Example:
        >>> convert_domain(np.log(np.array([0.5, 2.0], np.float32)), "depth")
        array([2. , 0.5], dtype=float32)
    """
    domain = str(domain).replace("-", "_")  # log-depth spellings, as the authors' --domain
    if domain not in DOMAINS:
        raise UnknownName(f"unknown output domain {domain!r}; valid domains: {', '.join(DOMAINS)}")
    x = np.asarray(log_disparity, dtype=np.float64)
    sign = -1.0 if domain in ("depth", "log_depth") else 1.0
    with np.errstate(over="ignore"):  # overflow is reported below, with the range that caused it
        out = (np.exp(sign * x) if domain in ("disparity", "depth") else sign * x).astype(np.float32)
    if not np.isfinite(out).all():
        raise NonFiniteOutput(f"{domain}: {int((~np.isfinite(out)).sum())} values overflow float32 "
                              f"(log-disparity range {x.min():.3g}..{x.max():.3g}); use a log domain")
    return out
