"""The one home of file readers and writers.

Readers: RGB images, 16-bit PNG, PFM, raw float32, Sintel ``.dpt`` and ``.cam``, HDF5 /
MATLAB v7.3, KITTI calibration. Writers (predictions): RGB images, ``.npy``, 16-bit PNG with
its JSON scaling sidecar, PLY point clouds; every file is written atomically (:mod:`svde.atomic`).

Every reader returns plain numpy arrays and raises :class:`~svde.data.base.DataError` naming the
file and what was expected when a file is missing, unreadable or not in the expected format.

Example:
    >>> from svde.data.io import read_depth_any
    >>> depth = read_depth_any("scene/depth/0001.png", scale=1000.0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svde.atomic import atomic_path, write_bytes, write_json
from svde.data.base import DataError, scale_depth
from svde.data.png import decode_png

# Sintel's .dpt magic number (stored as a little-endian float32 before width and height).
DPT_TAG = 202021.25
SINTEL_CAM_TAG = DPT_TAG  # Sintel's .cam files open with the same tag


def _exists(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path


def _imread(path: str | os.PathLike) -> np.ndarray:
    """cv2.imread(IMREAD_UNCHANGED) with a DataError instead of ``None`` on failure (greyscale PNGs:
    the same pixels from :func:`svde.data.png.decode_png`, faster)."""
    buf = _read_bytes(path)
    fast = decode_png(buf, rgb=False)
    return fast if fast is not None else _decode(path, buf, cv2.IMREAD_UNCHANGED)


def _read_bytes(path: str | os.PathLike) -> np.ndarray:
    # np.fromfile + imdecode also copes with non-ASCII paths, which cv2.imread does not on every platform.
    return np.fromfile(str(_exists(path)), dtype=np.uint8)


def _decode(path: str | os.PathLike, buf: np.ndarray, flags: int) -> np.ndarray:
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise DataError(f"{path}: cannot decode the image (corrupt or unsupported format)")
    return img


# OpenCV >= 4.10 decodes to RGB itself (EXIF orientation ignored, as with IMREAD_UNCHANGED)
_RGB_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION if hasattr(cv2, "IMREAD_COLOR_RGB") else None


def _decodes_to_rgb(buf: np.ndarray) -> bool:
    """Whether ``buf`` is a JPEG or an 8-bit RGB PNG (IHDR bit depth 8, colour type 2), which
    :data:`_RGB_FLAGS` decodes straight to what :func:`read_image` returns."""
    return _RGB_FLAGS is not None and (buf[:3].tobytes() == b"\xff\xd8\xff" or (
        buf[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and buf[24:26].tobytes() == b"\x08\x02"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image as uint8 (H, W, 3) RGB.

    Grayscale is replicated to three channels, the alpha channel of RGBA/BGRA is dropped,
    16-bit images are scaled to 8 bits (value / 257) and float images in [0, 1] to [0, 255].

    Example:
        >>> rgb = read_image("scene/rgb/0001.jpg")  # doctest: +SKIP
        >>> rgb.dtype, rgb.shape[2]  # doctest: +SKIP
        (dtype('uint8'), 3)
    """
    buf = _read_bytes(path)
    fast = decode_png(buf, rgb=True)  # an 8-bit RGB PNG: the same pixels, faster (svde.data.png)
    if fast is not None:
        return fast
    if _decodes_to_rgb(buf):  # no BGR copy to convert
        return _decode(path, buf, _RGB_FLAGS)
    img = _decode(path, buf, cv2.IMREAD_UNCHANGED)
    if img.dtype == np.uint16:
        # 65535 / 257 = 255 exactly, so the full 16-bit range maps onto the full 8-bit range.
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(np.round(np.nan_to_num(img, nan=0.0) * 255.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported image dtype {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise DataError(f"{path}: unsupported image shape {img.shape}; expected gray, BGR or BGRA")
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def read_gray(path: str | os.PathLike, replicated_channels: bool = False) -> np.ndarray:
    """A single-channel 8- or 16-bit image (mask, relative-disparity map) as stored, (H, W).

    With ``replicated_channels`` a 3-channel image whose three channels are identical (a greyscale
    map saved as RGB) is accepted and read as its first channel; channels that differ are an error
    naming the file, since no single value per pixel could be chosen.

    Example:
        >>> read_gray("mask.png").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    img = _imread(path)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3 and replicated_channels:
        if not (np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2])):
            raise DataError(f"{path}: a 3-channel greyscale map must have three identical channels; "
                            f"they differ at {int(np.count_nonzero(np.ptp(img, axis=2)))} pixel(s)")
        img = np.ascontiguousarray(img[:, :, 0])
    if img.ndim != 2:
        extra = " (or 3 identical channels)" if replicated_channels else ""
        raise DataError(f"{path}: expected a single-channel (greyscale) image{extra}, got shape {img.shape}")
    return img


def read_raw_float32(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """A headerless little-endian float32 raster of ``height`` x ``width``, row-major, as (H, W).

    This is the ETH3D ground-truth depth format (https://www.eth3d.net/documentation, "format of
    multi-view data"; read the same way by prs-eth/Marigold, src/dataset/eth3d_dataset.py):
    metres, ``inf`` where there is no ground truth. Non-finite values are kept (the dataset base
    class masks them).

    Example:
        >>> depth = read_raw_float32("courtyard/ground_truth_depth/dslr_images/DSC_0286.JPG", 4032, 6048)  # doctest: +SKIP
    """
    path = _exists(path)
    size = path.stat().st_size
    if size != 4 * height * width:
        raise DataError(f"{path}: a raw float32 {width}x{height} (WxH) depth map is {4 * height * width} bytes, "
                        f"got {size}")
    return np.fromfile(path, dtype="<f4").reshape(height, width).astype(np.float32)


def read_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a 16-bit single-channel PNG as uint16 (H, W), raw values (no scaling).

    Example:
        >>> raw = read_png16("scene/depth/0001.png")  # doctest: +SKIP
        >>> raw.dtype  # doctest: +SKIP
        dtype('uint16')
    """
    img = _imread(path)
    if img.dtype != np.uint16 or img.ndim != 2:
        chans = 1 if img.ndim == 2 else img.shape[2]
        raise DataError(f"{path}: expected a 16-bit single-channel PNG, got {img.dtype} with {chans} channel(s)")
    return img


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """Read a PFM file as float32 (H, W); colour (``PF``) files keep their first channel.

    The sign of the scale line gives the endianness (negative: little-endian) and rows are stored
    bottom-up, so they are flipped here.

    Example:
        >>> disp = read_pfm("scene/disp/0001.pfm")  # doctest: +SKIP
    """
    path = _exists(path)
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise DataError(f"{path}: bad PFM header {header[:16]!r}; expected 'Pf' or 'PF'")
        channels = 1 if header == b"Pf" else 3
        dims = f.readline().split()
        try:
            width, height = int(dims[0]), int(dims[1])
            scale = float(f.readline().strip())
        except (IndexError, ValueError) as e:
            raise DataError(f"{path}: bad PFM header (width/height/scale lines): {e}") from None
        if width <= 0 or height <= 0 or scale == 0 or len(dims) != 2:
            raise DataError(f"{path}: bad PFM header: size {dims!r}, scale {scale}")
        dtype = "<f4" if scale < 0 else ">f4"
        data = np.frombuffer(f.read(), dtype=dtype)
    expected = width * height * channels
    if data.size < expected:
        raise DataError(f"{path}: PFM data holds {data.size} floats, expected {width}x{height}x{channels} = {expected}")
    data = data[:expected].reshape(height, width, channels)[::-1, :, 0]
    return np.ascontiguousarray(data, dtype=np.float32)


def read_dpt(path: str | os.PathLike) -> np.ndarray:
    """Read a Sintel ``.dpt`` depth file as float32 (H, W), in the file's own units.

    Layout: float32 tag 202021.25, int32 width, int32 height, then width*height float32, all
    little-endian.

    Example:
        >>> depth = read_dpt("sintel/depth/alley_1/frame_0001.dpt")  # doctest: +SKIP
    """
    path = _exists(path)
    raw = path.read_bytes()
    if len(raw) < 12:
        raise DataError(f"{path}: too short for a .dpt header ({len(raw)} bytes)")
    tag = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if tag != np.float32(DPT_TAG):
        raise DataError(f"{path}: wrong .dpt tag {tag}; expected {DPT_TAG}")
    width, height = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2, offset=4))
    if width <= 0 or height <= 0 or width * height > 1 << 28:
        raise DataError(f"{path}: bad .dpt size {width}x{height}")
    expected = 12 + 4 * width * height
    if len(raw) != expected:
        raise DataError(f"{path}: .dpt of {width}x{height} should be {expected} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype="<f4", offset=12).reshape(height, width).astype(np.float32)


def _check_scale(path: Path, scale: float) -> None:
    if not scale or not np.isfinite(scale) or scale <= 0:
        raise DataError(f"{path}: depth scale must be a positive number, got {scale!r}")


def read_depth_scaled(path: str | os.PathLike, scale: float = 1.0) -> tuple[np.ndarray, float | None]:
    """:func:`read_depth_any`'s map with the scaling left for later where that is cheaper:
    ``(raw uint16 values, scale)`` for a 16-bit PNG (:func:`scale_depth` gives the same floats:
    after the augmentation's crop it divides fewer pixels), ``(read_depth_any(path, scale), None)``
    for other formats. Datasets return the pair as ``target`` and ``depth_scale``
    (:class:`svde.data.base.DepthDataset`).

    Example:
        >>> raw, scale = read_depth_scaled("scene/depth/0001.png", scale=1000.0)  # doctest: +SKIP
        >>> raw.dtype, scale  # doctest: +SKIP
        (dtype('uint16'), 1000.0)
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        return read_depth_any(path, scale), None
    _check_scale(path, scale)
    return read_png16(path), float(scale)


def read_depth_any(path: str | os.PathLike, scale: float = 1.0) -> np.ndarray:
    """Read a depth (or disparity) map as float32 (H, W) by its extension, divided by ``scale``.

    ``.png`` (16-bit, e.g. millimetres with ``scale=1000``), ``.pfm``, ``.npy`` (2-D, or
    (H, W, 1)) and ``.dpt``. Non-finite values are kept: the dataset base class masks them.

    Example:
        >>> depth_m = read_depth_any("scene/depth/0001.png", scale=1000.0)  # doctest: +SKIP
    """
    path = Path(path)
    _check_scale(path, scale)
    ext = path.suffix.lower()
    if ext == ".png":
        return scale_depth(read_png16(path), scale)
    elif ext == ".pfm":
        depth = read_pfm(path)
    elif ext == ".dpt":
        depth = read_dpt(path)
    elif ext == ".npy":
        _exists(path)
        try:
            depth = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: cannot read the .npy file: {e}") from None
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[:, :, 0]
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise DataError(f"{path}: expected a numeric (H, W) array, got {depth.dtype} {depth.shape}")
        depth = depth.astype(np.float32)
    else:
        raise DataError(f"{path}: unsupported depth file extension {ext!r}; expected .png (16-bit), .pfm, .npy or .dpt")
    if scale != 1.0:
        depth = depth / np.float32(scale)
    return depth.astype(np.float32, copy=False)


def as_rgb(array: np.ndarray, file: str) -> np.ndarray:
    """An (H, W, 3) array as the sample contract's RGB: uint8 as it is, float as float32 in [0, 1].

    Float images are kept float (never rounded to 8 bits); one whose maximum exceeds 1 is taken to
    be on a 0..255 scale and divided by 255, as the authors' ``normalize_img`` does
    (SamsungLabs/geometry-preserving-de, datasets/validation_datasets.py).

    Example:
        >>> rgb = as_rgb(np.full((1, 1, 3), 127.5), "x.h5")  # a 0..255 float image
        >>> rgb.dtype, float(rgb.max())
        (dtype('float32'), 0.5)
    """
    if array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"{file}: expected an (H, W, 3) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{file}: expected a uint8 or float image, got {array.dtype}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255:
        raise DataError(f"{file}: float image values must be finite and in [0, 1] or [0, 255], "
                        f"got range [{np.nanmin(array)}, {np.nanmax(array)}]")
    image = np.ascontiguousarray(array, dtype=np.float32)
    return image / np.float32(255.0) if image.max() > 1.0 else image


def read_h5(path: str | os.PathLike, key: str, optional: bool = False) -> np.ndarray | None:
    """Read one dataset of an HDF5 file (or MATLAB v7.3 ``.mat``) as a numpy array.

    A missing ``key`` is an error naming the file and what it holds, or ``None`` if ``optional``.

    Example:
        >>> depth = read_h5("megadepth/0001.h5", "depth")  # doctest: +SKIP
    """
    import h5py  # only the HDF5-based loaders need it

    path = _exists(path)
    try:
        with h5py.File(path, "r") as f:
            if key not in f or not isinstance(f[key], h5py.Dataset):
                if optional and key not in f:
                    return None
                raise DataError(f"{path}: no dataset {key!r} in the HDF5 file; it holds {_h5_names(f)}")
            return f[key][()]
    except OSError as e:  # not HDF5, truncated, ...
        raise DataError(f"{path}: cannot read as HDF5 ({e})") from None


def _h5_names(f: Any) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return names[:20]


def read_sintel_cam(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Sintel ``.cam`` file: float32 tag 202021.25, then K (3x3) and [R|t] (3x4) float64.

    Layout as the Sintel SDK's ``cam_read`` (MPI Sintel depth training data, sdk/python/sintel_io.py).

    Example:
        >>> K, Rt = read_sintel_cam("sintel/camdata_left/alley_1/frame_0001.cam")  # doctest: +SKIP
    """
    raw = _exists(path).read_bytes()
    if len(raw) != 4 + 8 * 21:
        raise DataError(f"{path}: a Sintel .cam file is {4 + 8 * 21} bytes, got {len(raw)}")
    tag = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if tag != np.float32(SINTEL_CAM_TAG):
        raise DataError(f"{path}: wrong .cam tag {tag}; expected {SINTEL_CAM_TAG}")
    values = np.frombuffer(raw, dtype="<f8", offset=4)
    return values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy()


def read_kitti_calib(path: str | os.PathLike, camera: str = "02") -> np.ndarray:
    """``[fx, fy, cx, cy]`` of rectified camera ``camera`` from KITTI's ``calib_cam_to_cam.txt``.

    The ``P_rect_0X`` lines hold the 3x4 projection matrix row-major (KITTI raw data devkit, readme.txt).

    Example:
        >>> read_kitti_calib("2011_09_26/calib_cam_to_cam.txt")  # doctest: +SKIP
        array([721.5377, 721.5377, 609.5593, 172.854 ])
    """
    path = Path(path)
    key = f"P_rect_{camera}:"
    for line in path.read_text().splitlines():
        if line.startswith(key):
            try:
                p = np.array([float(v) for v in line[len(key):].split()]).reshape(3, 4)
            except ValueError:
                break
            return np.array([p[0, 0], p[1, 1], p[0, 2], p[1, 2]])
    raise DataError(f"{path}: no valid '{key}' line (3x4 projection matrix)")


# ---- writers (predictions and point clouds); every file is written atomically -------------------
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
        raise DataError(f"{path}: expected a finite (H, W) array, got shape {values.shape}")
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


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None,
              binary: bool = True, faces: np.ndarray | None = None) -> Path:
    """Write a point cloud (or, with ``faces``, a triangle mesh) as PLY, atomically; returns ``path``.

    Format: "PLY - Polygon File Format" (Greg Turk; paulbourke.net/dataformats/ply/). The
    ASCII header declares ``format binary_little_endian 1.0`` (or ``ascii 1.0``), ``element
    vertex N`` with ``property float x/y/z`` (and ``property uchar red/green/blue`` with
    colours) and, for a mesh, ``element face M`` with ``property list uchar int
    vertex_indices``; each header line ends with ``\n`` and the last is ``end_header``. A
    binary body is N vertex records (3 little-endian float32, then 3 uint8) followed by M face
    records (uint8 count 3, then 3 little-endian int32). ``vertex_indices`` is the name of the
    spec's text and reference library (ply.h / plytest.c); MeshLab, Open3D and trimesh read it.

    Example:
        >>> write_ply("cloud.ply", np.zeros((4, 3), np.float32), np.zeros((4, 3), np.uint8))  # doctest: +SKIP
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
        raise ValueError(f"points must be a finite (N, 3) array, got shape {points.shape}")
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != points.shape or colors.dtype != np.uint8:
            raise ValueError(f"colors must be uint8 {points.shape} like the points, got {colors.dtype} {colors.shape}")
    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(f"faces must be an integer (M, 3) array, got {faces.dtype} {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= len(points)):
            raise ValueError(f"face indices must be in [0, {len(points)}), got {faces.min()}..{faces.max()}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue") if colors is not None else ()):
        vertices[channel] = colors[:, i]
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by svde",
              f"element vertex {len(points)}", "property float x", "property float y", "property float z"]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(vertices.tobytes())
        else:
            np.savetxt(f, vertices.tolist(), fmt="%.6g %.6g %.6g" + (" %d %d %d" if colors is not None else ""))
        if faces is not None and binary:
            records = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
            records["n"], records["idx"] = 3, faces
            f.write(records.tobytes())
        elif faces is not None:
            np.savetxt(f, np.column_stack([np.full(len(faces), 3), faces]), fmt="%d")
    return Path(path)


def write_mesh_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
                   colors: np.ndarray | None = None) -> Path:
    """A triangle mesh (e.g. :func:`svde.geometry.depth_to_mesh`) as binary PLY: :func:`write_ply` with faces."""
    return write_ply(path, vertices, colors, binary=True, faces=faces)
