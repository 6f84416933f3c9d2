"""Data core: file readers, synthetic scenes, augmentation, depth-type conversion, mixing,
collate and the generic folder datasets."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from svde.data import (
    DataError,
    MixedDataset,
    MixedSampler,
    RGBDFolderDataset,
    StereoFolderDataset,
    SyntheticDataset,
    ToUTS,
    ToUTSS,
    build_dataset,
    build_train_transform,
    collate,
    to_uts,
    to_utss,
)
from svde.data.base import IMAGENET_MEAN, IMAGENET_STD, DepthDataset, normalize_image
from svde.data.io import read_depth_any, read_dpt, read_gray, read_image, read_pfm, read_png16, read_raw_float32
from svde.data.synthetic import FACES_PER_BOX, FLOOR, ROOM_SURFACES, _box_axes
from svde.data.transforms import Compose, pixel_affine, transform_intrinsics, transform_pairs


# ---- helpers ---------------------------------------------------------------------------------
def write_pfm(path: Path, data: np.ndarray, little_endian: bool = True) -> None:
    """PFM writer used only to produce test inputs (rows stored bottom-up)."""
    h, w = data.shape[:2]
    header = b"PF\n" if data.ndim == 3 else b"Pf\n"
    scale = -1.0 if little_endian else 1.0
    body = np.ascontiguousarray(data[::-1]).astype("<f4" if little_endian else ">f4").tobytes()
    path.write_bytes(header + f"{w} {h}\n{scale}\n".encode() + body)


def write_dpt(path: Path, data: np.ndarray, tag: float = 202021.25) -> None:
    h, w = data.shape
    path.write_bytes(np.float32(tag).astype("<f4").tobytes() + np.array([w, h], "<i4").tobytes()
                     + data.astype("<f4").tobytes())


def backproject(depth: np.ndarray, intrinsics, where: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    v, u = np.nonzero(where)
    z = depth[v, u].astype(np.float64)
    return np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=1)


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit normal n and offset d with n . X + d = 0 (least squares)."""
    centre = points.mean(0)
    n = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    return n, -float(n @ centre)


def coordinate_image(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image and a depth map that both encode each pixel's own (x, y)."""
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x & 255, y & 255, ((x >> 8) << 4) | (y >> 8)], axis=-1).astype(np.uint8)
    depth = (1 + y * w + x).astype(np.float32)
    return image, depth


def decode_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, g, b = (image[..., k].astype(np.int64) for k in range(3))
    return r | ((b >> 4) << 8), g | ((b & 15) << 8)


# ---- io --------------------------------------------------------------------------------------
def test_read_image_converts_gray_rgba_and_16bit_to_rgb(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert np.array_equal(read_image(tmp_path / "g.png"), np.repeat(gray[..., None], 3, axis=2))

    bgra = np.zeros((3, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 7  # B, G, R, A
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    rgb = read_image(tmp_path / "a.png")
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [30, 20, 10]

    bgr16 = np.zeros((2, 3, 3), np.uint16)
    bgr16[..., 2] = 65535  # red
    bgr16[..., 1] = 257 * 100
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    assert read_image(tmp_path / "c16.png")[0, 0].tolist() == [255, 100, 0]


def test_read_image_decodes_rgb_pngs_and_jpegs_straight_to_rgb(tmp_path):
    """8-bit RGB PNGs and JPEGs are decoded to RGB by OpenCV itself (no BGR copy to convert):
    the same pixels as decoding as stored and converting, EXIF orientation ignored alike."""
    from PIL import Image

    from svde.data.io import _decodes_to_rgb, _read_bytes

    rng = np.random.default_rng(0)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (20, 30, 3)).astype(np.uint8), (3, 3), 0)
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    cv2.imwrite(str(tmp_path / "c.jpg"), bgr)
    cv2.imwrite(str(tmp_path / "g.jpg"), bgr[..., 0])
    for name in ("c.png", "c.jpg", "g.jpg"):
        stored = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        expected = np.repeat(stored[..., None], 3, axis=2) if stored.ndim == 2 else stored[..., ::-1]
        assert np.array_equal(read_image(tmp_path / name), expected), name
    assert _decodes_to_rgb(_read_bytes(tmp_path / "c.png")) == hasattr(cv2, "IMREAD_COLOR_RGB")
    cv2.imwrite(str(tmp_path / "g.png"), bgr[..., 0])
    assert not _decodes_to_rgb(_read_bytes(tmp_path / "g.png"))  # grey PNG: decoded as stored
    # a JPEG whose EXIF says "rotate 90": read as stored, like the depth map saved beside it
    exif = Image.Exif()
    exif[274] = 6  # Orientation
    Image.fromarray(bgr[..., ::-1]).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert cv2.imread(str(tmp_path / "r.jpg")).shape == (30, 20, 3)  # OpenCV's default would rotate it
    assert read_image(tmp_path / "r.jpg").shape == (20, 30, 3)


def test_read_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_read_png16_exact_and_rejects_8bit(tmp_path):
    raw = np.array([[0, 1, 65535], [1234, 40000, 7]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    out = read_png16(tmp_path / "d.png")
    assert out.dtype == np.uint16 and np.array_equal(out, raw)
    cv2.imwrite(str(tmp_path / "d8.png"), raw.astype(np.uint8))
    with pytest.raises(DataError, match="d8.png.*16-bit"):
        read_png16(tmp_path / "d8.png")


def test_read_gray_single_or_identical_channels(tmp_path):
    gray = np.array([[0, 7, 255], [3, 128, 9]], np.uint8)
    cv2.imwrite(str(tmp_path / "g1.png"), gray)
    cv2.imwrite(str(tmp_path / "g3.png"), np.repeat(gray[:, :, None], 3, 2))
    np.testing.assert_array_equal(read_gray(tmp_path / "g1.png"), gray)
    np.testing.assert_array_equal(read_gray(tmp_path / "g3.png", replicated_channels=True), gray)
    with pytest.raises(DataError, match=r"g3\.png: expected a single-channel"):
        read_gray(tmp_path / "g3.png")
    mixed = np.repeat(gray[:, :, None], 3, 2)
    mixed[1, 2, 0] = 10
    cv2.imwrite(str(tmp_path / "gx.png"), mixed)
    with pytest.raises(DataError, match=r"gx\.png: .*identical channels; they differ at 1 pixel"):
        read_gray(tmp_path / "gx.png", replicated_channels=True)


def test_read_raw_float32_row_major_and_size_check(tmp_path):
    data = np.array([[1.5, np.inf, 3.0], [0.25, 5.0, -1.0]], "<f4")
    (tmp_path / "d.JPG").write_bytes(data.tobytes())
    out = read_raw_float32(tmp_path / "d.JPG", 2, 3)
    assert out.dtype == np.float32 and np.array_equal(out, data)
    with pytest.raises(DataError, match=r"d\.JPG: a raw float32 3x3 \(WxH\) depth map is 36 bytes, got 24"):
        read_raw_float32(tmp_path / "d.JPG", 3, 3)


def test_normalize_image_float_is_used_unrounded_and_matches_uint8():
    rgb8 = np.array([[[0, 128, 255], [10, 20, 30]]], np.uint8)
    np.testing.assert_allclose(normalize_image(rgb8).numpy(), normalize_image(rgb8 / np.float32(255.0)).numpy(),
                               rtol=0, atol=1e-6)
    unit = np.array([[[0.1234567, 0.5, 0.9999]]], np.float32)
    expected = ((unit - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(normalize_image(unit).numpy(), expected, rtol=0, atol=1e-6)


class _OneImage(DepthDataset):
    name = "one"

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        super().__init__(None)

    def index(self) -> list[int]:
        return [0]

    def read(self, record: int) -> dict:
        return {"image": self.image, "target": np.ones(self.image.shape[:2], np.float32), "file": "frame.h5"}


def test_sample_contract_accepts_float_rgb_in_unit_range_only():
    ok = np.full((2, 3, 3), 0.5, np.float32)
    assert _OneImage(ok)[0]["image"].shape == (3, 2, 3)
    for bad, message in ((np.full((2, 3, 3), 1.5, np.float32), r"frame\.h5: a float image .*\[0, 1\]"),
                         (np.full((2, 3, 3), np.nan, np.float32), r"frame\.h5: a float image"),
                         (np.zeros((2, 3, 3), np.int32), r"frame\.h5: .*uint8, or float32")):
        with pytest.raises(DataError, match=message):
            _OneImage(bad)[0]


@pytest.mark.parametrize("little", [True, False])
def test_read_pfm_endianness_and_row_order(tmp_path, little):
    data = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1.0
    write_pfm(tmp_path / "x.pfm", data, little_endian=little)
    out = read_pfm(tmp_path / "x.pfm")
    assert out.dtype == np.float32 and np.array_equal(out, data)  # first row stays first


def test_read_pfm_colour_and_bad_header(tmp_path):
    data = np.random.default_rng(0).random((2, 3, 3)).astype(np.float32)
    write_pfm(tmp_path / "c.pfm", data)
    assert np.array_equal(read_pfm(tmp_path / "c.pfm"), data[..., 0])
    (tmp_path / "bad.pfm").write_bytes(b"P6\n3 2\n-1.0\n" + bytes(24))
    with pytest.raises(DataError, match="bad.pfm.*header"):
        read_pfm(tmp_path / "bad.pfm")
    (tmp_path / "short.pfm").write_bytes(b"Pf\n3 2\n-1.0\n" + bytes(8))
    with pytest.raises(DataError, match="short.pfm"):
        read_pfm(tmp_path / "short.pfm")


def test_read_dpt_values_tag_and_size(tmp_path):
    data = np.array([[1.5, 2.0, 3.25], [0.0, 100.0, 7.0]], np.float32)
    write_dpt(tmp_path / "a.dpt", data)
    assert np.array_equal(read_dpt(tmp_path / "a.dpt"), data)
    write_dpt(tmp_path / "tag.dpt", data, tag=1.0)
    with pytest.raises(DataError, match="tag.dpt.*tag"):
        read_dpt(tmp_path / "tag.dpt")
    (tmp_path / "cut.dpt").write_bytes((tmp_path / "a.dpt").read_bytes()[:-4])
    with pytest.raises(DataError, match="cut.dpt.*bytes"):
        read_dpt(tmp_path / "cut.dpt")


def test_read_depth_any_units(tmp_path):
    mm = np.array([[1234, 0], [65535, 500]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), mm)
    metres = read_depth_any(tmp_path / "d.png", scale=1000.0)
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, mm / 1000.0, rtol=1e-7)
    arr = np.array([[1.0, np.nan], [np.inf, -2.0]], np.float32)
    np.save(tmp_path / "d.npy", arr)
    np.testing.assert_array_equal(read_depth_any(tmp_path / "d.npy"), arr)
    write_pfm(tmp_path / "d.pfm", np.full((2, 2), 8.0, np.float32))
    assert np.all(read_depth_any(tmp_path / "d.pfm", scale=4.0) == 2.0)
    (tmp_path / "d.exr").write_bytes(b"")
    with pytest.raises(DataError, match="d.exr.*extension"):
        read_depth_any(tmp_path / "d.exr")
    with pytest.raises(DataError, match="scale"):
        read_depth_any(tmp_path / "d.png", scale=0)


# ---- synthetic -------------------------------------------------------------------------------
def test_synthetic_is_deterministic_by_seed_split_index():
    a = SyntheticDataset(split="train", length=3, height=24, width=32, seed=5)
    b = SyntheticDataset(split="train", length=3, height=24, width=32, seed=5)
    assert np.array_equal(a.read(1)["image"], b.read(1)["image"])
    assert np.array_equal(a.read(1)["target"], b.read(1)["target"])
    assert not np.array_equal(a.read(1)["target"], a.read(2)["target"])
    val = SyntheticDataset(split="val", length=3, height=24, width=32, seed=5)
    assert not np.array_equal(a.read(1)["target"], val.read(1)["target"])
    other = SyntheticDataset(split="train", length=3, height=24, width=32, seed=6)
    assert not np.array_equal(a.read(1)["target"], other.read(1)["target"])


def test_synthetic_sample_contract():
    s = SyntheticDataset(length=2, height=40, width=56)[1]
    assert s["image"].shape == (3, 40, 56) and s["image"].dtype == torch.float32
    assert s["target"].shape == (1, 40, 56) and s["mask"].dtype == torch.bool
    assert s["mask"].all() and torch.isfinite(s["target"]).all()
    assert 0.3 < float(s["target"].min()) and float(s["target"].max()) < 15.0  # indoor metres
    assert s["depth_type"] == "absolute" and s["meta"]["intrinsics"].shape == (4,)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_synthetic_depth_is_geometrically_exact(index):
    """Back-projected room pixels lie on the known room planes; box pixels on their box faces."""
    ds = SyntheticDataset(split="test", length=4, height=60, width=80, seed=1)
    out = ds.render(index)
    depth, surface, k, scene = out["depth"], out["surface"], out["intrinsics"], out["scene"]
    planes = scene.room_planes_camera()
    checked = 0
    for sid in range(ROOM_SURFACES):
        on = surface == sid
        if on.sum() < 3:
            continue
        pts = backproject(depth, k, on)
        residual = pts @ planes[sid, :3] + planes[sid, 3]
        assert np.abs(residual).max() < 1e-4 * pts[:, 2].max(), f"surface {sid}"
        checked += 1
    assert checked >= 2
    # Boxes: every pixel labelled with a box face lies on that face, in the box's own frame.
    world = backproject(depth, k, np.ones_like(depth, bool)) @ scene.cam_rot.T + scene.cam_pos
    world = world.reshape(*depth.shape, 3)
    for b, box in enumerate(scene.boxes):
        first = ROOM_SURFACES + FACES_PER_BOX * b
        for face in range(FACES_PER_BOX):
            on = surface == first + face
            if not on.any():
                continue
            local = (world[on] - box.centre) @ _box_axes(box).T
            axis, sign = face // 2, 1.0 if face % 2 == 0 else -1.0
            np.testing.assert_allclose(local[:, axis], sign * box.half[axis], atol=2e-4 * depth.max())
            assert np.all(np.abs(local) <= box.half + 1e-3)
    first_sphere = ROOM_SURFACES + FACES_PER_BOX * len(scene.boxes)
    for j, sphere in enumerate(scene.spheres):
        on = surface == first_sphere + j
        if on.any():
            np.testing.assert_allclose(np.linalg.norm(world[on] - sphere.centre, axis=1), sphere.radius, atol=1e-3)


def test_synthetic_intrinsics_follow_resolution():
    small = SyntheticDataset(length=1, height=30, width=40).render(0)
    large = SyntheticDataset(length=1, height=60, width=80).render(0)
    fx_s, fy_s, cx_s, cy_s = small["intrinsics"]
    fx_l, fy_l, cx_l, cy_l = large["intrinsics"]
    # The same scene seen by the same camera: only the pixel grid changes (pixel centres at
    # integers, so the principal point scales about -0.5).
    assert np.array_equal(small["scene"].cam_pos, large["scene"].cam_pos)
    assert fx_s == fy_s and math.isclose(fx_l / fx_s, 2.0, rel_tol=1e-6)
    assert math.isclose((cx_l + 0.5) / (cx_s + 0.5), 2.0, rel_tol=1e-6)
    assert math.isclose((cy_l + 0.5) / (cy_s + 0.5), 2.0, rel_tol=1e-6)


def test_synthetic_uts_and_utss_depth_types():
    absolute = SyntheticDataset(length=1, height=24, width=32).read(0)["target"]
    uts = SyntheticDataset(length=1, height=24, width=32, depth_type="uts")[0]
    assert uts["depth_type"] == "uts"
    ratio = uts["target"][0].numpy() / absolute
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    utss = SyntheticDataset(length=1, height=24, width=32, depth_type="utss")[0]
    assert utss["depth_type"] == "utss" and utss["mask"].all()
    # utss target is an affine function of 1 / depth with positive scale and non-negative shift.
    a = np.stack([1.0 / absolute.ravel(), np.ones(absolute.size)], 1)
    (scale, shift), *_ = np.linalg.lstsq(a, utss["target"][0].numpy().ravel().astype(np.float64), rcond=None)
    np.testing.assert_allclose(a @ [scale, shift], utss["target"][0].numpy().ravel(), rtol=1e-4)
    assert scale > 0 and shift >= -1e-6
    with pytest.raises(DataError, match="depth_type"):
        SyntheticDataset(length=1, depth_type="ordinal")


# ---- depth-type conversion -------------------------------------------------------------------
def test_to_uts_to_utss_values():
    depth = np.array([1.0, 2.0, 4.0, 0.0], np.float32)
    mask = np.array([True, True, True, False])
    np.testing.assert_array_equal(to_uts(depth, mask, 3.0), [3.0, 6.0, 12.0, 0.0])
    # disparity 2/d = [2, 1, .5], median 1, shift .25 -> + .25
    np.testing.assert_allclose(to_utss(depth, mask, 2.0, 0.25), [2.25, 1.25, 0.75, 0.0])
    with pytest.raises(DataError):
        to_uts(depth, mask, -1.0)
    with pytest.raises(DataError):
        to_utss(depth, mask, 1.0, -0.5)


def test_to_uts_transforms_are_random_consistent_and_check_types():
    raw = {"target": np.array([[1.0, 2.0, 0.0]], np.float32), "mask": np.array([[True, True, False]]),
           "depth_type": "absolute", "file": "f"}
    torch.manual_seed(0)
    outs = [ToUTS(scale_range=(0.1, 10))(raw) for _ in range(20)]
    scales = [o["target"][0, 0] for o in outs]
    assert all(o["depth_type"] == "uts" and o["target"][0, 1] == pytest.approx(2 * o["target"][0, 0]) for o in outs)
    assert all(0.1 <= s <= 10 for s in scales) and len(set(scales)) == 20 and outs[0]["target"][0, 2] == 0
    torch.manual_seed(0)
    assert ToUTS(scale_range=(0.1, 10))(raw)["target"][0, 0] == scales[0]  # reproducible
    utss = ToUTSS(scale_range=(1, 1), shift_range=(0.5, 0.5))(raw)
    # disparity [1, .5], median .75 -> + .375
    np.testing.assert_allclose(utss["target"], [[1.375, 0.875, 0.0]])
    assert utss["depth_type"] == "utss"
    with pytest.raises(DataError, match="f: ToUTS"):
        ToUTS()(utss)
    with pytest.raises(ValueError, match="shift_range"):
        ToUTSS(shift_range=(-1, 1))
    with pytest.raises(ValueError, match="scale_range"):
        ToUTS(scale_range=(0, 1))


# ---- joint augmentation ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_image_and_depth_aligned(seed):
    h, w = 90, 130
    image, depth = coordinate_image(h, w)
    transform = build_train_transform(48, 64, scale_range=(0.4, 1.3), rotate_limit=30, rotate_p=0.7,
                                      flip_p=0.5, color_p=0.0, interpolation=cv2.INTER_NEAREST)
    torch.manual_seed(seed)
    out = transform({"image": image, "target": depth, "mask": np.ones((h, w), bool), "depth_type": "absolute"})
    img, tgt, mask = out["image"], out["target"], out["mask"]
    assert img.shape == (48, 64, 3) and tgt.shape == (48, 64) and mask.dtype == bool
    assert mask.any()
    x_img, y_img = decode_image(img)
    src = tgt.astype(np.int64) - 1
    x_dep, y_dep = src % w, src // w
    assert np.array_equal(x_img[mask], x_dep[mask]) and np.array_equal(y_img[mask], y_dep[mask])
    assert np.all(tgt[~mask] == 0)
    # Invalid pixels are the padded / rotated-in border: black in the image too.
    assert np.all(img[~mask] == 0)


@pytest.mark.parametrize("seed", [0, 1, 2, 31])
def test_augmentation_affine_matches_pixels(seed):
    """The tracked pixel map (used for intrinsics) sends every source pixel where it went: one
    nearest-neighbour resampling moves a pixel by at most half a pixel diagonal of the source grid."""
    h, w = 70, 100
    image, depth = coordinate_image(h, w)
    transform = build_train_transform(48, 64, scale_range=(0.5, 1.5), rotate_limit=20, rotate_p=1.0, flip_p=0.5,
                                      color_p=0.0)
    torch.manual_seed(seed)
    affine = transform.plan((h, w)).affine
    torch.manual_seed(seed)
    out = transform({"image": image, "target": depth, "mask": np.ones((h, w), bool), "depth_type": "absolute"})
    v, u = np.nonzero(out["mask"])
    src = out["target"][v, u].astype(np.int64) - 1
    mapped = affine @ np.stack([src % w, src // w, np.ones_like(src)]).astype(np.float64)
    scale = math.sqrt(abs(np.linalg.det(affine[:2, :2])))
    err = np.hypot(mapped[0] - u, mapped[1] - v)
    assert len(v) > 100 and err.max() <= 0.5 * math.sqrt(2) * scale + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2, 31])
def test_legacy_augmentation_affine_matches_pixels(seed):
    """The same for the albumentations pipeline (``legacy=True``) and its tracked pixel map."""
    h, w = 70, 100
    image, depth = coordinate_image(h, w)
    transform = build_train_transform(48, 64, scale_range=(0.5, 1.5), rotate_limit=20, rotate_p=1.0, flip_p=0.5,
                                      color_p=0.0, legacy=True)
    raw = {"image": image, "target": depth, "mask": np.ones((h, w), bool), "depth_type": "absolute"}
    # The compose is called directly here (not through the transform, which seeds it from torch),
    # so seed albumentations' own generator: the test is deterministic.
    transform.compose.set_random_seed(seed)
    compose_out = transform.compose(image=image, depth=depth, mask=np.ones((h, w), np.uint8))
    applied = compose_out["applied_transforms"]
    affine = pixel_affine(applied, compose_out["image"].shape)
    v, u = np.nonzero(compose_out["mask"] > 0)
    src = compose_out["depth"][v, u].astype(np.int64) - 1
    mapped = affine @ np.stack([src % w, src // w, np.ones_like(src)]).astype(np.float64)
    # Each of the three nearest-neighbour resamplings (two resizes, rotation) moves a pixel by at
    # most half a pixel diagonal of its own grid; the first one's error is then magnified by the
    # random rescale after it. A wrong convention (e.g. corner- vs centre-aligned resize) would
    # show as a systematic offset, so the mean error must be ~0; under a strong downscale only
    # a few source rows/columns survive and their rounding no longer averages out as well.
    scale = math.sqrt(abs(np.linalg.det(affine[:2, :2])))
    rescale = next(params["scale"] for name, params in applied if name == "RandomScale")
    err = np.hypot(mapped[0] - u, mapped[1] - v)
    assert err.max() <= 0.5 * math.sqrt(2) * (2 + max(rescale, 1)) + 1e-6
    tolerance = 0.1 / min(scale, 1)
    assert abs((mapped[0] - u).mean()) < tolerance and abs((mapped[1] - v).mean()) < tolerance
    assert raw["image"] is image  # the transform does not modify its input


def test_augmented_synthetic_geometry_stays_metric():
    """After resize, crop, rotation and flip, back-projecting with the updated intrinsics still
    gives a floor at the camera height and walls perpendicular to it (errors in fx, cx, ... would
    shear the point cloud and change both)."""
    ds = SyntheticDataset(split="test", length=6, height=120, width=160, seed=3)
    transform = build_train_transform(96, 128, scale_range=(0.9, 1.2), rotate_limit=15, rotate_p=1.0,
                                      flip_p=0.5, color_p=0.0)
    checked = 0
    for i in range(6):
        out = ds.render(i)
        surface, planes = out["surface"], out["scene"].room_planes_camera()
        walls = [s for s in range(2, ROOM_SURFACES) if (surface == s).sum() > 400]
        if (surface == FLOOR).sum() < 400 or not walls:
            continue
        fits = {}
        for sid in (FLOOR, walls[0]):
            torch.manual_seed(100 + i)  # same augmentation for both surfaces
            aug = transform({"image": out["image"], "target": out["depth"], "mask": surface == sid,
                             "intrinsics": out["intrinsics"], "depth_type": "absolute"})
            assert aug["intrinsics"] is not None
            fits[sid] = fit_plane(backproject(aug["target"], aug["intrinsics"], aug["mask"]))
        (n_floor, d_floor), (n_wall, d_wall) = fits[FLOOR], fits[walls[0]]
        assert abs(n_floor @ n_wall) < 0.02  # 90 degrees within ~1 degree
        assert abs(abs(d_floor) - abs(planes[FLOOR, 3])) < 0.02 * abs(planes[FLOOR, 3])
        assert abs(abs(d_wall) - abs(planes[walls[0], 3])) < 0.02 * abs(planes[walls[0], 3])
        checked += 1
    assert checked >= 2


def test_transform_intrinsics_rules():
    k = np.array([100.0, 100.0, 31.5, 23.5])
    flip = np.array([[-1.0, 0, 63], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(transform_intrinsics(k, flip, (48, 64)), [100, 100, 31.5, 23.5])
    shifted = np.array([100.0, 100.0, 20.0, 23.5])
    np.testing.assert_allclose(transform_intrinsics(shifted, flip, (48, 64)), [100, 100, 43.0, 23.5])
    rot = cv2.getRotationMatrix2D((31.5, 23.5), 20, 1.0)
    rot3 = np.vstack([rot, [0, 0, 1]])
    kept = transform_intrinsics(k, rot3, (48, 64))  # square pixels: a camera roll
    np.testing.assert_allclose(kept, [100, 100, 31.5, 23.5], atol=1e-4)
    assert transform_intrinsics(np.array([100.0, 150.0, 31.5, 23.5]), rot3, (48, 64)) is None


def test_transform_pairs_follow_pixels():
    h, w = 40, 70  # height already fits the crop: no resampling, only crop and flip
    image, depth = coordinate_image(h, w)
    rng = np.random.default_rng(0)
    pairs = np.concatenate([rng.integers(0, h, (50, 1)), rng.integers(0, w, (50, 1)),
                            rng.integers(0, h, (50, 1)), rng.integers(0, w, (50, 1)),
                            rng.choice([-1, 1], (50, 1))], 1).astype(np.float32)
    transform = build_train_transform(40, 56, scale_range=(1.0, 1.0), rotate_limit=0, flip_p=1.0, color_p=0.0,
                                      interpolation=cv2.INTER_NEAREST)
    torch.manual_seed(0)
    out = transform({"image": image, "target": np.zeros((h, w), np.float32), "mask": np.zeros((h, w), bool),
                     "pairs": pairs, "depth_type": "ordinal"})
    moved = out["pairs"]
    assert 0 < len(moved) < len(pairs)  # the crop drops some pairs
    x_img, y_img = decode_image(out["image"])
    for ya, xa, yb, xb, rel in moved.astype(int):
        match = np.nonzero((pairs[:, 4] == rel) & (pairs[:, 0] == y_img[ya, xa]) & (pairs[:, 1] == x_img[ya, xa])
                           & (pairs[:, 2] == y_img[yb, xb]) & (pairs[:, 3] == x_img[yb, xb]))[0]
        assert len(match) >= 1
    assert transform_pairs(np.zeros((0, 5), np.float32), np.eye(3), (4, 4)).shape == (0, 5)


def test_training_pipeline_through_dataset():
    transform = Compose([build_train_transform(32, 48), ToUTSS()])
    ds = SyntheticDataset(length=3, height=40, width=64, transform=transform)
    torch.manual_seed(0)
    for i in range(3):
        s = ds[i]
        assert s["image"].shape == (3, 32, 48) and s["target"].shape == (1, 32, 48)
        assert s["depth_type"] == "utss"
        assert torch.isfinite(s["target"]).all() and torch.isfinite(s["image"]).all()
        assert (s["target"][s["mask"]] > 0).all() and (s["target"][~s["mask"]] == 0).all()


# ---- mixing ----------------------------------------------------------------------------------
class _Indexed(torch.utils.data.Dataset):
    """A tiny dataset whose samples name themselves; optionally some indices are corrupt."""

    def __init__(self, tag: int, n: int, bad: tuple[int, ...] = ()) -> None:
        self.tag, self.n, self.bad = tag, n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i in self.bad:
            raise DataError(f"sample {i} of {self.tag} is corrupt")
        return (self.tag, i)


def test_mixing_proportions_and_determinism():
    sets = [_Indexed(0, 7), _Indexed(1, 1000), _Indexed(2, 50)]
    mixed = MixedDataset(sets, weights=[5, 3, 2], epoch_length=1000, seed=3)
    plan = mixed.plan(0)
    counts = np.bincount([k for k, _ in plan], minlength=3)
    assert counts.tolist() == [500, 300, 200]
    assert plan == MixedDataset(sets, weights=[5, 3, 2], epoch_length=1000, seed=3).plan(0)
    assert plan != mixed.plan(1) and plan != MixedDataset(sets, [5, 3, 2], 1000, seed=4).plan(0)
    # Small datasets repeat evenly; large ones are not repeated within an epoch.
    small = np.bincount([i for k, i in plan if k == 0], minlength=7)
    assert small.max() - small.min() <= 1
    large = [i for k, i in plan if k == 1]
    assert len(set(large)) == len(large)
    # Shuffled: any window of the epoch has about the right proportions (binomial, 5 sigma).
    first = np.bincount([k for k, _ in plan[:400]], minlength=3)
    for k, p in enumerate([0.5, 0.3, 0.2]):
        assert abs(first[k] - 400 * p) < 5 * math.sqrt(400 * p * (1 - p))
    # Over many epochs every dataset keeps its exact share and indices stay in range.
    totals = np.zeros(3)
    for e in range(5):
        totals += np.bincount([k for k, _ in mixed.plan(e)], minlength=3)
        assert all(0 <= i < len(sets[k]) for k, i in mixed.plan(e))
    np.testing.assert_array_equal(totals, [2500, 1500, 1000])


def test_mixing_uneven_weights_largest_remainder():
    mixed = MixedDataset([_Indexed(0, 3), _Indexed(1, 3), _Indexed(2, 3)], weights=[1, 1, 1], epoch_length=10)
    assert mixed.quotas().tolist() == [4, 3, 3]
    assert MixedDataset([_Indexed(0, 3), _Indexed(1, 3)], weights=[0, 1], epoch_length=5).quotas().tolist() == [0, 5]
    with pytest.raises(ValueError, match="weights"):
        MixedDataset([_Indexed(0, 3)], weights=[0], epoch_length=5)
    with pytest.raises(ValueError, match="2 datasets but 1 weights"):
        MixedDataset([_Indexed(0, 3), _Indexed(1, 3)], weights=[1], epoch_length=5)


def test_mixing_ranks_get_disjoint_shares():
    mixed = MixedDataset([_Indexed(0, 10), _Indexed(1, 10)], weights=[1, 1], epoch_length=101, seed=0)
    world = 4
    seen = []
    for rank in range(world):
        sampler = MixedSampler(mixed, rank=rank, world_size=world)
        sampler.set_epoch(2)
        keys = list(sampler)
        assert len(keys) == len(sampler) == 25
        seen += [pos for _, pos in keys]
        assert all(epoch == 2 for epoch, _ in keys)
        assert [mixed[key] for key in keys] == [mixed.plan(2)[pos] for _, pos in keys]
    assert len(seen) == len(set(seen)) == 100
    # Integer indices use set_epoch; keys carry their own epoch.
    mixed.set_epoch(2)
    assert mixed[5] == mixed[(2, 5)] and mixed[(3, 5)] == mixed.plan(3)[5]


def test_mixing_skip_corrupt_counts_warnings():
    bad = _Indexed(0, 4, bad=(0, 1, 2, 3))
    some_bad = _Indexed(1, 4, bad=(1,))
    strict = MixedDataset([some_bad], [1.0], epoch_length=8)
    k, i = next((pos, ki) for pos, ki in enumerate(strict.plan(0)) if ki[1] == 1)
    with pytest.raises(DataError, match="sample 1 of 1"):
        strict[k]
    lenient = MixedDataset([some_bad], [1.0], epoch_length=8, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipping corrupt sample 1"):
        assert lenient[k] == (1, 2)
    assert lenient.skipped == 1
    hopeless = MixedDataset([bad], [1.0], epoch_length=2, skip_corrupt=True, max_skips=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError):
            hopeless[0]


def test_mixed_synthetic_through_dataloader():
    transform = build_train_transform(32, 48)
    a = SyntheticDataset(length=5, height=40, width=56, transform=transform)
    b = SyntheticDataset(length=5, height=40, width=56, depth_type="uts", transform=transform, split="val")
    mixed = MixedDataset([a, b], weights=[1, 1], epoch_length=6)
    sampler = MixedSampler(mixed, rank=0, world_size=1)
    loader = torch.utils.data.DataLoader(mixed, batch_size=3, sampler=sampler, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2
    types = sum((bt["depth_type"] for bt in batches), [])
    assert sorted(types) == ["absolute"] * 3 + ["uts"] * 3
    assert batches[0]["image"].shape == (3, 3, 32, 48) and batches[0]["mask"].dtype == torch.bool


# ---- collate ---------------------------------------------------------------------------------
def test_collate_batches_and_variable_pairs():
    ds = SyntheticDataset(length=2, height=16, width=24)
    s0, s1 = ds[0], ds[1]
    s1 = {**s1, "pairs": torch.tensor([[1, 2, 3, 4, 1.0], [0, 0, 5, 5, -1.0]]), "depth_type": "ordinal"}
    batch = collate([s0, s1])
    assert batch["image"].shape == (2, 3, 16, 24) and batch["target"].shape == (2, 1, 16, 24)
    assert batch["depth_type"] == ["absolute", "ordinal"]
    assert [p.shape for p in batch["pairs"]] == [(0, 5), (2, 5)]
    assert batch["meta"][1]["file"] == s1["meta"]["file"]
    assert "pairs" not in collate([s0])
    other = SyntheticDataset(length=1, height=20, width=24)[0]
    with pytest.raises(DataError, match="different sizes"):
        collate([s0, other])


# ---- folder datasets -------------------------------------------------------------------------
def make_rgbd_folder(root: Path, n: int = 3, size=(12, 16), base: str = "") -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    (root / base / "rgb").mkdir(parents=True)
    (root / base / "depth").mkdir(parents=True)
    depths = []
    for i in range(n):
        cv2.imwrite(str(root / base / "rgb" / f"{i:03d}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        mm = rng.integers(0, 10000, size, dtype=np.uint16)
        cv2.imwrite(str(root / base / "depth" / f"{i:03d}.png"), mm)
        depths.append(mm)
    return depths


def test_rgbd_folder_decodes_metres_and_masks_zeros(tmp_path):
    depths = make_rgbd_folder(tmp_path)
    ds = build_dataset("rgbd_folder", tmp_path, depth_scale=1000.0, intrinsics=[20, 20, 7.5, 5.5])
    assert len(ds) == 3 and isinstance(ds, RGBDFolderDataset)
    s = ds[1]
    expected = depths[1] / 1000.0
    np.testing.assert_allclose(s["target"][0].numpy(), expected, rtol=1e-6)
    assert torch.equal(s["mask"][0], torch.from_numpy(depths[1] > 0))
    assert s["depth_type"] == "absolute" and s["meta"]["file"].endswith("001.png")
    assert s["meta"]["intrinsics"].tolist() == [20, 20, 7.5, 5.5]


def test_rgbd_folder_bad_depth_values_are_masked(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "a.png"), np.zeros((2, 3, 3), np.uint8))
    np.save(tmp_path / "depth" / "a.npy", np.array([[1.0, np.nan, np.inf], [0.0, -2.0, 3.0]], np.float32))
    s = RGBDFolderDataset(tmp_path, depth_type="uts")[0]
    assert s["mask"][0].tolist() == [[True, False, False], [False, False, True]]
    assert s["target"][0].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    assert s["depth_type"] == "uts"


def test_rgbd_folder_list_file_split_and_mask(tmp_path):
    make_rgbd_folder(tmp_path, base="train")
    (tmp_path / "masks").mkdir()
    mask = np.zeros((12, 16), np.uint8)
    mask[:, :8] = 255
    cv2.imwrite(str(tmp_path / "masks" / "m.png"), mask)
    (tmp_path / "val.txt").write_text("# image depth mask\ntrain/rgb/002.png train/depth/002.png masks/m.png\n\n")
    val = RGBDFolderDataset(tmp_path, split="val", depth_scale=1000.0)
    assert len(val) == 1
    s = val[0]
    assert not s["mask"][0, :, 8:].any()
    train = RGBDFolderDataset(tmp_path, split="train")
    assert len(train) == 3


def test_rgbd_folder_errors_name_paths(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*expected root/\[split/\]rgb"):
        RGBDFolderDataset(tmp_path / "nowhere")
    make_rgbd_folder(tmp_path)
    (tmp_path / "depth" / "001.png").unlink()
    with pytest.raises(DataError, match=r"001.png.*depth"):
        RGBDFolderDataset(tmp_path)
    with pytest.raises(DataError, match="split 'test' not found"):
        RGBDFolderDataset(tmp_path, split="test")
    (tmp_path / "bad.txt").write_text("rgb/000.png\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected 'image depth \[mask\]'"):
        RGBDFolderDataset(tmp_path, list_file="bad.txt")


def test_rgbd_folder_size_mismatch_and_corrupt_files(tmp_path):
    make_rgbd_folder(tmp_path, n=2)
    cv2.imwrite(str(tmp_path / "depth" / "000.png"), np.ones((10, 16), np.uint16))
    (tmp_path / "rgb" / "001.png").write_bytes(b"garbage")
    ds = RGBDFolderDataset(tmp_path)
    with pytest.raises(DataError, match=r"16x10.*16x12"):
        ds[0]
    with pytest.raises(DataError, match="001.png"):
        ds[1]


def test_rgbd_folder_converts_gray_rgba_16bit_images(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "g.png"), np.full((4, 5), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "rgb" / "r.png"), np.full((4, 5, 4), 50, np.uint8))
    cv2.imwrite(str(tmp_path / "rgb" / "s.png"), np.full((4, 5, 3), 257 * 9, np.uint16))
    for name in "grs":
        cv2.imwrite(str(tmp_path / "depth" / f"{name}.png"), np.full((4, 5), 1000, np.uint16))
    ds = RGBDFolderDataset(tmp_path)
    from svde.data import denormalize_image

    values = [int(denormalize_image(ds[i]["image"])[0, 0, 0]) for i in range(3)]
    assert values == [200, 50, 9]


def test_stereo_folder_reads_disparity_as_utss(tmp_path):
    (tmp_path / "left").mkdir()
    (tmp_path / "disparity").mkdir()
    (tmp_path / "mask").mkdir()
    cv2.imwrite(str(tmp_path / "left" / "f0.jpg"), np.full((6, 8, 3), 128, np.uint8))
    disp = np.linspace(-1.0, 30.0, 48, dtype=np.float32).reshape(6, 8)
    write_pfm(tmp_path / "disparity" / "f0.pfm", disp)
    valid = np.full((6, 8), 255, np.uint8)
    valid[0, -1] = 0
    cv2.imwrite(str(tmp_path / "mask" / "f0.png"), valid)
    ds = build_dataset("stereo_folder", tmp_path)
    assert isinstance(ds, StereoFolderDataset)
    s = ds[0]
    assert s["depth_type"] == "utss"
    expected_mask = (disp > 0) & (valid > 0)
    assert torch.equal(s["mask"][0], torch.from_numpy(expected_mask))
    np.testing.assert_array_equal(s["target"][0].numpy(), np.where(expected_mask, disp, 0))
    cv2.imwrite(str(tmp_path / "disparity" / "f0.png"), np.full((6, 8), 640, np.uint16))
    (tmp_path / "disparity" / "f0.pfm").unlink()
    assert float(StereoFolderDataset(tmp_path, disparity_scale=64)[0]["target"].max()) == 10.0


def test_joint_transform_rejects_typos_and_untracked_geometry():
    import albumentations as A

    from svde.data.transforms import JointTransform

    with pytest.raises(ValueError, match="limt"), pytest.warns(UserWarning, match="limt"):
        JointTransform([A.Rotate(limt=10)])  # strict=True: misspelled arguments are errors
    with pytest.raises(ValueError, match="Affine"):
        JointTransform([A.Affine(scale=1.1)])
