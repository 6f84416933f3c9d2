"""Using a trained network: load, predict on any image, convert, visualise, export, benchmark.

The networks predict **log-disparity** (log inverse depth, up to an unknown scale for UTS
models) from ImageNet-normalised RGB whose height and width are multiples of 32. The helpers
here hide that contract: :func:`predict` takes a uint8 RGB image of any size, resizes it to
multiples of 32, runs the network and resizes the prediction back to the input size.

Example:
    >>> import numpy as np
    >>> from svde.models import build_model
    >>> model = build_model("mn_lrn4").eval()
    >>> rgb = np.zeros((50, 70, 3), dtype=np.uint8)
    >>> log_disp = predict(model, rgb)
    >>> log_disp.shape, convert_domain(log_disp, "depth").dtype
    ((50, 70), dtype('float32'))
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svde.data.base import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from svde.data.io import read_png16
from svde.evaluation.metrics import backproject as backproject_grid
from svde.evaluation.protocols import network_size
from svde.models import (
    MODELS,
    DepthModel,
    build_model,
    load_model,
    load_official_checkpoint,
    optimize_for_inference,
)
from svde.atomic import atomic_path, write_bytes, write_json
from svde.errors import RunFailed, UserError

log = logging.getLogger(__name__)

STRIDE = 32  # the encoders' output stride: network inputs must be multiples of it
DOMAINS = ("log_disparity", "disparity", "depth", "log_depth")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")


class ExportError(RunFailed):
    """An exported file does not reproduce the PyTorch model's output."""


class NonFiniteOutput(RunFailed, FloatingPointError):
    """The network or a domain conversion produced NaN or infinite values."""


class UnknownName(UserError, KeyError):
    """A name (model, domain, format, ...) that is not one of the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---- checking the scripts' arguments before any work ----------------------------------------
def check_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; otherwise the named device, which must exist here.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise UserError(f"device {name!r}: not a device name; expected cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r}: CUDA is not available here; use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r}: MPS is not available here; use cpu (or auto)")
    return device


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable (a probe file is created and removed).

    Called before any work, so that a run does not compute everything and then fail to save it.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".svde-write-check.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write there ({exc.strerror or exc}); "
                        f"expected a writable folder") from None
    return path


def check_network_size(height: int, width: int, what: str = "--height/--width") -> None:
    """Height and width must be positive multiples of the network stride (32)."""
    if height <= 0 or width <= 0 or height % STRIDE or width % STRIDE:
        raise UserError(f"{what}: the size must be positive multiples of {STRIDE}, got {height}x{width} (HxW)")


def check_positive(option: str, value: float | None, minimum: float = 1) -> None:
    """``option`` must be finite and >= ``minimum`` (``None``: not given, nothing to check)."""
    if value is not None and not (math.isfinite(value) and value >= minimum):
        raise UserError(f"{option} must be >= {minimum:g}, got {value:g}")


# ---- loading ---------------------------------------------------------------------------
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
    return net.to(check_device(device)).eval()


def add_model_arguments(parser: "argparse.ArgumentParser", random_weights: str | None = None) -> None:
    """Add the scripts' shared ``--checkpoint | --official [--random-weights]`` and ``--model``.

    ``random_weights`` is the help text of ``--random-weights``; ``None`` leaves that option out.
    Check the parsed arguments with :func:`check_model_arguments`.
    """
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a checkpoint of this project (knows its model)")
    src.add_argument("--official", type=Path, help="an authors' released state dict (needs --model)")
    if random_weights is not None:
        src.add_argument("--random-weights", action="store_true", help=random_weights)
    parser.add_argument("--model", choices=list(MODELS),
                        help="model name (with --official" + (" or --random-weights)" if random_weights else ")"))


def add_debug_argument(parser: "argparse.ArgumentParser") -> None:
    """``--debug``: show the full traceback of an error (handled by :func:`svde.cli.common.run_main`)."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback instead of one error line")


def check_model_arguments(parser: "argparse.ArgumentParser", args: "argparse.Namespace") -> None:
    """``parser.error`` unless ``--model`` is given exactly where it is needed."""
    if (args.official is not None or getattr(args, "random_weights", False)) and args.model is None:
        parser.error("--official" + (" and --random-weights need" if hasattr(args, "random_weights") else " needs")
                     + " --model NAME (a released file does not record its architecture)")
    if args.checkpoint is not None and args.model is not None:
        parser.error("--model goes with --official; a project checkpoint knows its model")


# ---- images in, predictions out ----------------------------------------------------------
def preprocess(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> normalised (1, 3, h, w) at ``size`` = (h, w).

    Example:
        >>> preprocess(np.zeros((50, 70, 3), np.uint8), (64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")
    h, w = size
    if (h, w) != rgb.shape[:2]:
        # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging.
        shrink = h * w < rgb.shape[0] * rgb.shape[1]
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return normalize_image(rgb)[None]


@torch.no_grad()
def predict(model: nn.Module, rgb: np.ndarray, short_side: int | None = None,
            device: str | torch.device | None = None) -> np.ndarray:
    """Log-disparity, float32 (H, W), for a uint8 RGB image of any size.

    Args:
        model: a network mapping (1, 3, h, w) -> (1, 1, h, w) log-disparity.
        rgb: uint8 (H, W, 3).
        short_side: rescale so the shorter side has this length before rounding to multiples
            of 32 (``None``: the native size, rounded).
        device: defaults to the model's device.

    Example:
        >>> from svde.models import build_model
        >>> predict(build_model("mn_lrn4").eval(), np.zeros((50, 70, 3), np.uint8)).shape
        (50, 70)
    """
    if device is None:
        device = next(model.parameters()).device
    height, width = rgb.shape[:2]
    x = preprocess(rgb, network_size(height, width, short_side)).to(device)
    out = model(x)
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


def list_images(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Images under ``path`` (a file, or a folder searched recursively) and the skipped files.

    Returns ``(images, skipped)``, both sorted; a file is an image by its extension
    (:data:`IMAGE_EXTENSIONS`, any case). A single file that is not an image is an error.

    Example:
        >>> images, skipped = list_images("photos/")  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UserError(f"{path} is not an image file (extensions: {', '.join(IMAGE_EXTENSIONS)})")
        return [path], []
    if not path.is_dir():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    return images, [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]


def output_stems(images: Sequence[Path], root: Path) -> list[Path]:
    """Output name stems relative to ``root`` (a folder, or the single image's parent).

    ``a.jpg`` and ``a.png`` in the same folder would collide, so those keep their extension
    (``a_jpg``, ``a_png``).

    Example:
        >>> [str(s) for s in output_stems([Path("r/a.jpg"), Path("r/a.png"), Path("r/s/b.png")], Path("r"))]
        ['a_jpg', 'a_png', 's/b']
    """
    rel = [p.relative_to(root) for p in images]
    plain = [r.with_suffix("") for r in rel]
    counts: dict[Path, int] = {}
    for stem in plain:
        counts[stem] = counts.get(stem, 0) + 1
    return [s if counts[s] == 1 else r.with_name(r.name.replace(".", "_")) for s, r in zip(plain, rel)]


# ---- writing predictions -------------------------------------------------------------------
def colorize(values: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0), cmap: str = "magma",
             invert: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB visualisation, clipped to robust percentiles of the valid values.

    Args:
        values: (H, W) float array.
        percentiles: the low/high percentiles mapped to the ends of the colour map, so a few
            extreme pixels do not wash out the picture.
        cmap: a matplotlib colour map name.
        invert: flip the map (e.g. for depth, so that near is bright as for disparity).
        mask: pixels to use for the percentiles and to draw; the others are black.

    Example:
        >>> colorize(np.arange(12, dtype=np.float32).reshape(3, 4)).shape
        (3, 4, 3)
    """
    import matplotlib  # lazily: only visualisation needs it

    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values) if mask is None else (np.asarray(mask, bool) & np.isfinite(values))
    lo, hi = np.percentile(values[valid], percentiles) if valid.any() else (0.0, 1.0)
    scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(values)
    if invert:
        scaled = 1.0 - scaled
    rgb = (matplotlib.colormaps[cmap](np.where(valid, scaled, 0.0))[..., :3] * 255.0).round().astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def _write_image(path: Path, image: np.ndarray) -> Path:
    """Encode ``image`` by the file's extension and write it atomically."""
    ok, buf = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"cannot encode {path} as {path.suffix}")
    return write_bytes(path, buf.tobytes())


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write a uint8 RGB image (PNG/JPEG by extension) atomically, creating the folder."""
    return _write_image(Path(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_npy(path: str | os.PathLike, values: np.ndarray) -> Path:
    """Write an array as ``.npy`` atomically (no pickled objects: ``allow_pickle=False``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(values), allow_pickle=False)
    return Path(path)


def save_png16(path: str | os.PathLike, values: np.ndarray, **info: Any) -> dict[str, Any]:
    """Write ``values`` as a 16-bit PNG normalised to its min..max, with a JSON sidecar.

    The sidecar (same name, ``.json``) stores ``min`` and ``max``, so that
    ``value = min + png / 65535 * (max - min)`` (see :func:`load_png16`); the quantisation error
    is at most ``(max - min) / 131070``. Extra keyword arguments (e.g. ``domain``) go into the
    sidecar too.

    Example:
        >>> meta = save_png16("out/img.depth.png", depth, domain="depth")  # doctest: +SKIP
    """
    path = Path(path)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise ValueError(f"{path}: expected a finite (H, W) array, got shape {values.shape}")
    lo, hi = float(values.min()), float(values.max())
    q = np.zeros(values.shape, np.uint16) if hi == lo else np.round((values - lo) / (hi - lo) * 65535.0).astype(np.uint16)
    meta = {"min": lo, "max": hi, "encoding": "value = min + png / 65535 * (max - min)", **info}
    # The sidecar first: a PNG is never left without the scaling that decodes it.
    write_json(path.with_suffix(".json"), meta)
    _write_image(path, q)
    return meta


def load_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a 16-bit PNG written by :func:`save_png16` back to float32 values (uses the sidecar)."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{path}: sidecar {sidecar} with the min/max scaling is missing")
    meta = json.loads(sidecar.read_text())
    if not {"min", "max"} <= set(meta):
        raise ValueError(f"{sidecar}: expected 'min' and 'max' entries, got {sorted(meta)}")
    q = read_png16(path).astype(np.float64)
    return (meta["min"] + q / 65535.0 * (meta["max"] - meta["min"])).astype(np.float32)


# ---- point clouds ----------------------------------------------------------------------------
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


def check_camera(fov: float | None = None, intrinsics: Sequence[float] | None = None) -> None:
    """A horizontal field of view must be in (0, 180) degrees; intrinsics fx, fy > 0, cx, cy finite."""
    if fov is not None and not (math.isfinite(fov) and 0.0 < fov < 180.0):
        raise UserError(f"--fov: the horizontal field of view must be in (0, 180) degrees, got {fov:g}")
    if intrinsics is not None:
        if len(intrinsics) != 4 or not all(math.isfinite(v) for v in intrinsics):
            raise UserError(f"--intrinsics: expected four finite numbers FX FY CX CY, got {list(intrinsics)}")
        if intrinsics[0] <= 0 or intrinsics[1] <= 0:
            raise UserError(f"--intrinsics: focal lengths FX and FY must be > 0 pixels, got {intrinsics[0]:g} "
                            f"and {intrinsics[1]:g}")


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


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None,
              binary: bool = True) -> Path:
    """Write a point cloud as PLY: ``x y z`` float32 and, with colours, ``red green blue`` uint8.

    Example:
        >>> write_ply("cloud.ply", np.zeros((4, 3), np.float32), np.zeros((4, 3), np.uint8))  # doctest: +SKIP
    """
    path = Path(path)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    if colors is not None and (colors.shape != points.shape):
        raise ValueError(f"colors must be (N, 3) like the points {points.shape}, got {colors.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertices[channel] = colors[:, i]
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(points)}",
              "property float x", "property float y", "property float z"]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(vertices.tobytes())
        else:
            fmt = "%.6g %.6g %.6g" + (" %d %d %d" if colors is not None else "")
            np.savetxt(f, vertices.tolist(), fmt=fmt)
    return path


# ---- export ------------------------------------------------------------------------------------
def _example_input(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    check_network_size(height, width, "input size")
    check_positive("batch", batch)
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _parity_sizes(height: int, width: int, dynamic: bool) -> list[tuple[int, int]]:
    # A dynamic file is also checked at a second, different size, so a shape that was baked in
    # during tracing cannot pass unnoticed.
    return [(height, width)] + ([(height + STRIDE, width + 2 * STRIDE)] if dynamic else [])


@contextmanager
def _module_ops(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s own operations: no BatchNorm-folded fast path (see svde.models.fast).

    Exporters trace the module's own graph; the eval fast path rounds differently (folded
    weights), so the reference for parity must not use it.
    """
    previous = getattr(model, "fast_inference", None)
    if previous is not None:
        model.fast_inference = False
    try:
        yield
    finally:
        if previous is not None:
            model.fast_inference = previous


def _check_parity(run: Any, model: nn.Module, sizes: list[tuple[int, int]], batch: int, atol: float, what: str) -> float:
    worst = 0.0
    for i, (h, w) in enumerate(sizes):
        x = _example_input(batch, h, w, seed=i + 1)
        with torch.no_grad(), _module_ops(model):
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
            torch.onnx.export(model, (_example_input(batch, height, width),), str(tmp), dynamo=False,
                              opset_version=opset, input_names=["image"], output_names=["log_disparity"],
                              dynamic_axes={"image": axes, "log_disparity": axes} if dynamic else None)
        proto = onnx.load(str(tmp))
        meta = {"svde_model": model.name, "output": "log_disparity", "stride": str(STRIDE),
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
            traced = torch.jit.trace(model, _example_input(batch, height, width), check_trace=False)
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


# ---- benchmarking ----------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> int:
    """Number of parameters (BatchNorm statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, height: int = 384, width: int = 384) -> int:
    """Multiply-adds of one (1, 3, H, W) forward pass: FLOPs from ``FlopCounterMode`` / 2.

    Only the operators PyTorch's counter knows (convolutions and matrix products) are counted;
    pooling, normalisation, activations and interpolation are not.

    Example:
        >>> count_macs(build_model("mn_lrn4").eval(), 64, 64) > 0
        True
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width, device=device))
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_latency(model: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10,
                    amp_dtype: torch.dtype | None = None) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` forward passes after ``warmup`` untimed ones.

    Each pass is timed on its own, with CUDA synchronised before and after, so the median is
    robust to the odd slow run (other processes, clock changes).
    """
    if repeats < 1 or warmup < 0:
        raise UserError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    device = x.device
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    times = []
    with autocast:
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return times


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def benchmark_model(name: str, device: str = "cpu", height: int = 384, width: int = 384, batch: int = 1,
                    amp: str | None = None, channels_last: bool = True, compile: bool = False,
                    warmup: int = 3, repeats: int = 10, model: nn.Module | None = None) -> dict[str, Any]:
    """Params, MAdds (per image) and median latency / FPS of one model; a row for :func:`markdown_table`.

    Args:
        name: a model name (random weights are built unless ``model`` is given: speed does not
            depend on the weights).
        amp: ``None``, ``"fp16"`` or ``"bf16"`` (autocast).
        channels_last: NHWC memory format for the weights and input (the models' default);
            ``False`` measures the NCHW layout.
        compile: run :func:`svde.models.optimize_for_inference` with ``compile=True``
            (BatchNorm folded, channels-last, ``torch.compile``; warm-up includes compiling).

    Example:
        >>> row = benchmark_model("mn_lrn4", height=64, width=64, warmup=0, repeats=1)
        >>> sorted(row)[:3]
        ['amp', 'batch', 'channels_last']
    """
    if amp is not None and amp not in AMP_DTYPES:
        raise UnknownName(f"unknown AMP dtype {amp!r}; valid: {', '.join(AMP_DTYPES)}")
    dev = check_device(device)
    net = (model if model is not None else build_model(name)).to(dev).eval()
    params = count_parameters(net)
    macs = count_macs(net, height, width)
    # DepthModel is channels-last by default; the option makes the layout explicit either way.
    layout = torch.channels_last if channels_last or compile else torch.contiguous_format
    net = net.to(memory_format=layout)
    x = _example_input(batch, height, width).to(dev).contiguous(memory_format=layout)
    if compile:
        # The project's opt-in path: BatchNorm folded, channels-last, torch.compile'd.
        net = optimize_for_inference(net, compile=True)
    else:
        # One fp32 call builds DepthModel's BatchNorm-folded copy (its accuracy check must not
        # run under autocast); later calls, autocast or not, reuse it.
        with torch.no_grad():
            net(x)
    times = measure_latency(net, x, warmup=warmup, repeats=repeats, amp_dtype=AMP_DTYPES.get(amp) if amp else None)
    median = statistics.median(times)
    return {"model": name, "device": str(dev), "input": f"{height}x{width}", "batch": batch,
            "amp": amp or "fp32", "channels_last": layout == torch.channels_last, "compile": compile,
            "params_m": params / 1e6, "gmacs": macs / 1e9, "latency_ms": median,
            "latency_min_ms": min(times), "fps": batch * 1000.0 / median, "repeats": repeats}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Benchmark rows as a markdown table (Params in millions, MAdds in G per image)."""
    head = "| model | device | input | batch | precision | channels-last | compile | Params (M) | MAdds (G) | latency median (ms) | latency min (ms) | FPS |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['input']} | {r['batch']} | {r['amp']} | "
                     f"{'yes' if r['channels_last'] else 'no'} | {'yes' if r['compile'] else 'no'} | "
                     f"{r['params_m']:.2f} | {r['gmacs']:.2f} | {r['latency_ms']:.1f} | {r['latency_min_ms']:.1f} | "
                     f"{r['fps']:.1f} |")
    return "\n".join(lines)

