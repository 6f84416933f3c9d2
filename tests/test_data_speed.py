"""The training augmentation with one resampling (svde.data.transforms.TrainAugment, the default
of build_train_transform) against its contract and against the albumentations pipeline it
replaces (legacy=True): output types, depth and mask mapped exactly (nearest) under the drawn
pixel map, invalid padded / rotated-in pixels, determinism under a seed, the same parameter
distributions, colour steps as albumentations' ColorJitter, and speed."""

from __future__ import annotations

import math
import statistics
import time

import cv2
import numpy as np
import pytest
import torch

from svde.data import RGBDFolderDataset, SyntheticDataset, build_train_transform
from svde.data.colour import colour_matrix, jitter_image
from svde.data.transforms import TrainAugment


def coordinates(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image and a depth map that encode each pixel's (x, y), and a mask with holes (every 7th
    pixel invalid, its depth 0, as DepthDataset.finish passes them)."""
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x & 255, y & 255, ((x >> 8) << 4) | (y >> 8)], axis=-1).astype(np.uint8)
    mask = (y * w + x) % 7 != 3
    depth = np.where(mask, 1 + y * w + x, 0).astype(np.float32)
    return image, depth, mask


def raw_sample(image, depth, mask, **extra):
    return {"image": image, "target": depth, "mask": mask, "depth_type": "absolute", **extra}


@pytest.mark.parametrize("seed", range(8))
def test_depth_mask_and_image_follow_the_drawn_pixel_map(seed):
    """Every output pixel holds the input pixel nearest to where the map sends it back (depth,
    mask and a nearest-sampled image alike); pixels from outside the input, or (after a rotation)
    from outside the crop window, are invalid with depth 0 and a black image."""
    h, w = 90, 130
    image, depth, mask = coordinates(h, w)
    t = TrainAugment(48, 64, scale_range=(0.5, 1.5), rotate_limit=25, rotate_p=0.6, color_p=0.0,
                     interpolation=cv2.INTER_NEAREST)
    torch.manual_seed(seed)
    plan = t.plan((h, w))
    torch.manual_seed(seed)
    out = t(raw_sample(image, depth, mask))
    assert out["image"].shape == (48, 64, 3) and out["image"].dtype == np.uint8
    assert out["target"].shape == (48, 64) and out["target"].dtype == np.float32 and out["mask"].dtype == bool
    v, u = np.mgrid[0:48, 0:64]
    src = np.linalg.inv(plan.affine) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    # nearest, exact ties (x.5) up: the transform nudges its map by 1e-6 px so that cv2 rounds alike
    xs, ys = (np.floor(src[k] + 1e-6 + 0.5).astype(np.int64).reshape(48, 64) for k in (0, 1))
    r0, r1, c0, c1 = plan.window or (0, h, 0, w)
    inside = (xs >= c0) & (xs < c1) & (ys >= r0) & (ys < r1)
    sx, sy = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
    expected_mask = inside & mask[sy, sx]
    expected_depth = np.where(expected_mask, depth[sy, sx], 0)
    # float64 here and cv2's own arithmetic could only part at a near-tie
    assert np.mean(out["mask"] != expected_mask) < 2e-3
    assert np.mean(out["target"] != expected_depth) < 2e-3
    assert np.all(out["target"][~out["mask"]] == 0) and np.all(out["target"][out["mask"]] > 0)
    assert np.mean(np.any(out["image"] != np.where(inside[..., None], image[sy, sx], 0), axis=-1)) < 2e-3
    # a nearest-sampled image shows exactly the pixel the depth came from
    v, u = np.nonzero(out["mask"])
    x_img = out["image"][v, u, 0].astype(np.int64) | ((out["image"][v, u, 2].astype(np.int64) >> 4) << 8)
    assert np.array_equal(x_img, (out["target"][v, u].astype(np.int64) - 1) % w)


def test_rotation_marks_pixels_from_outside_the_crop_window_invalid():
    """A wide image, a square crop and a rotation: the corners rotated in come from outside the
    crop window and must be invalid (and black) although the input is valid there."""
    image, depth, mask = coordinates(200, 300)
    depth, mask = depth + (depth == 0), np.ones_like(mask)  # every input pixel valid
    t = TrainAugment(64, 64, scale_range=(1.0, 1.0), rotate_limit=30, rotate_p=1.0, flip_p=0.0, color_p=0.0)
    checked = 0
    for seed in range(20):
        torch.manual_seed(seed)
        plan = t.plan((200, 300))
        torch.manual_seed(seed)
        out = t(raw_sample(image, depth, mask))
        r0, r1, c0, c1 = plan.window  # the crop window: 200 of the 300 columns
        assert (r0, r1, c1 - c0) == (0, 200, 200)
        if abs(math.degrees(math.atan2(plan.affine[0, 1], plan.affine[0, 0]))) > 3:
            assert not out["mask"][[0, 0, -1, -1], [0, -1, 0, -1]].any()
            checked += 1
        near = cv2.dilate(out["mask"].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert 0.5 < out["mask"].mean() <= 1.0 and not out["image"][~near].any()  # black but at the edge
    assert checked >= 10


def test_intrinsics_and_pairs_follow_the_map():
    h, w = 120, 160
    image, depth, mask = coordinates(h, w)
    rng = np.random.default_rng(0)
    pairs = np.concatenate([rng.integers(0, h, (300, 1)), rng.integers(0, w, (300, 1)), rng.integers(0, h, (300, 1)),
                            rng.integers(0, w, (300, 1)), rng.choice([-1, 1], (300, 1))], 1).astype(np.float32)
    t = TrainAugment(64, 96, rotate_p=1.0, color_p=0.0, interpolation=cv2.INTER_NEAREST)
    k = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    dropped = 0
    for seed in range(5):
        torch.manual_seed(seed)
        plan = t.plan((h, w))
        torch.manual_seed(seed)
        out = t(raw_sample(image, depth, mask, intrinsics=[100.0, 100.0, 79.5, 59.5], pairs=pairs))
        fx, fy, cx, cy = out["intrinsics"]
        m = plan.affine @ k
        assert fx == pytest.approx(np.linalg.norm(m[0, :2]), rel=1e-5) and cx == pytest.approx(m[0, 2], rel=1e-5)
        assert fy == pytest.approx(np.linalg.norm(m[1, :2]), rel=1e-5) and cy == pytest.approx(m[1, 2], rel=1e-5)
        # pairs: moved by the map, kept only when both points come from the crop window and stay in the image
        r0, r1, c0, c1 = plan.window
        moved = out["pairs"]
        for ya, xa, yb, xb, rel in moved:
            source = [row for row in pairs if row[4] == rel
                      and np.allclose(np.round(plan.affine[:2] @ [row[1], row[0], 1]), [xa, ya])
                      and np.allclose(np.round(plan.affine[:2] @ [row[3], row[2], 1]), [xb, yb])]
            assert source and all(r0 <= s[0] < r1 and c0 <= s[1] < c1 and r0 <= s[2] < r1 and c0 <= s[3] < c1
                                  for s in source)
        inner = [row for row in pairs if all(r0 + 2 <= row[j] < r1 - 2 for j in (0, 2))
                 and all(c0 + 2 <= row[j] < c1 - 2 for j in (1, 3))]
        assert len(inner) * 0.5 < len(moved) <= len(pairs)
        dropped += len(moved) < len(pairs)
    assert dropped


def test_same_seed_same_sample_and_workers_differ():
    image, depth, mask = coordinates(120, 160)
    t = build_train_transform(64, 96)
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outs.append(t(raw_sample(image, depth, mask)))
    for key in ("image", "target", "mask"):
        assert np.array_equal(outs[0][key], outs[1][key])
    assert not np.array_equal(outs[0]["target"], outs[2]["target"])


def test_output_contract_through_datasets(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    source = SyntheticDataset(split="bench", length=3, height=96, width=128)
    for i in range(3):
        raw = source.read(i)
        cv2.imwrite(str(tmp_path / "rgb" / f"{i}.png"), raw["image"][:, :, ::-1])
        cv2.imwrite(str(tmp_path / "depth" / f"{i}.png"), np.round(raw["target"] * 1000).astype(np.uint16))
    t = build_train_transform(64, 96)
    torch.manual_seed(0)
    for ds in (RGBDFolderDataset(tmp_path, depth_scale=1000.0, transform=t),
               SyntheticDataset(length=3, height=96, width=128, transform=t)):
        for i in range(3):
            s = ds[i]
            assert s["image"].shape == (3, 64, 96) and s["image"].dtype == torch.float32
            assert s["target"].shape == (1, 64, 96) and s["mask"].dtype == torch.bool and s["mask"].any()
            assert torch.all(s["target"][s["mask"]] > 0) and torch.all(s["target"][~s["mask"]] == 0)
            assert torch.isfinite(s["image"]).all()
            assert s["meta"]["intrinsics"] is None or torch.isfinite(s["meta"]["intrinsics"]).all()


def test_float_images_stay_float_in_the_unit_range():
    image = np.random.default_rng(0).random((80, 100, 3)).astype(np.float32)
    t = TrainAugment(48, 64, color_p=1.0)
    for seed in range(4):
        torch.manual_seed(seed)
        out = t(raw_sample(image, np.ones((80, 100), np.float32), np.ones((80, 100), bool)))
        assert out["image"].dtype == np.float32 and 0.0 <= out["image"].min() and out["image"].max() <= 1.0


def test_parameter_distributions_match_the_legacy_pipeline():
    """The new pipeline draws what albumentations' (legacy) draws, each parameter on its own: the
    rotation, flip and colour rates, scale range, colour factors and step orders, and the same share
    of valid pixels after padding and after rotation."""
    t = TrainAugment(384, 512)
    torch.manual_seed(0)
    plans = [t.plan((480, 640)) for _ in range(2000)]
    scales = np.array([p.affine[0, 0] ** 2 + p.affine[0, 1] ** 2 for p in plans]) ** 0.5
    assert scales.min() >= 0.8 * 0.8 - 0.01 and scales.max() <= 0.8 * 1.25 + 0.01
    assert np.mean(scales) == pytest.approx(0.8 * 1.025, rel=0.01)  # uniform factor in [0.8, 1.25]
    rotated = np.array([p.window is not None for p in plans])
    flipped = np.array([np.linalg.det(p.affine[:2, :2]) < 0 for p in plans])
    coloured = np.array([p.colour is not None for p in plans])
    assert rotated.mean() == pytest.approx(0.5, abs=0.04) and flipped.mean() == pytest.approx(0.5, abs=0.04)
    assert coloured.mean() == pytest.approx(0.8, abs=0.03)
    # independent draws (the legacy pipeline seeds every albumentations step alike, so there a
    # rotated sample is always flipped, coloured and scaled down: see JointTransform)
    assert np.mean(rotated & flipped) == pytest.approx(0.25, abs=0.04)
    assert np.mean(scales[rotated]) == pytest.approx(np.mean(scales[~rotated]), rel=0.02)
    factors = np.array([p.colour[:4] for p in plans if p.colour is not None])
    assert factors[:, :3].min() >= 0.8 and factors[:, :3].max() <= 1.2 and np.abs(factors[:, 3]).max() <= 0.05
    assert factors[:, 3].min() < -0.045 and factors[:, 3].max() > 0.045
    assert len({tuple(p.colour[4]) for p in plans if p.colour is not None}) == 24  # every step order occurs
    raw = raw_sample(np.zeros((96, 128, 3), np.uint8), np.ones((96, 128), np.float32), np.ones((96, 128), bool))
    for settings, n in (({"scale_range": (1.0, 1.0), "rotate_limit": 20, "rotate_p": 1.0}, 400),
                        ({"scale_range": (0.6, 1.3), "rotate_limit": 0}, 800)):
        shares = {}
        for legacy in (False, True):
            transform = build_train_transform(77, 102, color_p=0.0, legacy=legacy, **settings)
            torch.manual_seed(1)
            shares[legacy] = np.array([transform(raw)["mask"].mean() for _ in range(n)])
        error = 3 * math.hypot(*(s.std() / math.sqrt(n) for s in shares.values()))
        assert abs(shares[False].mean() - shares[True].mean()) < max(error, 0.002), settings


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
def test_colour_jitter_matches_albumentations(order):
    from albumentations.augmentations.pixel import functional as fp

    ops = [fp.adjust_brightness_torchvision, fp.adjust_contrast_torchvision, fp.adjust_saturation_torchvision,
           fp.adjust_hue_torchvision]
    image = SyntheticDataset(length=1, height=64, width=96).read(0)["image"]  # a rendered room
    for factors in [(1.2, 0.8, 1.15, 0.04), (0.85, 1.15, 0.8, -0.05), (1.0, 1.0, 1.0, 0.0)]:
        expected = image.copy()
        for k in order:
            expected = ops[k](expected, factors[k])
        out = jitter_image(image, (*factors, order))
        diff = np.abs(out.astype(int) - expected.astype(int))
        # albumentations rounds after every step and quantises hue to 180 levels, we to 256
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6
    assert np.array_equal(jitter_image(image, (1.0, 1.0, 1.0, 0.0, order)), image)
    grey = np.full((4, 4, 3), 77, np.uint8)
    assert np.array_equal(jitter_image(grey, (1.0, 1.0, 1.0, 0.05, order)), grey)  # hue leaves grey alone


def test_colour_matrix_steps():
    mean = np.array([100.0, 50.0, 20.0])
    grey = 0.299 * 100 + 0.587 * 50 + 0.114 * 20
    m = colour_matrix(1.0, 0.5, 1.0, [1], mean)
    np.testing.assert_allclose(m[:, :3], 0.5 * np.eye(3))
    np.testing.assert_allclose(m[:, 3], 0.5 * grey)
    # brightness then contrast: the contrast blends with the brightened image's mean grey
    np.testing.assert_allclose(colour_matrix(2.0, 0.5, 1.0, [0, 1], mean)[:, 3], 0.5 * 2 * grey)
    desaturated = colour_matrix(1.0, 1.0, 0.0, [2], mean)
    np.testing.assert_allclose(desaturated[:, :3] @ mean, np.full(3, grey))


def test_the_new_augmentation_is_faster_than_the_legacy_one():
    """Interleaved rounds, median: the new pipeline on an NYU-sized sample costs less CPU than
    albumentations' (it is about 2x faster; the margin here leaves room for a busy machine)."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3)).astype(np.uint8), (5, 5), 0)
    depth = rng.uniform(0.5, 10, (480, 640)).astype(np.float32)
    raw = raw_sample(image, depth, np.ones((480, 640), bool))
    new, old = build_train_transform(384, 512), build_train_transform(384, 512, legacy=True)
    torch.manual_seed(0)
    times = {"new": [], "old": []}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for _ in range(7):
            for name, t in (("new", new), ("old", old)):
                start = time.process_time()
                for _ in range(6):
                    t(raw)
                times[name].append(time.process_time() - start)
    finally:
        cv2.setNumThreads(threads)
    assert statistics.median(times["new"]) < statistics.median(times["old"])


def test_rejects_interpolations_warp_affine_lacks():
    with pytest.raises(ValueError, match="interpolation"):
        TrainAugment(32, 32, interpolation=cv2.INTER_AREA)
    assert math.isclose(TrainAugment(32, 32, interpolation=cv2.INTER_NEAREST_EXACT).interpolation, cv2.INTER_NEAREST)
