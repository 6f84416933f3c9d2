"""Camera geometry for depth maps: pinhole intrinsics, back-projection and triangle meshes.

Conventions (the same everywhere in svde):

* Intrinsics are ``(fx, fy, cx, cy)`` in pixels of the depth map they describe.
* Pixel ``(v, u)`` (row, column) is the point at the pixel's *centre*; pixel ``u`` covers
  ``u - 0.5 .. u + 0.5``, so the centre of a ``W``-wide image is ``cx = (W - 1) / 2``.
* Camera frame: x right, y down, z forward (along the optical axis); depth is z, not the
  distance along the ray.

:func:`backproject_pixels` is the one back-projection of the project (:func:`backproject` for a
whole map, :func:`point_cloud` for the valid pixels with colours); they take numpy arrays or
torch tensors and return the same kind. :func:`depth_to_mesh` joins neighbouring pixels into
triangles, except across depth discontinuities; :func:`svde.data.io.write_mesh_ply` and
:func:`svde.data.io.write_ply` write meshes and point clouds.

Example:
    >>> import numpy as np
    >>> k = intrinsics_from_fov(4, 3, 90.0)
    >>> k
    (2.0, 2.0, 1.5, 1.0)
    >>> backproject(np.full((3, 4), 2.0), k)[0, 0].tolist()
    [-1.5, -1.0, 2.0]
    >>> mesh = depth_to_mesh(np.full((3, 4), 2.0), k)
    >>> mesh.vertices.shape, mesh.faces.shape
    ((12, 3), (12, 3))
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence, TypeVar

import numpy as np
import torch

from svde.errors import RunFailed

Intrinsics = tuple[float, float, float, float]
Array = TypeVar("Array", np.ndarray, torch.Tensor)

# A triangle is kept when max(depth) / min(depth) over its three vertices is at most this.
DEFAULT_MAX_DEPTH_RATIO = 1.05
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4e38: the largest coordinate a PLY vertex holds


def as_intrinsics(values: Sequence[float] | np.ndarray | torch.Tensor) -> Intrinsics:
    """``[fx, fy, cx, cy]`` (list, tuple, array or tensor) -> a checked tuple of floats.

    Example:
        >>> as_intrinsics(np.array([500, 500, 319.5, 239.5]))
        (500.0, 500.0, 319.5, 239.5)
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().reshape(-1).tolist()
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size != 4 or not np.isfinite(flat).all() or not (flat[0] > 0 and flat[1] > 0):
        raise ValueError(f"intrinsics must be four finite numbers [fx, fy, cx, cy] with fx, fy > 0, "
                         f"got {flat.tolist()}")
    fx, fy, cx, cy = (float(v) for v in flat)
    return fx, fy, cx, cy


def intrinsics_from_fov(width: int, height: int, fov_deg: float, axis: str = "horizontal") -> Intrinsics:
    """Pinhole intrinsics with square pixels, a field of view and the principal point at the centre.

    Args:
        width, height: image size in pixels.
        fov_deg: field of view in degrees, in (0, 180), across the image's ``axis``.
        axis: ``"horizontal"`` (across the width) or ``"vertical"`` (across the height).

    Example:
        >>> intrinsics_from_fov(640, 480, 90.0)
        (320.0, 320.0, 319.5, 239.5)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height} (WxH)")
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    if axis not in ("horizontal", "vertical"):
        raise ValueError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
    extent = width if axis == "horizontal" else height
    # Rounded to 1e-6 px, so that e.g. 90 degrees gives exactly width / 2 (tan(45°) is not 1 in floats).
    f = round((extent / 2.0) / math.tan(math.radians(fov_deg) / 2.0), 6)
    return f, f, (width - 1) / 2.0, (height - 1) / 2.0


def scale_intrinsics(intrinsics: Sequence[float], from_size: tuple[int, int], to_size: tuple[int, int]) -> Intrinsics:
    """Intrinsics of the same camera after resizing the image from ``(H, W)`` to ``(H', W')``.

    A resize with pixel-centre alignment (``align_corners=False``, OpenCV's ``resize``) maps
    ``u + 0.5`` to ``(u + 0.5) * W' / W``, so ``fx' = fx * W' / W`` and
    ``cx' = (cx + 0.5) * W' / W - 0.5`` (likewise for y).

    Example:
        >>> scale_intrinsics((320.0, 320.0, 319.5, 239.5), (480, 640), (240, 320))
        (160.0, 160.0, 159.5, 119.5)
    """
    fx, fy, cx, cy = as_intrinsics(intrinsics)
    (h, w), (h2, w2) = from_size, to_size
    if min(h, w, h2, w2) <= 0:
        raise ValueError(f"image sizes must be positive, got {from_size} -> {to_size} (HxW)")
    sx, sy = w2 / w, h2 / h
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def backproject_pixels(depth: Array, rows: Array, cols: Array,
                       intrinsics: Sequence[float] | np.ndarray | torch.Tensor) -> Array:
    """Points (..., 3) of pixels at ``rows`` (v) and ``cols`` (u) with depths ``depth``: the one
    pinhole back-projection, ``((u - cx) * d / fx, (v - cy) * d / fy, d)``.

    Example:
        >>> backproject_pixels(np.array([2.0]), np.array([0.0]), np.array([1.0]), [1.0, 1.0, 0.0, 0.0]).tolist()
        [[2.0, 0.0, 2.0]]
    """
    fx, fy, cx, cy = as_intrinsics(intrinsics)
    stack = torch.stack if isinstance(depth, torch.Tensor) else np.stack
    return stack(((cols - cx) * depth / fx, (rows - cy) * depth / fy, depth), -1)


def backproject(depth: Array, intrinsics: Sequence[float] | np.ndarray | torch.Tensor) -> Array:
    """Depth (..., H, W) -> camera-frame points (..., H, W, 3), numpy in numpy out, torch in torch out.

    Pixel ``(v, u)`` with depth ``d`` maps to ``((u - cx) * d / fx, (v - cy) * d / fy, d)``.
    Floating inputs keep their dtype (and device); integer depths give float64 (numpy) or the
    default float dtype (torch). Invalid depths (0, NaN, inf) are back-projected as they are;
    mask them before or after.

    Example:
        >>> backproject(torch.full((1, 2), 2.0), [1.0, 1.0, 0.0, 0.0])[0, 1]
        tensor([2., 0., 2.])
    """
    fx, fy, cx, cy = as_intrinsics(intrinsics)
    if depth.ndim < 2:
        raise ValueError(f"expected a depth map of shape (..., H, W), got shape {tuple(depth.shape)}")
    h, w = depth.shape[-2:]
    if isinstance(depth, torch.Tensor):
        d = depth if depth.is_floating_point() else depth.to(torch.get_default_dtype())
        v, u = torch.meshgrid(torch.arange(h, dtype=d.dtype, device=d.device),
                              torch.arange(w, dtype=d.dtype, device=d.device), indexing="ij")
        return backproject_pixels(d, v, u, (fx, fy, cx, cy))
    d = np.asarray(depth)
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    v, u = np.meshgrid(np.arange(h, dtype=d.dtype), np.arange(w, dtype=d.dtype), indexing="ij")
    # Python-float intrinsics keep the array's dtype (NumPy 2 scalar promotion).
    return backproject_pixels(d, v, u, (fx, fy, cx, cy))


class Mesh(NamedTuple):
    """A triangle mesh: ``vertices`` float32 (N, 3), ``faces`` int32 (M, 3), ``colors`` uint8 (N, 3) or None."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None


class PointsOverflow(RunFailed, ValueError):
    """Depths so far that their 3D points do not fit in float32 (the PLY files' type)."""


def float32_points(points: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """(N, 3) points as float32; a coordinate beyond float32's range is a :class:`PointsOverflow`
    naming the count and the depths (not an infinite vertex).

    Example:
        >>> float32_points(np.array([[1e39, 0.0, 1e39]]), np.array([1e39]))
        Traceback (most recent call last):
        svde.geometry.PointsOverflow: 1 of 1 points lie beyond float32's range (depths up to 1e+39): too far to write as a point cloud or mesh (a depth known up to scale can be divided by its median first)
    """
    fits = np.abs(points) <= FLOAT32_MAX
    if not fits.all():
        far = int((~fits.all(axis=-1)).sum())
        raise PointsOverflow(f"{far} of {len(points)} points lie beyond float32's range (depths up to "
                             f"{float(np.max(depths)):.3g}): too far to write as a point cloud or mesh (a depth known "
                             f"up to scale can be divided by its median first)")
    return np.ascontiguousarray(points, dtype=np.float32)


def depth_to_mesh(depth: np.ndarray, intrinsics: Sequence[float] | np.ndarray, rgb: np.ndarray | None = None,
                  mask: np.ndarray | None = None, max_depth_ratio: float = DEFAULT_MAX_DEPTH_RATIO) -> Mesh:
    """Triangulate a depth map: two triangles per 2x2 pixel block, none across a discontinuity.

    Vertices are the valid pixels (finite depth > 0, inside ``mask``), in row-major order,
    back-projected with :func:`backproject` (so they are exactly the point cloud of the same
    pixels). Pixels ``a = (v, u)``, ``b = (v, u+1)``, ``c = (v+1, u)``, ``d = (v+1, u+1)`` give
    the triangles ``(a, c, b)`` and ``(b, c, d)``, wound counter-clockwise as seen from the camera
    (normals towards the camera).

    Discontinuity rule: a triangle is kept only if its three pixels are valid and
    ``max(depth) / min(depth) <= max_depth_ratio`` over them. The ratio does not depend on the
    unit or scale of the depth (so it suits depth known up to scale) nor on the intrinsics.
    Between neighbouring pixels of a smooth surface the ratio is about ``1 + tan(θ) / f``
    (``θ``: angle between the surface normal and the ray, ``f``: focal length in pixels); the
    default 1.05 keeps surfaces up to ~87° oblique at f = 500 px and cuts any step of more than
    5 % of the depth.

    Args:
        depth: (H, W) depth (z), any unit or up to scale.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels of this depth map.
        rgb: optional uint8 (H, W, 3) colours, one per vertex.
        mask: optional bool (H, W) of pixels to use.
        max_depth_ratio: the discontinuity threshold, > 1.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f"expected an (H, W) numeric depth map, got {depth.dtype} array of shape {depth.shape}")
    if rgb is not None and (rgb.shape != depth.shape + (3,) or rgb.dtype != np.uint8):
        raise ValueError(f"colours must be uint8 of shape {depth.shape + (3,)} like the depth map, "
                         f"got {rgb.dtype} {rgb.shape}")
    if mask is not None and np.shape(mask) != depth.shape:
        raise ValueError(f"mask must have the depth map's shape {depth.shape}, got {np.shape(mask)}")
    if not (math.isfinite(max_depth_ratio) and max_depth_ratio > 1.0):
        raise ValueError(f"max_depth_ratio must be a finite number > 1, got {max_depth_ratio}")
    d = depth.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    h, w = d.shape
    index = np.full((h, w), -1, dtype=np.int64)
    index[valid] = np.arange(int(valid.sum()))
    points = float32_points(backproject(np.where(valid, d, 0.0), intrinsics)[valid], d[valid])
    colors = None if rgb is None else np.ascontiguousarray(rgb[valid])

    z = np.where(valid, d, np.nan)
    corner = {"a": (slice(None, -1), slice(None, -1)), "b": (slice(None, -1), slice(1, None)),
              "c": (slice(1, None), slice(None, -1)), "d": (slice(1, None), slice(1, None))}
    triangles = (("a", "c", "b"), ("b", "c", "d"))
    # (H-1, W-1, 2 triangles, 3 corners) -> (2 (H-1) (W-1), 3): row-major over the 2x2 blocks.
    idx = np.stack([np.stack([index[corner[k]] for k in tri], -1) for tri in triangles], -2).reshape(-1, 3)
    tz = np.stack([np.stack([z[corner[k]] for k in tri], -1) for tri in triangles], -2).reshape(-1, 3)
    keep = (idx >= 0).all(axis=1)
    keep[keep] = tz[keep].max(axis=1) <= max_depth_ratio * tz[keep].min(axis=1)
    return Mesh(points, idx[keep].astype(np.int32), colors)


def point_cloud(depth: np.ndarray, intrinsics: Sequence[float], rgb: np.ndarray | None = None,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels with depth -> camera-frame points (x right, y down, z forward), float32 (N, 3).

    Args:
        depth: (H, W) positive depth (any unit, or up to scale).
        intrinsics: (fx, fy, cx, cy) in pixels of this depth map.
        rgb: optional uint8 (H, W, 3) colours, returned per point.
        mask: optional bool (H, W); non-finite or non-positive depths are always dropped.

    Example:
        >>> pts, _ = point_cloud(np.full((2, 3), 2.0, np.float32), (1.0, 1.0, 1.0, 0.5))
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
    # in float64: (u - cx) * d of a far pixel can overflow float32 before the division by fx
    grid = backproject(np.where(valid, depth, np.float32(0.0)).astype(np.float64), intrinsics)
    points = float32_points(grid[valid], depth[valid])
    return points, (None if rgb is None else np.ascontiguousarray(rgb[valid], dtype=np.uint8))
