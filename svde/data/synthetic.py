"""A built-in synthetic dataset: procedurally generated rooms with exact per-pixel depth.

Each sample is a closed room (floor, ceiling, four walls) with random boxes and spheres, seen by
a pinhole camera with random intrinsics and pose, rendered by vectorised ray casting in numpy.
Surfaces carry procedural textures (checkers, stripes, grid lines, random tiles) in world units and
Lambertian shading from a point light, so the image has real monocular cues (texture gradients,
perspective, shading, occlusion) and a network can learn depth from it.

Depth is the z-coordinate in the camera frame (OpenCV convention: x right, y down, z forward,
pixel centres at integer coordinates), so back-projecting pixel ``(u, v)`` with the returned
intrinsics ``[fx, fy, cx, cy]`` as ``z * ((u - cx) / fx, (v - cy) / fy, 1)`` gives the exact 3-D
point that was hit. Sample ``i`` is a pure function of ``(seed, split, i)``.

Example:
    >>> ds = SyntheticDataset(split="val", length=4, height=96, width=128)
    >>> s = ds[0]
    >>> s["target"].shape, s["meta"]["intrinsics"].shape
    (torch.Size([1, 96, 128]), torch.Size([4]))
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import cv2
import numpy as np

from svde.data.base import DataError, DepthDataset, dense_depth_type
from svde.data.transforms import to_uts, to_utss
from svde.types import DepthType

# Splits with a fixed code; any other split name is hashed (crc32), so every split gets its own
# seed stream and samples never repeat across splits.
SPLIT_CODES = {None: 0, "train": 0, "val": 1, "test": 2}

# Surface ids in the ``surface`` map returned by :meth:`SyntheticDataset.render`.
FLOOR, CEILING, WALL_X0, WALL_X1, WALL_Z0, WALL_Z1 = range(6)
ROOM_SURFACES = 6
FACES_PER_BOX = 6


@dataclass
class _Surface:
    """Appearance and (for planar faces) geometry of one surface id."""

    normal: np.ndarray  # world normal (planar faces); ignored for spheres
    u_axis: np.ndarray  # world texture axes
    v_axis: np.ndarray
    albedo: np.ndarray  # RGB in [0, 1]
    scale: float  # texture period in metres
    weights: np.ndarray  # strengths of (checker, stripes, grid, random tiles)


@dataclass
class _Box:
    centre: np.ndarray  # world (3,)
    half: np.ndarray  # half extents (3,) in the box frame
    yaw: float  # rotation about the world y axis


@dataclass
class _Sphere:
    centre: np.ndarray
    radius: float


@dataclass
class Scene:
    """Everything needed to render one sample (all world units in metres, y up)."""

    room: np.ndarray  # (3,) room size along x, y (height), z; the room spans [-x/2, x/2] x [0, y] x [-z/2, z/2]
    cam_pos: np.ndarray  # (3,) camera centre in the world
    cam_rot: np.ndarray  # (3, 3) camera-to-world rotation (columns: camera x right, y down, z forward)
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy in pixels
    light: np.ndarray  # (3,) point light position
    ambient: float
    boxes: list[_Box] = field(default_factory=list)
    spheres: list[_Sphere] = field(default_factory=list)
    surfaces: list[_Surface] = field(default_factory=list)
    tiles: np.ndarray = field(default_factory=lambda: np.zeros((16, 16), np.float32))  # random tile values

    def room_planes_camera(self) -> np.ndarray:
        """The six room planes in the camera frame as (6, 4) rows ``(n, d)`` with ``n . X + d = 0``.

        Rows follow the surface ids: floor, ceiling, wall x-, wall x+, wall z-, wall z+.
        """
        sx, sy, sz = self.room
        world = [((0, 1, 0), 0.0), ((0, 1, 0), -sy), ((1, 0, 0), sx / 2), ((1, 0, 0), -sx / 2),
                 ((0, 0, 1), sz / 2), ((0, 0, 1), -sz / 2)]
        out = np.zeros((6, 4))
        for k, (n, d) in enumerate(world):
            n = np.asarray(n, dtype=np.float64)
            # X_world = R X_cam + c  =>  n.(R X_cam) + n.c + d = 0
            out[k, :3] = self.cam_rot.T @ n
            out[k, 3] = n @ self.cam_pos + d
        return out


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation for an OpenCV camera (x right, y down, z forward) in a y-up world.

    yaw turns about the world up axis, pitch tilts up (positive) or down, roll spins about the view axis.
    """
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward], axis=1)
    c, s = np.cos(roll), np.sin(roll)
    spin = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rot @ spin


def _random_surface(rng: np.random.Generator, normal: np.ndarray, u_axis: np.ndarray, v_axis: np.ndarray,
                    base: np.ndarray | None = None) -> _Surface:
    albedo = base if base is not None else rng.uniform(0.15, 0.95, 3)
    # Each surface gets one or two pattern kinds at random strength: textures are the main cue
    # for surface orientation and distance (texture gradient).
    weights = np.zeros(4)
    weights[rng.choice(4, size=rng.integers(1, 3), replace=False)] = rng.uniform(0.15, 0.5)
    return _Surface(normal, u_axis, v_axis, albedo.astype(np.float32), float(rng.uniform(0.15, 0.8)), weights)


def sample_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw a random room, camera, light and objects for a ``height`` x ``width`` image.

    Example:
        >>> scene = sample_scene(np.random.default_rng(0), 96, 128)
        >>> scene.intrinsics.shape
        (4,)
    """
    room = np.array([rng.uniform(3.0, 8.0), rng.uniform(2.4, 3.4), rng.uniform(3.0, 8.0)])
    margin = 0.6
    cam = np.array([rng.uniform(-room[0] / 2 + margin, room[0] / 2 - margin), rng.uniform(1.0, 1.8),
                    rng.uniform(-room[2] / 2 + margin, room[2] / 2 - margin)])
    # Look roughly towards the room centre so most views see depth, not a wall at arm's length.
    to_centre = np.arctan2(-cam[0], -cam[2]) if np.hypot(cam[0], cam[2]) > 0.3 else rng.uniform(-np.pi, np.pi)
    yaw = to_centre + rng.uniform(-1.0, 1.0)
    rot = _rotation(yaw, np.radians(rng.uniform(-25.0, 5.0)), np.radians(rng.uniform(-5.0, 5.0)))
    hfov = np.radians(rng.uniform(50.0, 75.0))
    f = (width / 2) / np.tan(hfov / 2)  # square pixels: fx == fy
    intrinsics = np.array([f, f, (width - 1) / 2 + rng.uniform(-0.03, 0.03) * width,
                           (height - 1) / 2 + rng.uniform(-0.03, 0.03) * height])
    light = np.array([rng.uniform(-room[0] / 3, room[0] / 3), room[1] - 0.2, rng.uniform(-room[2] / 3, room[2] / 3)])
    scene = Scene(room, cam, rot, intrinsics, light, float(rng.uniform(0.25, 0.45)))

    ex, ey, ez = np.eye(3)
    # Room faces (normals point into the room), then each box's six faces, then spheres.
    for n, u, v in [(ey, ex, ez), (-ey, ex, ez), (ex, ez, ey), (-ex, ez, ey), (ez, ex, ey), (-ez, ex, ey)]:
        scene.surfaces.append(_random_surface(rng, n, u, v))

    for _ in range(int(rng.integers(2, 7))):
        half = np.array([rng.uniform(0.15, 0.8), rng.uniform(0.15, 0.9), rng.uniform(0.15, 0.8)])
        for _attempt in range(10):
            radius = np.hypot(half[0], half[2])
            centre = np.array([rng.uniform(-room[0] / 2 + radius, room[0] / 2 - radius), half[1],
                               rng.uniform(-room[2] / 2 + radius, room[2] / 2 - radius)])
            if rng.random() < 0.25:  # some boxes float (shelves, tables) to vary the silhouettes
                centre[1] = rng.uniform(half[1], room[1] - half[1])
            if np.hypot(*(centre - cam)[[0, 2]]) > radius + 0.5:
                break
        else:
            continue
        yaw_box = float(rng.uniform(0, np.pi / 2))
        scene.boxes.append(_Box(centre, half, yaw_box))
        c, s = np.cos(yaw_box), np.sin(yaw_box)
        bx, bz = np.array([c, 0.0, -s]), np.array([s, 0.0, c])  # box axes in the world
        colour = rng.uniform(0.1, 0.95, 3)
        for axis, (tu, tv) in zip((bx, ey, bz), ((bz, ey), (bx, bz), (bx, ey))):
            for sign in (1.0, -1.0):
                scene.surfaces.append(_random_surface(rng, sign * axis, tu, tv, colour))

    for _ in range(int(rng.integers(0, 4))):
        r = float(rng.uniform(0.15, 0.6))
        centre = np.array([rng.uniform(-room[0] / 2 + r, room[0] / 2 - r), r, rng.uniform(-room[2] / 2 + r, room[2] / 2 - r)])
        if rng.random() < 0.3:
            centre[1] = rng.uniform(r, room[1] - r)
        if np.linalg.norm(centre - cam) < r + 0.5:
            continue
        scene.spheres.append(_Sphere(centre, r))
        scene.surfaces.append(_random_surface(rng, ey, ex, ey))
    scene.tiles = rng.uniform(0.0, 1.0, (16, 16)).astype(np.float32)
    return scene


def _window(scene: Scene, corners: np.ndarray, height: int, width: int) -> tuple[slice, slice] | None:
    """Pixel window that contains the projection of a convex object with these world corners.

    ``None`` when the object is entirely behind the camera; the full image when it straddles the
    camera plane (projection is unbounded there).
    """
    cam = (corners - scene.cam_pos) @ scene.cam_rot  # world -> camera
    z = cam[:, 2]
    if np.all(z <= 1e-6):
        return None
    if np.any(z <= 1e-3):
        return slice(0, height), slice(0, width)
    fx, fy, cx, cy = scene.intrinsics
    u = fx * cam[:, 0] / z + cx
    v = fy * cam[:, 1] / z + cy
    x0, x1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, width)
    y0, y1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _corner_signs() -> np.ndarray:
    return np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)


def _box_axes(box: _Box) -> np.ndarray:
    """Rows: the box's axes in the world."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def _strip(win: tuple[slice, slice] | None, y0: int, y1: int) -> tuple[slice, slice] | None:
    """The part of an image window inside rows ``[y0, y1)``, in strip coordinates."""
    if win is None or win[0].stop <= y0 or win[0].start >= y1:
        return None
    return slice(max(win[0].start, y0) - y0, min(win[0].stop, y1) - y0), win[1]


def render(scene: Scene, height: int, width: int, strip_rows: int = 32) -> dict[str, np.ndarray]:
    """Ray-cast ``scene``: uint8 RGB image, float32 z-depth and int16 surface ids, each (H, W).

    The image is rendered in strips of ``strip_rows`` rows: the temporaries then stay in the
    CPU cache and below malloc's mmap threshold, which makes rendering about twice as fast.

    Example:
        >>> out = render(sample_scene(np.random.default_rng(0), 48, 64), 48, 64)
        >>> out["image"].shape, out["depth"].dtype
        ((48, 64, 3), dtype('float32'))
    """
    fx, fy, cx, cy = scene.intrinsics
    rot = scene.cam_rot.astype(np.float32)
    xn = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)[None, :]
    yn = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)[:, None]
    o = scene.cam_pos.astype(np.float32)
    box_windows = [_window(scene, b.centre + (_corner_signs() * b.half) @ _box_axes(b), height, width) for b in scene.boxes]
    sphere_windows = [_window(scene, s.centre + _corner_signs() * s.radius, height, width) for s in scene.spheres]
    image = np.empty((height, width, 3), np.uint8)
    depth = np.empty((height, width), np.float32)
    surface = np.empty((height, width), np.int16)
    for y0 in range(0, height, strip_rows):
        y1 = min(y0 + strip_rows, height)
        # World ray directions with camera-frame z = 1, so the ray parameter t *is* the z-depth.
        d = [rot[k, 0] * xn + rot[k, 1] * yn[y0:y1] + rot[k, 2] for k in range(3)]
        dep, surf = depth[y0:y1], surface[y0:y1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            _trace_room(scene, d, o, dep, surf)
            sid = ROOM_SURFACES
            for box, win in zip(scene.boxes, box_windows):
                win = _strip(win, y0, y1)
                if win is not None:
                    _trace_box(scene, box, d, dep, surf, sid, win)
                sid += FACES_PER_BOX
            for sphere, win in zip(scene.spheres, sphere_windows):
                win = _strip(win, y0, y1)
                if win is not None:
                    _trace_sphere(scene, sphere, d, dep, surf, sid, win)
                sid += 1
        image[y0:y1] = _shade(scene, d, o, dep, surf, [_strip(w, y0, y1) for w in sphere_windows])
    if not np.all(np.isfinite(depth)):  # the room is closed: every ray must hit something
        raise DataError("synthetic renderer: a ray escaped the room (internal error)")
    return {"image": image, "depth": depth, "surface": surface}


def _trace_room(scene: Scene, d: list[np.ndarray], o: np.ndarray, depth: np.ndarray, surface: np.ndarray) -> None:
    """Fill ``depth``/``surface`` with the room: the camera is inside an axis-aligned box, so the
    exit distance is the nearest wall. (Arithmetic and copyto instead of np.where: several
    times faster on large float arrays.)"""
    lo = np.array([-scene.room[0] / 2, 0.0, -scene.room[2] / 2], np.float32)
    hi = np.array([scene.room[0] / 2, scene.room[1], scene.room[2] / 2], np.float32)
    depth[...] = np.inf
    surface[...] = FLOOR
    for k, (neg_id, pos_id) in enumerate(((WALL_X0, WALL_X1), (FLOOR, CEILING), (WALL_Z0, WALL_Z1))):
        forward = d[k] > 0
        t_k = ((lo[k] - o[k]) + (hi[k] - lo[k]) * forward) / d[k]
        t_k[~(t_k > 0)] = np.inf  # rays parallel to this pair of walls (d == +-0)
        np.copyto(surface, (neg_id + (pos_id - neg_id) * forward).astype(np.int16), where=t_k < depth)
        np.minimum(depth, t_k, out=depth)


def _trace_box(scene: Scene, box: _Box, d: list[np.ndarray], depth: np.ndarray, surface: np.ndarray,
               sid: int, win: tuple[slice, slice]) -> None:
    """Ray-cast one box (slab method in the box frame) into ``depth``/``surface`` inside ``win``."""
    axes = _box_axes(box)
    ol = (axes @ (scene.cam_pos - box.centre)).astype(np.float32)
    dw = [dk[win] for dk in d]
    dl = [dw[0] * np.float32(axes[0, 0]) + dw[2] * np.float32(axes[0, 2]), dw[1],
          dw[0] * np.float32(axes[2, 0]) + dw[2] * np.float32(axes[2, 2])]
    near = far = near_axis = None
    for k in range(3):
        inv = 1.0 / dl[k]
        t1 = (-box.half[k] - ol[k]) * inv
        t2 = (box.half[k] - ol[k]) * inv
        t_lo, t_hi = np.minimum(t1, t2), np.maximum(t1, t2)
        if near is None:
            near, far, near_axis = t_lo, t_hi, np.zeros(t_lo.shape, np.int16)
        else:
            np.copyto(near_axis, np.int16(k), where=t_lo > near)
            np.maximum(near, t_lo, out=near)
            np.minimum(far, t_hi, out=far)
    sub = depth[win]
    hit = (near <= far) & (near > 0) & (near < sub)
    sub[hit] = near[hit]
    # Face id: the slab entered last. Faces are ordered (+axis, -axis); a ray travelling along
    # +axis enters through the -axis face.
    surface[win][hit] = sid + 2 * near_axis[hit] + (_pick(dl, near_axis, hit) > 0).astype(np.int16)


def _pick(arrays: list[np.ndarray], index: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``arrays[index[p]][p]`` for every ``p`` where ``where`` holds."""
    out = np.empty(int(where.sum()), np.float32)
    idx = index[where]
    for k, arr in enumerate(arrays):
        sel = idx == k
        out[sel] = arr[where][sel]
    return out


def _trace_sphere(scene: Scene, sphere: _Sphere, d: list[np.ndarray], depth: np.ndarray, surface: np.ndarray,
                  sid: int, win: tuple[slice, slice]) -> None:
    """Ray-cast one sphere into ``depth``/``surface`` inside ``win``."""
    oc = (scene.cam_pos - sphere.centre).astype(np.float32)
    dw = [dk[win] for dk in d]
    a = dw[0] * dw[0] + dw[1] * dw[1] + dw[2] * dw[2]
    b = dw[0] * oc[0] + dw[1] * oc[1] + dw[2] * oc[2]  # half of the usual b
    cc = float(oc @ oc - sphere.radius ** 2)
    disc = b * b - a * cc
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    sub = depth[win]
    hit = (disc >= 0) & (t > 0) & (t < sub)
    sub[hit] = t[hit]
    surface[win][hit] = sid


def _shade(scene: Scene, d: list[np.ndarray], o: np.ndarray, depth: np.ndarray, surface: np.ndarray,
           sphere_windows: list[tuple[slice, slice] | None]) -> np.ndarray:
    """Textured Lambertian shading of every hit point: uint8 (H, W, 3) RGB."""
    gamma = 1 / 2.2
    surf = scene.surfaces
    # Per-surface attribute columns: normal (3), u axis / scale (3), v axis / scale (3), pattern
    # weights (4), albedo ** gamma (3). Gathering each column with a 1-D take keeps every array
    # contiguous, which is several times faster than one (H, W, 16) gather and strided slices.
    table = np.array([np.concatenate([s.normal, s.u_axis / s.scale, s.v_axis / s.scale, s.weights,
                                      np.power(s.albedo, gamma)]) for s in surf], np.float32).T.copy()
    idx = surface.astype(np.intp)

    def column(c: int) -> np.ndarray:
        return np.take(table[c], idx)

    p = [o[k] + depth * d[k] for k in range(3)]  # world hit points
    n = [column(k) for k in range(3)]
    first_sphere = ROOM_SURFACES + FACES_PER_BOX * len(scene.boxes)
    for k, (sphere, win) in enumerate(zip(scene.spheres, sphere_windows)):
        if win is None:
            continue
        on = surface[win] == first_sphere + k  # only inside the sphere's window: masks are costly
        for c in range(3):
            n[c][win][on] = (p[c][win][on] - np.float32(sphere.centre[c])) / np.float32(sphere.radius)

    # Procedural texture in world units on each surface's (u, v) axes.
    fu = p[0] * column(3) + p[1] * column(4) + p[2] * column(5)
    fv = p[0] * column(6) + p[1] * column(7) + p[2] * column(8)
    iu, iv = np.floor(fu), np.floor(fv)
    grid = ((fu - iu) < 0.08) | ((fv - iv) < 0.08)
    iu, iv = iu.astype(np.int32), iv.astype(np.int32)
    checker = ((iu + iv) & 1).astype(np.float32)
    stripes = (iu & 1).astype(np.float32)
    tiles = np.take(scene.tiles.ravel(), ((iu & 15) << 4) | (iv & 15))
    pattern = 1.0 - (column(9) * checker + column(10) * stripes + column(11) * grid + column(12) * tiles)

    # Point light with inverse-square-like falloff plus ambient: shading varies with orientation
    # and distance, another depth cue.
    lx, ly, lz = (np.float32(scene.light[k]) - p[k] for k in range(3))
    dist2 = lx * lx + ly * ly + lz * lz
    cos = np.maximum(n[0] * lx + n[1] * ly + n[2] * lz, 0.0) / np.sqrt(np.maximum(dist2, 1e-6))
    shade = np.float32(scene.ambient) + 1.6 * cos / (1.0 + 0.12 * dist2)
    # Display gamma: (albedo * s) ** g == albedo ** g * s ** g, so only the scalar map needs a power.
    level = cv2.pow(np.maximum(pattern * shade, 0.0).astype(np.float32), gamma) * np.float32(255.0)
    channels = [np.minimum(column(c) * level + np.float32(0.5), 255.0).astype(np.uint8) for c in (13, 14, 15)]
    return cv2.merge(channels)


def _split_code(split: str | None) -> int:
    if split in SPLIT_CODES:
        return SPLIT_CODES[split]
    return zlib.crc32(str(split).encode()) + len(SPLIT_CODES)


class SyntheticDataset(DepthDataset):
    """Procedural indoor scenes with exact depth; the embedded default for training and tests.

    Args:
        root: ignored (generated data); accepted for the registry's uniform signature.
        split: ``"train"``, ``"val"``, ``"test"`` or any other name; each split has its own seeds.
        transform: joint augmentation (see :mod:`svde.data.transforms`).
        length: number of samples.
        height, width: rendered resolution (any size; intrinsics follow it).
        seed: base seed; sample ``i`` is a pure function of ``(seed, split, i)``.
        depth_type: ``"absolute"`` (metres), ``"uts"`` (depth times a random positive factor) or
            ``"utss"`` (disparity times a random scale plus a random shift), with factors drawn
            from the sample's own seed (see :func:`svde.data.transforms.to_uts`).

    Example:
        >>> ds = SyntheticDataset(length=2, height=48, width=64, depth_type="utss")
        >>> ds[0]["depth_type"]
        'utss'
    """

    name = "synthetic"

    def __init__(self, root: str | os.PathLike | None = None, split: str | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None, length: int = 1000,
                 height: int = 384, width: int = 512, seed: int = 0,
                 depth_type: str | DepthType = DepthType.ABSOLUTE) -> None:
        depth_type = dense_depth_type(depth_type, "synthetic")
        if int(length) < 1 or int(height) < 2 or int(width) < 2:
            raise DataError(f"synthetic: need length >= 1 and height, width >= 2; got length={length}, "
                            f"height={height}, width={width}")
        self.length, self.height, self.width, self.seed = int(length), int(height), int(width), int(seed)
        self.depth_type = depth_type
        super().__init__(root, split, transform)

    def index(self) -> range:
        return range(self.length)

    def rng(self, i: int) -> np.random.Generator:
        """The random generator of sample ``i`` (independent streams per seed, split and index)."""
        return np.random.default_rng([self.seed, _split_code(self.split), int(i)])

    def scene(self, i: int) -> Scene:
        """The scene of sample ``i`` (camera, room planes, objects)."""
        return sample_scene(self.rng(i), self.height, self.width)

    def render(self, i: int) -> dict[str, Any]:
        """Render sample ``i`` before any transform: image, absolute ``depth`` (metres), ``surface``
        ids (0 floor, 1 ceiling, 2-5 walls x-, x+, z-, z+; then 6 per box, 1 per sphere),
        ``intrinsics`` and the ``scene``.

        Example:
            >>> out = SyntheticDataset(length=1, height=48, width=64).render(0)
            >>> out["scene"].room_planes_camera().shape
            (6, 4)
        """
        return self._render(i)[0]

    def _render(self, i: int) -> tuple[dict[str, Any], np.random.Generator]:
        """:meth:`render` plus the sample's generator, positioned after the scene's draws."""
        if not 0 <= int(i) < self.length:
            raise IndexError(f"synthetic: index {i} out of range for length {self.length}")
        rng = self.rng(i)
        scene = sample_scene(rng, self.height, self.width)
        out = render(scene, self.height, self.width)
        return {**out, "intrinsics": scene.intrinsics.astype(np.float32), "scene": scene}, rng

    def read(self, record: int) -> dict[str, Any]:
        out, rng = self._render(record)
        target, mask = out["depth"], np.ones(out["depth"].shape, bool)
        # Depth-type factors come from the sample's own stream, so the sample stays a pure
        # function of (seed, split, i).
        if self.depth_type is DepthType.UTS:
            target = to_uts(target, mask, float(np.exp(rng.uniform(np.log(0.1), np.log(10.0)))))
        elif self.depth_type is DepthType.UTSS:
            scale = float(np.exp(rng.uniform(np.log(0.1), np.log(10.0))))
            target = to_utss(target, mask, scale, float(rng.uniform(0.0, 1.0)))
        return {"image": out["image"], "target": target, "intrinsics": out["intrinsics"],
                "depth_type": self.depth_type, "file": f"synthetic:{self.split or 'train'}/{self.seed}/{record}"}


def render_stereo(scene: Scene, height: int, width: int, baseline: float) -> dict[str, np.ndarray]:
    """A rectified stereo pair: the right camera is moved ``baseline`` metres along the left one's x axis.

    Returns ``left``, ``right`` (uint8 RGB), the left ``depth``, ``surface`` and its exact
    ``disparity = fx * baseline / depth`` (float32 px; ``x_right = x_left - disparity``, same row).

    Example:
        >>> pair = render_stereo(sample_scene(np.random.default_rng(0), 48, 64), 48, 64, baseline=0.1)
        >>> pair["right"].shape, bool((pair["disparity"] > 0).all())
        ((48, 64, 3), True)
    """
    if not (np.isfinite(baseline) and baseline > 0):
        raise DataError(f"synthetic stereo: baseline must be a positive number of metres, got {baseline!r}")
    left = render(scene, height, width)
    right = render(replace(scene, cam_pos=scene.cam_pos + float(baseline) * scene.cam_rot[:, 0]), height, width)
    disparity = (np.float32(scene.intrinsics[0] * baseline) / left["depth"]).astype(np.float32)
    return {"left": left["image"], "right": right["image"], "depth": left["depth"], "disparity": disparity,
            "surface": left["surface"]}
