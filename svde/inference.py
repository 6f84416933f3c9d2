"""svde 0.1's inference module, kept so that code written against it keeps working.

Each name now lives in its one home; new code imports from there:

* :mod:`svde.api`: ``load_depth_model``, ``predict``, ``convert_domain``, ``DOMAINS``;
* :mod:`svde.viz`: ``colorize``;
* :mod:`svde.data.io`: ``write_rgb``, ``write_npy``, ``save_png16``, ``load_png16``, ``write_ply``;
* :mod:`svde.data.layout`: ``list_images``;
* :mod:`svde.models.export`: ``export_onnx``, ``export_torchscript``, ``export_model``;
* :mod:`svde.models.profile`: ``count_parameters``, ``count_macs``, ``measure_latency``,
  ``benchmark_model``, ``markdown_table``;
* :mod:`svde.preprocess`: ``network_size``, ``STRIDE``; :mod:`svde.device`: ``resolve_device``;
* :mod:`svde.cli.common`: the scripts' argument helpers.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from svde.api import DOMAINS, NonFiniteOutput, convert_domain, load_depth_model, predict
from svde.cli.common import (
    add_debug_argument,
    add_model_arguments,
    check_camera,
    check_model_arguments,
    check_network_size,
    check_output_folder,
    check_positive,
    output_stems,
)
from svde.data.io import load_png16, save_png16, write_npy, write_ply, write_rgb
from svde.data.layout import USER_IMAGE_EXTS as IMAGE_EXTENSIONS
from svde.data.layout import list_images
from svde.device import resolve_device as check_device
from svde.errors import UnknownName
from svde.evaluation.metrics import backproject as backproject_grid
from svde.models.export import EXPORTERS, ExportError, export_model, export_onnx, export_torchscript
from svde.models.profile import (
    AMP_DTYPES,
    benchmark_model,
    count_macs,
    count_parameters,
    markdown_table,
    measure_latency,
)
from svde.preprocess import STRIDE, network_size
from svde.viz import colorize

__all__ = [
    "AMP_DTYPES", "DOMAINS", "EXPORTERS", "IMAGE_EXTENSIONS", "STRIDE", "ExportError", "NonFiniteOutput",
    "UnknownName", "add_debug_argument", "add_model_arguments", "backproject", "benchmark_model",
    "check_camera", "check_device", "check_model_arguments", "check_network_size", "check_output_folder",
    "check_positive", "colorize", "convert_domain", "count_macs", "count_parameters", "export_model",
    "export_onnx", "export_torchscript", "intrinsics_from_fov", "list_images", "load_depth_model",
    "load_png16", "markdown_table", "measure_latency", "network_size", "output_stems", "predict",
    "save_png16", "write_npy", "write_ply", "write_rgb",
]


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> tuple[float, float, float, float]:
    """Pinhole (fx, fy, cx, cy) in pixels for a horizontal field of view; square pixels.

    The principal point is the image centre in the pixel-centre convention (pixel ``u`` covers
    ``u - 0.5 .. u + 0.5``).

    Example:
        >>> intrinsics_from_fov(640, 480, 90.0)
        (320.0, 320.0, 319.5, 239.5)
    """
    check_camera(fov=fov_deg)
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return (round(f, 6), round(f, 6), (width - 1) / 2.0, (height - 1) / 2.0)


def backproject(depth: np.ndarray, intrinsics: Sequence[float], rgb: np.ndarray | None = None,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels with depth -> camera-frame points (x right, y down, z forward), float32 (N, 3).

    Args:
        depth: (H, W) positive depth (any unit, or up to scale).
        intrinsics: (fx, fy, cx, cy) in pixels of this depth map.
        rgb: optional uint8 (H, W, 3) colours, returned per point.
        mask: optional bool (H, W); non-finite or non-positive depths are always dropped.

    Example:
        >>> pts, _ = backproject(np.full((2, 3), 2.0, np.float32), (1.0, 1.0, 1.0, 0.5))
        >>> pts.shape, pts[0].tolist()
        ((6, 3), [-2.0, -1.0, 2.0])
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"expected an (H, W) depth map, got shape {depth.shape}")
    if rgb is not None and rgb.shape[:2] != depth.shape:
        raise ValueError(f"colour image {rgb.shape[:2]} and depth map {depth.shape} differ in size")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    grid = backproject_grid(torch.from_numpy(np.where(valid, depth, 0.0)), list(intrinsics)).numpy()
    points = np.ascontiguousarray(grid[valid], dtype=np.float32)
    return points, (None if rgb is None else np.ascontiguousarray(rgb[valid], dtype=np.uint8))
