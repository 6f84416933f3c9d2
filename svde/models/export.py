"""Export a depth network to ONNX or TorchScript, with parity checked against PyTorch.

The exported file takes ``image``: (B, 3, H, W) float32, RGB scaled to [0, 1] and normalised
with the ImageNet mean and std (stored in the file's metadata), H and W multiples of 32 (use
:func:`svde.preprocess.network_size` to pick them, :func:`svde.preprocess.prepare_input` to
make the tensor), and returns ``log_disparity``: (B, 1, H, W). ``exp`` of it is disparity
(inverse depth), up to scale for UTS models.

Example (onnxruntime)::

    import numpy as np, onnxruntime as ort
    from svde.preprocess import prepare_input
    session = ort.InferenceSession("mn_lrn4.onnx")
    x = prepare_input(rgb_uint8).numpy()               # (1, 3, h, w), h and w multiples of 32
    log_disp = session.run(["log_disparity"], {"image": x})[0][0, 0]
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from svde.atomic import atomic_path
from svde.errors import RunFailed, UnknownName, UserError
from svde.models.model import DepthModel
from svde.preprocess import IMAGENET_MEAN, IMAGENET_STD, STRIDE, check_multiple

log = logging.getLogger(__name__)


class ExportError(RunFailed):
    """An exported file does not reproduce the PyTorch model's output."""


def example_input(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A seeded random (B, 3, H, W) input; H and W must be multiples of the stride."""
    try:
        check_multiple(height, "input height")
        check_multiple(width, "input width")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if batch < 1:
        raise UserError(f"batch must be >= 1, got {batch}")
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _parity_sizes(height: int, width: int, dynamic: bool) -> list[tuple[int, int]]:
    # A dynamic file is also checked at a second, different size, so a shape that was baked in
    # during tracing cannot pass unnoticed.
    return [(height, width)] + ([(height + STRIDE, width + 2 * STRIDE)] if dynamic else [])


def _check_parity(run: Any, model: nn.Module, sizes: list[tuple[int, int]], batch: int, atol: float, what: str) -> float:
    worst = 0.0
    for i, (h, w) in enumerate(sizes):
        x = example_input(batch, h, w, seed=i + 1)
        with torch.no_grad():
            ref = model(x).numpy()
        with torch.no_grad():
            out = np.asarray(run(x))
        if out.shape != ref.shape:
            raise ExportError(f"{what}: output shape {out.shape} at input {h}x{w}, PyTorch gives {ref.shape}; "
                              "nothing was written")
        diff = float(np.abs(out - ref).max()) if np.isfinite(out).all() else math.inf
        worst = max(worst, diff)
        if diff > atol:
            raise ExportError(f"{what}: max abs difference to PyTorch {diff:.3g} > {atol:g} at input {h}x{w}; "
                              "nothing was written")
    return worst


def export_onnx(model: DepthModel, path: str | os.PathLike, height: int = 384, width: int = 384,
                dynamic: bool = False, batch: int = 1, opset: int = 17, atol: float = 1e-4) -> float:
    """Export to ONNX and check it with onnxruntime against PyTorch; returns the max abs difference.

    Input ``image`` (B, 3, H, W) ImageNet-normalised RGB, output ``log_disparity`` (B, 1, H, W).
    With ``dynamic`` batch, height and width are free (H, W multiples of 32) and parity is also
    checked at a second size. The file is only written (atomically) when parity holds; the
    model name and preprocessing are stored in the ONNX metadata.

    Example:
        >>> diff = export_onnx(build_model("mn_lrn4").eval(), "mn.onnx", 64, 64)  # doctest: +SKIP
    """
    import onnx
    import onnxruntime as ort

    if opset < 17:
        raise UserError(f"opset must be >= 17, got {opset}")
    model = model.cpu().float().eval()
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The legacy TorchScript-based exporter is used on purpose (the dynamo exporter needs
            # onnxscript); its deprecation note and the shape-check TracerWarning are expected.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            torch.onnx.export(model, (example_input(batch, height, width),), str(tmp), dynamo=False,
                              opset_version=opset, input_names=["image"], output_names=["log_disparity"],
                              dynamic_axes={"image": axes, "log_disparity": axes} if dynamic else None)
        proto = onnx.load(str(tmp))
        meta = {"svde_model": model.name, "svde_precision": "fp32", "output": "log_disparity",
                "stride": str(STRIDE),
                "mean": json.dumps(IMAGENET_MEAN.tolist()), "std": json.dumps(IMAGENET_STD.tolist())}
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diff = _check_parity(lambda x: session.run(None, {"image": x.numpy()})[0], model,
                             _parity_sizes(height, width, dynamic), batch, atol, f"ONNX export of {model.name}")
    log.debug("wrote %s (max abs difference to PyTorch %.2e)", path, diff)
    return diff


def export_torchscript(model: DepthModel, path: str | os.PathLike, height: int = 384, width: int = 384,
                       dynamic: bool = False, batch: int = 1, atol: float = 1e-4) -> float:
    """Trace to TorchScript, reload the file and check it against PyTorch; returns the max abs difference.

    Example:
        >>> diff = export_torchscript(build_model("mn_lrn4").eval(), "mn.pt", 64, 64)  # doctest: +SKIP
    """
    model = model.cpu().float().eval()
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the portable format
            # check_trace re-traces to compare graphs; the parity check below tests outputs instead.
            traced = torch.jit.trace(model, example_input(batch, height, width), check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={"svde.json": json.dumps({"svde_model": model.name})})
            loaded = torch.jit.load(str(tmp), map_location="cpu")
        diff = _check_parity(lambda x: loaded(x).numpy(), model, _parity_sizes(height, width, dynamic), batch,
                             atol, f"TorchScript export of {model.name}")
    log.debug("wrote %s (max abs difference to PyTorch %.2e)", path, diff)
    return diff


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript}


def export_model(model: DepthModel, path: str | os.PathLike, fmt: str, **options: Any) -> float:
    """Export with the exporter registered under ``fmt`` (``onnx`` or ``torchscript``)."""
    if fmt not in EXPORTERS:
        raise UnknownName(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORTERS)}")
    return EXPORTERS[fmt](model, path, **options)
