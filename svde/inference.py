"""svde 0.1's inference module, kept so that code written against it keeps working.

Each name now lives in its one home; new code imports from there:

* :mod:`svde.api`: ``load_depth_model``, ``predict``, ``convert_domain``, ``DOMAINS``;
* :mod:`svde.viz`: ``colorize``; :mod:`svde.geometry`: ``intrinsics_from_fov``, ``point_cloud`` (was ``backproject``);
* :mod:`svde.data.io`: ``write_rgb``, ``write_npy``, ``save_png16``, ``load_png16``, ``write_ply``;
* :mod:`svde.data.layout`: ``list_images``;
* :mod:`svde.models.export`: ``export_onnx``, ``export_torchscript``, ``export_model``;
* :mod:`svde.models.profile`: ``count_parameters``, ``count_macs``, ``measure_latency``,
  ``benchmark_model``, ``markdown_table``;
* :mod:`svde.preprocess`: ``network_size``, ``STRIDE``; :mod:`svde.device`: ``resolve_device``;
* :mod:`svde.cli.common`: the scripts' argument helpers.
"""

from __future__ import annotations

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
from svde.geometry import intrinsics_from_fov
from svde.geometry import point_cloud as backproject
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
