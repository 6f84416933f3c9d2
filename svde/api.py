"""Using a trained network from Python: load it from any source, predict, convert domains.

The networks predict **log-disparity** (log inverse depth; up to an unknown scale for UTS
models). :func:`predict` takes an RGB image of any size, prepares it with the model's own
input contract (:mod:`svde.preprocess`: the evaluator's exact resizing and normalisation, so a
prediction reproduces an evaluated one), runs the fast inference snapshot
(:func:`svde.models.fast.for_inference`) and resizes the log-disparity back to the input size.

Example:
    >>> import numpy as np
    >>> model = load_depth_model(model="mn_lrn4")     # random weights: only to try the pipeline
    >>> log_disp = predict(model, np.zeros((50, 70, 3), np.uint8))
    >>> log_disp.shape, convert_domain(log_disp, "depth").dtype
    ((50, 70), dtype('float32'))
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svde.device import resolve_device
from svde.errors import RunFailed, UnknownName, UserError
from svde.models import MODELS, DepthModel, build_model, load_model, load_official_checkpoint
from svde.models.fast import for_inference
from svde.preprocess import network_size, prepare_input

DOMAINS = ("log_disparity", "disparity", "depth", "log_depth")


class NonFiniteOutput(RunFailed, FloatingPointError):
    """The network or a domain conversion produced NaN or infinite values."""


def load_depth_model(checkpoint: str | os.PathLike | None = None, official: str | os.PathLike | None = None,
                     model: str | None = None, device: str | torch.device = "cpu") -> DepthModel:
    """The network from a project checkpoint, a released file, or (``model`` alone) random weights.

    Args:
        checkpoint: a file written by :func:`svde.models.save_checkpoint` (knows its model name).
        official: an authors' released state dict; needs ``model``.
        model: the model name; alone it builds random weights (for tests and benchmarks).
        device: where to put the network (returned in eval mode).

    Example:
        >>> load_depth_model(model="mn_lrn4").name
        'mn_lrn4'
    """
    if checkpoint is not None and official is not None:
        raise UserError("give either a project checkpoint (--checkpoint) or a released file (--official), not both")
    if model is not None and model not in MODELS:
        raise UnknownName(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")
    if checkpoint is not None:
        net = load_model(checkpoint)
        if model is not None and net.name != model:
            raise UserError(f"{checkpoint} holds a {net.name} model, but model {model!r} was requested")
    elif official is not None:
        if model is None:
            raise UserError(f"a released file ({official}) does not record its architecture: "
                            f"also give the model name (one of {', '.join(MODELS)})")
        net = load_official_checkpoint(official, model)
    elif model is not None:
        net = build_model(model)
    else:
        raise UserError("nothing to load: give a checkpoint, a released file with its model name, or a model name")
    return net.to(resolve_device(device)).eval()


@torch.no_grad()
def predict(model: nn.Module, rgb: np.ndarray, short_side: int | None = None,
            device: str | torch.device | None = None) -> np.ndarray:
    """Log-disparity, float32 (H, W), for an RGB image of any size (uint8, or float in [0, 1]).

    Args:
        model: a :class:`~svde.models.DepthModel` (run as its cached BatchNorm-folded snapshot)
            or any module mapping (1, 3, h, w) -> (1, 1, h, w) log-disparity.
        rgb: (H, W, 3) RGB.
        short_side: rescale so the shorter side has this length before rounding to multiples
            of 32, as the evaluation does (384); ``None``: the native size, rounded.
        device: defaults to the model's device.

    The output is upsampled in the log-disparity domain, as the authors' UTS evaluation does.

    Example:
        >>> from svde.models import build_model
        >>> predict(build_model("mn_lrn4"), np.zeros((50, 70, 3), np.uint8)).shape
        (50, 70)
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UserError(f"expected an RGB image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    net = for_inference(model)
    if device is None:
        ref = next(net.parameters(), None)
        device = ref.device if ref is not None else torch.device("cpu")
    height, width = rgb.shape[:2]
    x = prepare_input(rgb, size=network_size(height, width, short_side)).to(device)
    out = net(x)
    out = F.interpolate(out.float(), size=(height, width), mode="bilinear", align_corners=False)
    out = out[0, 0].cpu().numpy().astype(np.float32)
    if not np.isfinite(out).all():
        raise NonFiniteOutput(f"the network produced {int((~np.isfinite(out)).sum())} non-finite values "
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
