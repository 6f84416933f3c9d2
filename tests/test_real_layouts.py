"""Every loader of a real dataset, on a tiny copy of the real release's layout: real file and folder
names, real encodings and dtypes, random content; decoded target and mask checked value by value,
including each dataset's invalid-value convention. The source of each convention is named in the
loader's docstring."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from svde.data import DataError, build_dataset
from svde.data.base import IMAGENET_MEAN, IMAGENET_STD
from svde.data.eval_sets import TUM_INTRINSICS
from test_data_formats import image_of, rgb, write_dpt, write_jpg, write_png

RNG = np.random.default_rng(12)


def uint16_depth(h: int, w: int, holes: float = 0.3) -> np.ndarray:
    """Random uint16 depth with about ``holes`` of the pixels 0 (no data)."""
    raw = RNG.integers(1, 65536, (h, w)).astype(np.uint16)
    raw[RNG.random((h, w)) < holes] = 0
    raw[0, 0] = 0
    return raw


def assert_decoded(sample: dict, expected: np.ndarray, valid: np.ndarray) -> None:
    """target == expected where valid, 0 elsewhere; mask == valid; all value by value."""
    t, m = sample["target"][0].numpy(), sample["mask"][0].numpy()
    np.testing.assert_array_equal(m, valid)
    np.testing.assert_array_equal(t[valid], expected[valid].astype(np.float32))
    assert not t[~valid].any()


# ---- NYUv2 labeled: MATLAB v7.3 (HDF5 with a 512-byte user block), column-major axes ----------------
def test_nyu_labeled_v73_mat_and_splits(tmp_path):
    n, h, w = 3, 5, 7
    images = np.stack([rgb(h, w) for _ in range(n)])                        # (N, H, W, 3) as MATLAB sees it
    raw = RNG.uniform(0.5, 9.9, (n, h, w)).astype(np.float32)
    raw[RNG.random((n, h, w)) < 0.3] = 0.0                                   # Kinect holes
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = images.transpose(0, 3, 2, 1)                           # h5py view: (N, 3, W, H)
        f["rawDepths"] = raw.transpose(0, 2, 1)                              # (N, W, H)
        f["depths"] = np.full((n, w, h), 1.0, np.float32)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2012 HDF5 schema 1.00 .")
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": np.array([[3], [1]], np.uint16),
                                                "trainNdxs": np.array([[2]], np.uint16)})
    ds = build_dataset("nyu", tmp_path)  # split "test": 1-based testNdxs 3, 1 -> frames 2, 0
    for i, frame in enumerate((2, 0)):
        s = ds[i]
        np.testing.assert_array_equal(image_of(s), images[frame])
        assert_decoded(s, raw[frame], raw[frame] > 0)


# ---- NYUv2 sync (BTS): <scene>/rgb_XXXXX.jpg + sync_depth_XXXXX.png, uint16 mm ----------------------
def test_nyu_sync_bts_layout(tmp_path):
    scene = tmp_path / "official_splits" / "test" / "bathroom"
    raw = uint16_depth(4, 6)
    write_jpg(scene / "rgb_00045.jpg", rgb(4, 6))
    write_png(scene / "sync_depth_00045.png", raw)
    s = build_dataset("nyu_sync", tmp_path)[0]
    assert_decoded(s, raw.astype(np.float32) / np.float32(1000.0), raw > 0)


# ---- TUM (authors' h5): float RGB kept float, /gt/intrinsic read ------------------------------------
def test_tum_h5_float_image_and_own_intrinsics(tmp_path):
    h, w = 6, 8  # the real files are 384x512
    image = RNG.random((h, w, 3)).astype(np.float32)  # not multiples of 1/255: rounding would show
    depth = RNG.uniform(0.3, 9.0, (h, w)).astype(np.float32)
    depth[RNG.random((h, w)) < 0.3] = 0.0
    K = np.array([[528.1, 0.0, 255.3], [0.0, 529.7, 191.6], [0.0, 0.0, 1.0]])
    with h5py.File(tmp_path / "fr2_person_0001.h5", "w") as f:
        f["gt/img_1"] = image
        f["gt/gt_depth"] = depth
        f["gt/intrinsic"] = K
        f["gt/human_mask"] = np.zeros((h, w), np.float32)
    s = build_dataset("tum", tmp_path)[0]
    expected = (image - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(s["image"].numpy().transpose(1, 2, 0), expected, rtol=0, atol=1e-5)
    assert_decoded(s, depth, depth > 0)
    assert s["meta"]["intrinsics"].tolist() == pytest.approx([528.1, 529.7, 255.3, 191.6])
    # An explicit value overrides the file; a file without /gt/intrinsic falls back to fr2, scaled.
    assert build_dataset("tum", tmp_path, intrinsics=[1, 2, 3, 4])[0]["meta"]["intrinsics"].tolist() == [1, 2, 3, 4]
    with h5py.File(tmp_path / "fr2_person_0001.h5", "a") as f:
        del f["gt/intrinsic"]
    fx, fy, cx, cy = TUM_INTRINSICS["fr2"]
    assert build_dataset("tum", tmp_path)[0]["meta"]["intrinsics"].tolist() == pytest.approx(
        [fx * w / 640, fy * h / 480, (cx + 0.5) * w / 640 - 0.5, (cy + 0.5) * h / 480 - 0.5])  # pixel centres kept


def test_tum_h5_bad_intrinsic_names_file_and_key(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["gt/img_1"] = RNG.random((2, 3, 3)).astype(np.float32)
        f["gt/gt_depth"] = np.ones((2, 3), np.float32)
        f["gt/intrinsic"] = np.ones(4)
    with pytest.raises(DataError, match=r"a\.h5:/gt/intrinsic.*3x3"):
        build_dataset("tum", tmp_path)[0]


# ---- TUM RGB-D raw sequence: rgb.txt / depth.txt, uint16 / 5000 -------------------------------------
def test_tum_raw_freiburg1_sequence(tmp_path):
    seq = tmp_path / "rgbd_dataset_freiburg1_desk"
    raw = uint16_depth(4, 5)
    write_png(seq / "rgb" / "1305031452.791720.png", rgb(4, 5))
    write_png(seq / "depth" / "1305031452.796484.png", raw)
    header = "# color images\n# file: 'rgbd_dataset_freiburg1_desk.bag'\n# timestamp filename\n"
    (seq / "rgb.txt").write_text(header + "1305031452.791720 rgb/1305031452.791720.png\n")
    (seq / "depth.txt").write_text(header.replace("color", "depth") + "1305031452.796484 depth/1305031452.796484.png\n")
    s = build_dataset("tum_raw", seq)[0]
    assert_decoded(s, raw.astype(np.float32) / np.float32(5000.0), raw > 0)
    assert s["meta"]["intrinsics"].tolist() == pytest.approx(TUM_INTRINSICS["fr1"])


# ---- KITTI: raw images + annotated depth (uint16 / 256, 0 invalid) ---------------------------------
def test_kitti_depth_release_layout(tmp_path):
    drive = "2011_09_26_drive_0002_sync"
    frame = "0000000005.png"
    image_rel = f"2011_09_26/{drive}/image_02/data/{frame}"
    raw = uint16_depth(5, 8, holes=0.8)
    write_png(tmp_path / "raw" / image_rel, rgb(5, 8))
    write_png(tmp_path / "data_depth_annotated" / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / frame, raw)
    (tmp_path / "eigen_test_files.txt").write_text(image_rel + "\n")
    s = build_dataset("kitti", tmp_path, split_file="eigen_test_files.txt", rgb_root="raw",
                      depth_root="data_depth_annotated")[0]
    assert_decoded(s, raw.astype(np.float32) / np.float32(256.0), raw > 0)


# ---- Sintel: final/<scene>/frame_XXXX.png + depth/<scene>/frame_XXXX.dpt ----------------------------
def test_sintel_dpt(tmp_path):
    depth = RNG.uniform(0.1, 500.0, (3, 5)).astype(np.float32)
    write_png(tmp_path / "final" / "bamboo_2" / "frame_0007.png", rgb(3, 5))
    write_dpt(tmp_path / "depth" / "bamboo_2" / "frame_0007.dpt", depth)
    assert_decoded(build_dataset("sintel", tmp_path)[0], depth, np.ones_like(depth, bool))


# ---- DIW: DIW_test.csv (1-based, clipped to the image as the authors do) ----------------------------
def test_diw_clips_and_shifts_like_the_authors(tmp_path):
    h, w = 6, 8
    write_jpg(tmp_path / "DIW_test" / "0a1b2c3d4e.thumb", rgb(h, w))
    # A inside; B one past the bottom-right corner (h + 1, w + 1): clipped onto the last pixel.
    (tmp_path / "DIW_test.csv").write_text(f"./DIW_test/0a1b2c3d4e.thumb\n3,5,{h + 1},{w + 1},<,{w},{h}\n"
                                           f"./DIW_test/0a1b2c3d4e.thumb\n0,1,1,1,>,{w},{h}\n")
    ds = build_dataset("diw", tmp_path)
    assert ds[0]["pairs"].tolist() == [[2, 4, h - 1, w - 1, -1]]
    assert ds[1]["pairs"].tolist() == [[0, 0, 0, 0, 1]]  # y = 0 (1-based) -> -1 -> clipped to 0
    assert ds[0]["image"].shape == (3, h, w) and not ds[0]["mask"].any()


# ---- ETH3D: the authors' PNG rendering, and the official raw float32 release -------------------------
def test_eth3d_authors_png_layout(tmp_path):
    raw = uint16_depth(3, 4)
    scene = tmp_path / "courtyard"
    write_jpg(scene / "images_out" / "dslr_images_undistorted" / "DSC_0286.JPG", rgb(3, 4))
    write_png(scene / "depth" / "dslr_images_undistorted" / "DSC_0286.png", raw)
    assert_decoded(build_dataset("eth3d", tmp_path)[0], raw.astype(np.float32) / np.float32(1000.0), raw > 0)


def test_eth3d_release_raw_float32_inf_invalid(tmp_path):
    h, w = 4, 6  # the real maps are 6048x4032
    depth = RNG.uniform(0.5, 40.0, (h, w)).astype("<f4")
    depth[RNG.random((h, w)) < 0.4] = np.inf
    scene = tmp_path / "delivery_area"
    write_jpg(scene / "images" / "dslr_images" / "DSC_0711.JPG", rgb(h, w))
    (scene / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    (scene / "ground_truth_depth" / "dslr_images" / "DSC_0711.JPG").write_bytes(depth.tobytes())
    assert_decoded(build_dataset("eth3d", tmp_path)[0], depth, np.isfinite(depth))
    (scene / "ground_truth_depth" / "dslr_images" / "DSC_0711.JPG").write_bytes(depth[:2].tobytes())
    with pytest.raises(DataError, match=r"DSC_0711\.JPG: a raw float32 6x4"):
        build_dataset("eth3d", tmp_path)[0]


# ---- ReDWeb: RDs/*.png, 0 nearest, 255 sky (masked), target increases towards the camera ------------
@pytest.mark.parametrize("channels", [1, 3])
def test_redweb_sky_masked_nearest_kept_and_towards_camera(tmp_path, channels):
    rd = RNG.integers(0, 256, (5, 6)).astype(np.uint8)
    rd[0, 0], rd[0, 1], rd[0, 2] = 0, 255, 254  # nearest, sky, farthest non-sky
    write_jpg(tmp_path / "Imgs" / "5104317470_2be0b4bcd2_b.jpg", rgb(5, 6))
    write_png(tmp_path / "RDs" / "5104317470_2be0b4bcd2_b.png", rd if channels == 1 else np.repeat(rd[:, :, None], 3, 2))
    s = build_dataset("redweb", tmp_path)[0]
    assert s["depth_type"] == "utss"
    assert_decoded(s, (255.0 - rd.astype(np.float32)) / np.float32(255.0), rd != 255)
    t, m = s["target"][0].numpy(), s["mask"][0].numpy()
    assert m[0, 0] and t[0, 0] == 1.0 and not m[0, 1] and 0 < t[0, 2] < t[0, 0]
    # Towards the camera (smaller RD value) the target is larger, pixel pair by pixel pair.
    v, tv = rd[m].astype(np.int32), t[m]
    closer = v[:, None] < v[None, :]
    assert np.all((tv[:, None] > tv[None, :])[closer])


def test_redweb_three_different_channels_names_the_file(tmp_path):
    write_jpg(tmp_path / "Imgs" / "x.jpg", rgb(2, 3))
    write_png(tmp_path / "RDs" / "x.png", np.stack([np.zeros((2, 3), np.uint8)] * 2 + [np.ones((2, 3), np.uint8)], 2))
    with pytest.raises(DataError, match=r"RDs/x\.png: a 3-channel greyscale map must have three identical channels"):
        build_dataset("redweb", tmp_path)[0]


# ---- DIML Indoor: indoor/<scene>/<date>/<batch>/col + up_png, uint16 mm, no split level -------------
def write_diml_batch(batch: Path, names: list[str], suffix: str = "ud.png") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in names:
        image, raw = rgb(3, 4), uint16_depth(3, 4)
        write_png(batch / "col" / f"{name}_c.png", image)
        write_png(batch / "up_png" / f"{name}_{suffix}", raw)
        write_png(batch / "raw_png" / f"{name}_rd.png", uint16_depth(3, 4))  # present in the archives, not read
        out[name] = (image, raw)
    return out


def test_diml_indoor_release_layout(tmp_path):
    indoor = tmp_path / "indoor"
    frames = write_diml_batch(indoor / "04. Church" / "16.02.02" / "1", ["in_k_00_160202_000017", "in_k_00_160202_000018"])
    frames |= write_diml_batch(indoor / "16. Billiard Hall" / "7", ["in_k_00_160319_000301"], suffix="dep.png")  # no date level
    for root in (tmp_path, indoor):  # the folder holding indoor/, or indoor/ itself
        ds = build_dataset("diml", root)
        assert len(ds) == 3
        for i in range(3):
            s = ds[i]
            image, raw = frames[Path(s["meta"]["file"]).name[:-len("_c.png")]]
            np.testing.assert_array_equal(image_of(s), image)
            assert_decoded(s, raw.astype(np.float32) / np.float32(1000.0), raw > 0)
    with pytest.raises(DataError, match="valid splits"):
        build_dataset("diml", tmp_path, split="test")
    write_png(indoor / "04. Church" / "16.02.02" / "1" / "up_png" / "in_k_00_160202_000019_other.png", uint16_depth(3, 4))
    with pytest.raises(DataError, match=r"16\.02\.02/1/up_png.*'other\.png', 'ud\.png'"):
        build_dataset("diml", tmp_path)


# ---- MegaDepth v1: dense*/imgs/*.jpg + dense*/depths/*.h5 ('/depth', 0 = no reconstruction) ---------
def test_megadepth_v1_layout(tmp_path):
    dense = tmp_path / "phoenix" / "S6" / "zl548" / "MegaDepth_v1" / "0015" / "dense0"
    depth = RNG.uniform(0.1, 80.0, (4, 5)).astype(np.float32)
    depth[RNG.random((4, 5)) < 0.4] = 0.0
    write_jpg(dense / "imgs" / "2207919013_6a86e4ed6c_o.jpg", rgb(4, 5))
    (dense / "depths").mkdir()
    with h5py.File(dense / "depths" / "2207919013_6a86e4ed6c_o.h5", "w") as f:
        f["depth"] = depth
    s = build_dataset("megadepth", tmp_path)[0]
    assert s["depth_type"] == "uts"
    assert_decoded(s, depth, depth > 0)
