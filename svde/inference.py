"""svde 0.1's ``svde.inference``: deprecated, kept so that code written against 0.1 keeps
working; it will be removed in svde 0.4.

Exactly the public names 0.1 defined are served, each from its one home, and each use warns
(``DeprecationWarning``) naming that home:

* :mod:`svde.api`: ``predict``, ``convert_domain``, ``DOMAINS``; ``load_depth_model`` (kept with
  0.1's behaviour: ``model`` alone builds random weights; :func:`svde.load` is the new loader);
* :mod:`svde.preprocess`: ``STRIDE``, ``network_size``, and ``preprocess(rgb, size)`` as
  ``prepare_input(rgb, size)`` (bilinear on the normalised image, the evaluator's contract, where
  0.1 resized the uint8 image with ``cv2.INTER_AREA``);
* :mod:`svde.viz`: ``colorize``; :mod:`svde.geometry`: ``intrinsics_from_fov``, ``point_cloud``
  (was ``backproject``);
* :mod:`svde.data.io`: ``write_rgb``, ``save_png16``, ``load_png16``, ``write_ply``;
  :mod:`svde.data.layout`: ``list_images``, ``USER_IMAGE_EXTS`` (was ``IMAGE_EXTENSIONS``);
* :mod:`svde.models.export`: ``export_onnx``, ``export_torchscript``, ``export_model``,
  ``EXPORTERS``, ``ExportError``;
* :mod:`svde.models.profile`: ``count_parameters``, ``count_macs``, ``measure_latency``,
  ``benchmark_model``, ``markdown_table``; :mod:`svde.device`: ``AMP_DTYPES``.

Not served: 0.1's command-line helpers ``add_model_arguments``, ``check_model_arguments`` and
``output_stems`` (now in :mod:`svde.cli.common`, which a library module does not import).
``predict`` keeps 0.1's default of the native input size (``short_side=None``); ``svde.api.predict``
runs at the paper's 384 by default.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from svde.inference import STRIDE
    >>> STRIDE, str(caught[0].message)
    (32, 'svde.inference is deprecated (removal in svde 0.4): use svde.preprocess.STRIDE')
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

REMOVAL = "0.4"

# 0.1 name -> (module, name there)
_HOMES: dict[str, tuple[str, str]] = {
    "DOMAINS": ("svde.api", "DOMAINS"), "convert_domain": ("svde.api", "convert_domain"),
    "STRIDE": ("svde.preprocess", "STRIDE"),
    "network_size": ("svde.preprocess", "network_size"),  # 0.1 imported it from its home, and so could its users
    "colorize": ("svde.viz", "colorize"),
    "intrinsics_from_fov": ("svde.geometry", "intrinsics_from_fov"), "backproject": ("svde.geometry", "point_cloud"),
    "write_rgb": ("svde.data.io", "write_rgb"), "save_png16": ("svde.data.io", "save_png16"),
    "load_png16": ("svde.data.io", "load_png16"), "write_ply": ("svde.data.io", "write_ply"),
    "list_images": ("svde.data.layout", "list_images"), "IMAGE_EXTENSIONS": ("svde.data.layout", "USER_IMAGE_EXTS"),
    "export_onnx": ("svde.models.export", "export_onnx"),
    "export_torchscript": ("svde.models.export", "export_torchscript"),
    "export_model": ("svde.models.export", "export_model"), "EXPORTERS": ("svde.models.export", "EXPORTERS"),
    "ExportError": ("svde.models.export", "ExportError"),
    "count_parameters": ("svde.models.profile", "count_parameters"),
    "count_macs": ("svde.models.profile", "count_macs"),
    "measure_latency": ("svde.models.profile", "measure_latency"),
    "benchmark_model": ("svde.models.profile", "benchmark_model"),
    "markdown_table": ("svde.models.profile", "markdown_table"),
    "AMP_DTYPES": ("svde.device", "AMP_DTYPES"),
}


def _load_depth_model(checkpoint: str | os.PathLike | None = None, official: str | os.PathLike | None = None,
                      model: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """0.1's ``load_depth_model``: a project checkpoint, a released file (with ``model``), or
    (``model`` alone) random weights; in eval mode on ``device``."""
    from svde.api import legacy_source, load

    return load(legacy_source(checkpoint, official, model), device=device, model=model, pretrained=False)


def _predict(model: nn.Module, rgb: np.ndarray, short_side: int | None = None,
             device: str | torch.device | None = None) -> np.ndarray:
    """0.1's ``predict``: log-disparity (H, W) at the native input size unless ``short_side``."""
    from svde.api import predict

    return predict(model, rgb, short_side=short_side, device=device)


def _preprocess(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """0.1's ``preprocess``: uint8 (H, W, 3) RGB -> normalised (1, 3, h, w) at ``size``."""
    from svde.preprocess import prepare_input

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")
    return prepare_input(rgb, tuple(size))


_WRAPPERS = {"load_depth_model": (_load_depth_model, "svde.load (svde.api.load)"),
             "predict": (_predict, "svde.api.predict"),
             "preprocess": (_preprocess, "svde.preprocess.prepare_input")}

__all__ = sorted([*_HOMES, *_WRAPPERS])


def __getattr__(name: str) -> Any:
    if name in _WRAPPERS:
        value, home = _WRAPPERS[name]
    elif name in _HOMES:
        module, attr = _HOMES[name]
        value, home = getattr(importlib.import_module(module), attr), f"{module}.{attr}"
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Attribute the warning to the user's line, also for ``from svde.inference import name``
    # (whose getattr runs inside importlib), so that Python's default filters show it.
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        level, frame = level + 1, frame.f_back
    warnings.warn(f"svde.inference is deprecated (removal in svde {REMOVAL}): use {home}", DeprecationWarning,
                  stacklevel=level)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
