"""Dataset format loaders: tiny files written in every native format, decoded values and units
checked exactly; plus the real frames in ``../shared/data/real`` when present."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from svde.data import DataError, build_dataset, denormalize_image
from svde.data.eval_sets import (NYU_INTRINSICS, TUM_INTRINSICS, NYUv2LabeledDataset, associate_timestamps,
                                 read_sintel_cam)
from svde.data.io import read_pfm

RNG = np.random.default_rng(0)


# ---- writers ---------------------------------------------------------------------------------------
def rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_png(path: Path, image: np.ndarray) -> Path:
    """uint8 RGB (H, W, 3), or single-channel uint8/uint16 (H, W), losslessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[:, :, ::-1] if image.ndim == 3 else image)
    return path


def write_jpg(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1])
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def write_dpt(path: Path, depth: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = depth.shape
    path.write_bytes(struct.pack("<fii", 202021.25, w, h) + depth.astype("<f4").tobytes())
    return path


def image_of(sample: dict) -> np.ndarray:
    return denormalize_image(sample["image"])


# ---- NYUv2 labeled (.mat = HDF5) -------------------------------------------------------------------
def make_nyu_mat(root: Path, n: int = 4, h: int = 6, w: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Write nyu_depth_v2_labeled.mat in h5py's view of MATLAB's layout: (N, 3, W, H), (N, W, H)."""
    images = np.stack([rgb(h, w) for _ in range(n)])                      # (N, H, W, 3)
    raw = np.stack([np.full((h, w), i + 1.0, np.float32) for i in range(n)])  # frame i: depth i + 1 m
    raw[:, 0, 0] = 0.0       # Kinect hole
    raw[:, 1, 2] = np.nan    # corrupt value
    raw[:, 2, 5] = 7.25      # a marked pixel at (row 2, col 5)
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)
        f["rawDepths"] = raw.transpose(0, 2, 1)
        f["depths"] = (raw + 100.0).transpose(0, 2, 1)
    scipy.io.savemat(root / "splits.mat", {"testNdxs": np.array([[3.0], [1.0]]), "trainNdxs": np.array([[2.0], [4.0]])})
    return images, raw


def test_nyu_labeled_layout_split_and_units(tmp_path):
    images, raw = make_nyu_mat(tmp_path)
    ds = build_dataset("nyu", tmp_path, split="test")
    assert len(ds) == 2
    s = ds[0]  # testNdxs[0] = 3 (1-based) -> frame 2
    assert s["target"].shape == (1, 6, 8) and s["depth_type"] == "absolute"
    np.testing.assert_array_equal(image_of(s), images[2])
    t, m = s["target"][0].numpy(), s["mask"][0].numpy()
    assert t[2, 5] == np.float32(7.25) and t[3, 3] == np.float32(3.0)
    assert not m[0, 0] and not m[1, 2] and t[1, 2] == 0 and m.sum() == 6 * 8 - 2
    assert s["meta"]["intrinsics"].tolist() == pytest.approx(NYU_INTRINSICS)
    assert ds[1]["target"][0, 3, 3] == 1.0
    train = build_dataset("nyu", tmp_path, split="train", depth_key="depths")
    assert [float(train[i]["target"][0, 3, 3]) for i in range(2)] == [102.0, 104.0]
    assert len(build_dataset("nyu", tmp_path, split="all")) == 4


def test_nyu_labeled_bad_input(tmp_path):
    make_nyu_mat(tmp_path)
    scipy.io.savemat(tmp_path / "bad.mat", {"testNdxs": np.array([[1.0], [5.0]])})
    with pytest.raises(DataError, match=r"bad\.mat.*index 5 outside 1\.\.4"):
        NYUv2LabeledDataset(tmp_path, splits_file="bad.mat")
    with pytest.raises(DataError, match="nowhere.*nyu_depth_v2_labeled.mat.*splits.mat"):
        NYUv2LabeledDataset(tmp_path / "nowhere")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "nyu_depth_v2_labeled.mat").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="corrupt.*nyu_depth_v2_labeled.mat"):
        NYUv2LabeledDataset(tmp_path / "corrupt")
    with pytest.raises(DataError, match="valid splits"):
        NYUv2LabeledDataset(tmp_path, split="val")


def test_nyu_labeled_pickles_for_workers(tmp_path):
    make_nyu_mat(tmp_path)
    ds = NYUv2LabeledDataset(tmp_path)
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert clone._h5 is None
    assert float(clone[0]["target"][0, 3, 3]) == 3.0


# ---- NYUv2 sync PNG --------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["flat", "rgb_depth"])
def test_nyu_sync_millimetres(tmp_path, layout):
    image, depth = rgb(4, 5), np.zeros((4, 5), np.uint16)
    depth[1, 3], depth[2, 0] = 1234, 65535
    img_dir, dep_dir = (tmp_path / "bedroom_0001",) * 2 if layout == "flat" else (tmp_path / "rgb", tmp_path / "depth")
    write_png(img_dir / "rgb_00007.png", image)
    write_png(dep_dir / "sync_depth_00007.png", depth)
    s = build_dataset("nyu_sync", tmp_path)[0]
    t = s["target"][0].numpy()
    assert t[1, 3] == np.float32(1.234) and t[2, 0] == np.float32(65.535)
    assert s["mask"].sum() == 2
    np.testing.assert_array_equal(image_of(s), image)
    assert s["meta"]["file"].endswith("rgb_00007.png")


def test_nyu_sync_missing_depth_names_it(tmp_path):
    write_png(tmp_path / "rgb" / "rgb_00001.png", rgb(4, 5))
    with pytest.raises(DataError, match=r"sync_depth_00001\.png"):
        build_dataset("nyu_sync", tmp_path)


# ---- TUM -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_float", [True, False])
def test_tum_h5_subset(tmp_path, as_float):
    image, depth = rgb(6, 8), np.linspace(0.5, 4.0, 48, dtype=np.float32).reshape(6, 8)
    depth[0, 0], depth[5, 7] = np.nan, -1.0
    with h5py.File(tmp_path / "0001.h5", "w") as f:
        f["gt/img_1"] = image / 255.0 if as_float else image
        f["gt/gt_depth"] = depth
    s = build_dataset("tum", tmp_path)[0]
    np.testing.assert_array_equal(image_of(s), image)
    m = s["mask"][0].numpy()
    np.testing.assert_array_equal(s["target"][0].numpy()[m], depth[m])
    assert m.sum() == 46
    fx, fy, cx, cy = TUM_INTRINSICS["fr2"]
    # scaled with pixel centres kept (svde.geometry.scale_intrinsics): cx' = (cx + 0.5) * s - 0.5
    assert s["meta"]["intrinsics"].tolist() == pytest.approx([fx * 8 / 640, fy * 6 / 480, (cx + 0.5) * 8 / 640 - 0.5,
                                                              (cy + 0.5) * 6 / 480 - 0.5])


def test_tum_h5_missing_key_names_file_and_key(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["gt/img_1"] = rgb(2, 2)
    with pytest.raises(DataError, match=r"x\.h5.*gt/gt_depth"):
        build_dataset("tum", tmp_path)[0]
    (tmp_path / "x.h5").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"x\.h5: cannot read as HDF5"):
        build_dataset("tum", tmp_path)[0]


def test_associate_timestamps_is_one_to_one_nearest():
    rgb_t = np.array([1.000, 1.050, 1.500, 2.000, 2.010])
    dep_t = np.array([1.045, 1.010, 1.800, 2.008])
    # 2.010 takes depth 2.008 (dt 0.002) before 2.000 can (dt 0.008); 1.500 has none within 0.02.
    assert associate_timestamps(rgb_t, dep_t, 0.02) == [(0, 1), (1, 0), (4, 3)]


def test_tum_raw_sequence(tmp_path):
    seq = tmp_path / "rgbd_dataset_freiburg2_desk_with_person"
    stamps_rgb, stamps_dep = ["1.000000", "1.050000", "1.500000"], ["1.010000", "1.045000", "1.800000"]
    for i, t in enumerate(stamps_rgb):
        write_png(seq / "rgb" / f"{t}.png", np.full((4, 5, 3), 10 * i, np.uint8))
    for i, t in enumerate(stamps_dep):
        write_png(seq / "depth" / f"{t}.png", np.full((4, 5), 5000 * (i + 1), np.uint16))
    header = "# color images\n# file: 'x.bag'\n# timestamp filename\n"
    (seq / "rgb.txt").write_text(header + "".join(f"{t} rgb/{t}.png\n" for t in stamps_rgb))
    (seq / "depth.txt").write_text(header + "".join(f"{t} depth/{t}.png\n" for t in stamps_dep))
    for root in (seq, tmp_path):  # one sequence, or a folder of sequences
        ds = build_dataset("tum_raw", root)
        assert len(ds) == 2
        assert [float(ds[i]["target"][0, 0, 0]) for i in range(2)] == [1.0, 2.0]  # 5000 -> 1 m, 10000 -> 2 m
        assert [int(image_of(ds[i])[0, 0, 0]) for i in range(2)] == [0, 10]
        assert ds[0]["meta"]["intrinsics"].tolist() == pytest.approx(TUM_INTRINSICS["fr2"])
    (seq / "depth.txt").write_text("1.0 depth/a.png\nbroken-line depth/b.png\n")
    with pytest.raises(DataError, match=r"depth\.txt:2"):
        build_dataset("tum_raw", seq)


# ---- KITTI -----------------------------------------------------------------------------------------
DRIVE = "2011_09_26_drive_0002_sync"
P_RECT_02 = "7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03"


def make_kitti(root: Path) -> Path:
    for frame in (69, 70, 71, 72):
        write_png(root / "raw" / "2011_09_26" / DRIVE / "image_02" / "data" / f"{frame:010d}.png",
                  np.full((3, 4, 3), frame, np.uint8))
    for frame in (69, 70):
        depth = np.zeros((3, 4), np.uint16)
        depth[2, 1], depth[2, 3] = 3200, frame  # 12.5 m; frame / 256 m
        write_png(root / "gt" / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png", depth)
    (root / "raw" / "2011_09_26" / "calib_cam_to_cam.txt").write_text(f"calib_time: x\nP_rect_02: {P_RECT_02}\n")
    lines = [f"2011_09_26/{DRIVE}/image_02/data/0000000069.jpg",           # list says .jpg, disk has .png
             f"2011_09_26/{DRIVE} 70 l",                                      # monodepth2 form
             f"2011_09_26/{DRIVE}/image_02/data/0000000071.png None 721.5377",  # BTS form, no ground truth
             f"2011_09_26/{DRIVE}/image_02/data/0000000072.png "            # no annotated depth on disk,
             f"2011_09_26/{DRIVE}/image_03/data/0000000072.png"]              # monodepth form: right view
    (root / "eigen_test_files.txt").write_text("\n".join(lines) + "\n")
    return root


def test_kitti_eigen_list(tmp_path):
    make_kitti(tmp_path)
    with pytest.warns(UserWarning, match="2 of 4"):
        ds = build_dataset("kitti", tmp_path, split_file="eigen_test_files.txt", rgb_root="raw", depth_root="gt")
    assert len(ds) == 2 and len(ds.skipped) == 2 and ds.skipped[1].endswith("0000000072.png")
    for i, frame in enumerate((69, 70)):
        s = ds[i]
        t = s["target"][0].numpy()
        assert t[2, 1] == 12.5 and t[2, 3] == np.float32(frame / 256.0) and s["mask"].sum() == 2
        assert int(image_of(s)[0, 0, 0]) == frame
        assert s["meta"]["intrinsics"].tolist() == pytest.approx([721.5377, 721.5377, 609.5593, 172.854])
    with pytest.raises(DataError, match="0000000071"):
        build_dataset("kitti", tmp_path, split_file="eigen_test_files.txt", rgb_root="raw", depth_root="gt",
                      missing_depth="error")
    (tmp_path / "bad.txt").write_text(f"2011_09_26/{DRIVE}/0000000069.png\n")
    with pytest.raises(DataError, match=r"bad\.txt:1"):
        build_dataset("kitti", tmp_path, split_file="bad.txt", rgb_root="raw", depth_root="gt")


def test_kitti_folder_layout_with_annotations(tmp_path):
    depth = np.zeros((3, 4), np.uint16)
    depth[1, 1] = 256 * 80
    write_png(tmp_path / "rgb" / "0000000005.png", rgb(3, 4))
    write_png(tmp_path / "depth" / "0000000005.png", depth)
    k = [707.0493, 707.0493, 604.0814, 180.5066]
    (tmp_path / "test_annotations.json").write_text(json.dumps(
        {"files": [{"cam_in": k, "rgb": "x/rgb/0000000005.png", "depth": "x/depth/0000000005.png", "depth_scale": 256.0}]}))
    s = build_dataset("kitti", tmp_path)[0]
    assert s["target"][0, 1, 1] == 80.0 and s["mask"].sum() == 1
    assert s["meta"]["intrinsics"].tolist() == pytest.approx(k)
    override = build_dataset("kitti", tmp_path, intrinsics=[1, 2, 3, 4])[0]
    assert override["meta"]["intrinsics"].tolist() == [1, 2, 3, 4]


# ---- Sintel ----------------------------------------------------------------------------------------
def test_sintel_png_dpt_cam(tmp_path):
    image = rgb(3, 4)
    depth = np.array([[1.5, 2.0, np.inf, 3.0], [0.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1e3]], np.float32)
    write_png(tmp_path / "final" / "alley_1" / "frame_0001.png", image)
    write_dpt(tmp_path / "depth" / "alley_1" / "frame_0001.dpt", depth)
    K = np.array([[1120.0, 0, 511.5], [0, 1121.0, 217.5], [0, 0, 1]])
    cam = tmp_path / "camdata_left" / "alley_1" / "frame_0001.cam"
    cam.parent.mkdir(parents=True)
    cam.write_bytes(struct.pack("<f", 202021.25) + K.astype("<f8").tobytes() + np.eye(3, 4).astype("<f8").tobytes())
    s = build_dataset("sintel", tmp_path)[0]
    np.testing.assert_array_equal(image_of(s), image)
    m = s["mask"][0].numpy()
    assert not m[0, 2] and not m[1, 0] and m.sum() == 10
    np.testing.assert_array_equal(s["target"][0].numpy()[m], depth[m])
    assert s["meta"]["intrinsics"].tolist() == [1120.0, 1121.0, 511.5, 217.5]
    np.testing.assert_array_equal(read_sintel_cam(cam)[1], np.eye(3, 4))
    cam.write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match=r"frame_0001\.cam"):
        build_dataset("sintel", tmp_path)[0]


def test_sintel_missing_depth_and_size_mismatch(tmp_path):
    write_png(tmp_path / "final" / "cave_2" / "frame_0001.png", rgb(3, 4))
    (tmp_path / "depth" / "cave_2").mkdir(parents=True)
    with pytest.raises(DataError, match=r"cave_2/frame_0001\.dpt"):
        build_dataset("sintel", tmp_path)
    write_dpt(tmp_path / "depth" / "cave_2" / "frame_0001.dpt", np.ones((5, 4), np.float32))
    with pytest.raises(DataError, match=r"4x3.*4x5"):
        build_dataset("sintel", tmp_path)[0]


# ---- DIW -------------------------------------------------------------------------------------------
def test_diw_pairs_one_based_to_zero_based(tmp_path):
    write_jpg(tmp_path / "DIW_test" / "a.thumb", rgb(6, 8))
    write_jpg(tmp_path / "DIW_test" / "b.thumb", rgb(5, 7))
    (tmp_path / "DIW_test.csv").write_text("./DIW_test/a.thumb\n1,1,6,8,>,8,6\n./DIW_test/b.thumb\n2,3,4,7,<,7,5\n")
    ds = build_dataset("diw", tmp_path)
    a, b = ds[0], ds[1]
    assert a["depth_type"] == "ordinal" and a["image"].shape == (3, 6, 8)
    assert a["pairs"].tolist() == [[0, 0, 5, 7, 1]]   # '>' : A farther -> +1
    assert b["pairs"].tolist() == [[1, 2, 3, 6, -1]]
    assert not a["mask"].any() and not a["target"].any()


@pytest.mark.parametrize("line", ["1,1,2,2,=,8,6", "1,a,2,2,>,8,6", "1,1,2,>,8,6"])
def test_diw_bad_annotation_names_line(tmp_path, line):
    (tmp_path / "DIW_test.csv").write_text(f"./DIW_test/a.thumb\n{line}\n")
    with pytest.raises(DataError, match=r"DIW_test\.csv:2: expected .yA,xA,yB,xB"):
        build_dataset("diw", tmp_path)


def test_diw_csv_size_mismatch_is_logged_and_the_image_wins(tmp_path, caplog):
    write_jpg(tmp_path / "DIW_test" / "a.thumb", rgb(6, 8))
    (tmp_path / "DIW_test.csv").write_text("./DIW_test/a.thumb\n7,10,2,2,>,10,7\n")
    with caplog.at_level("WARNING", logger="svde.data.eval_sets"):
        s = build_dataset("diw", tmp_path)[0]
    assert "a.thumb: image is 8x6 (WxH)" in caplog.text and "says 10x7" in caplog.text
    assert s["pairs"].tolist() == [[5, 7, 1, 1, 1]]  # clipped to the decoded 8x6 image


# ---- training sets (ETH3D, ReDWeb and DIML layouts: tests/test_real_layouts.py) ----------------
def test_megadepth_h5(tmp_path):
    dense = tmp_path / "phoenix" / "S6" / "zl548" / "MegaDepth_v1" / "0001" / "dense0"
    depth = np.array([[0.0, 1.25, 3.0], [np.nan, 2.0, 0.5]], np.float32)
    write_jpg(dense / "imgs" / "123_abc.jpg", rgb(2, 3))
    (dense / "depths").mkdir()
    with h5py.File(dense / "depths" / "123_abc.h5", "w") as f:
        f["depth"] = depth
    (tmp_path / "list.txt").write_text("phoenix/S6/zl548/MegaDepth_v1/0001/dense0/imgs/123_abc.jpg\n")
    for options in ({}, {"list_file": "list.txt"}):
        s = build_dataset("megadepth", tmp_path, **options)[0]
        assert s["depth_type"] == "uts"
        m = s["mask"][0].numpy()
        np.testing.assert_array_equal(m, np.isfinite(depth) & (depth > 0))
        np.testing.assert_array_equal(s["target"][0].numpy()[m], depth[m])
    (tmp_path / "list.txt").write_text("phoenix/x/dense0/imgs/missing.jpg\n")
    with pytest.raises(DataError, match=r"list\.txt:1:.*missing\.jpg not found"):
        build_dataset("megadepth", tmp_path, list_file="list.txt")
    (tmp_path / "list.txt").write_text("phoenix/elsewhere.jpg\n")
    with pytest.raises(DataError, match=r"list\.txt:1:.*elsewhere\.jpg.*imgs/"):
        build_dataset("megadepth", tmp_path, list_file="list.txt")


# ---- errors common to every loader -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["nyu", "nyu_sync", "tum", "tum_raw", "kitti", "sintel", "diw", "eth3d",
                                  "redweb", "diml", "megadepth"])
def test_missing_root_names_path_and_layout(tmp_path, name):
    with pytest.raises(DataError, match=r"no_such_dir.*expected"):
        build_dataset(name, tmp_path / "no_such_dir")


def test_corrupt_depth_names_file(tmp_path):
    write_png(tmp_path / "rgb" / "a.png", rgb(3, 4))
    (tmp_path / "depth").mkdir()
    (tmp_path / "depth" / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"depth/a\.png"):
        build_dataset("kitti", tmp_path)[0]


# ---- real frames in ../shared ----------------------------------------------------------------------
def test_real_nyu_sync_frames(shared_dir):
    root = shared_dir / "data" / "real" / "nyuv2"
    ds = build_dataset("nyu_sync", root)
    assert len(ds) == 3
    for i in range(3):
        s = ds[i]
        assert s["target"].shape == (1, 480, 640)
        raw = cv2.imread(str(root / "depth" / Path(s["meta"]["file"]).name.replace("rgb_", "sync_depth_").replace(".jpg", ".png")), -1)
        np.testing.assert_array_equal(s["target"][0].numpy(), raw.astype(np.float32) / np.float32(1000.0))
        valid = s["target"][s["mask"]]
        assert 0.65 <= s["mask"].float().mean() <= 0.77  # README: about 25-33 % zeros
        assert 0.3 < float(valid.min()) and float(valid.max()) < 10.0  # Kinect range, metres
        assert s["meta"]["intrinsics"].tolist() == pytest.approx(NYU_INTRINSICS)


def test_real_kitti_frames(shared_dir):
    root = shared_dir / "data" / "real" / "kitti"
    ds = build_dataset("kitti", root)
    assert len(ds) == 3
    for i in range(3):
        s = ds[i]
        assert s["target"].shape == (1, 375, 1242)
        valid = s["target"][s["mask"]]
        assert 0.1 < s["mask"].float().mean() < 0.3  # ~20 % annotated
        assert not s["mask"][0, :90].any()  # lower image only: LiDAR sees nothing in the top rows
        assert 1.0 < float(valid.min()) and float(valid.max()) < 90.0  # metres (value / 256)
        assert s["meta"]["intrinsics"].tolist() == pytest.approx([707.0493, 707.0493, 604.0814, 180.5066])


def test_real_tum_frames_through_tum_raw(shared_dir, tmp_path):
    fr2 = shared_dir / "data" / "real" / "tum" / "fr2"
    seq = tmp_path / "rgbd_dataset_freiburg2_pioneer_360"
    seq.mkdir()
    # Absolute paths in the lists are allowed: the frames stay in ../shared.
    (seq / "rgb.txt").write_text(f"# timestamp filename\n10.000 {fr2 / '1.png'}\n11.000 {fr2 / '2.png'}\n")
    (seq / "depth.txt").write_text(f"10.005 {fr2 / '1_depth.png'}\n11.010 {fr2 / '2_depth.png'}\n")
    ds = build_dataset("tum_raw", seq)
    assert len(ds) == 2
    for i, name in enumerate(("1_depth.png", "2_depth.png")):
        s = ds[i]
        raw = cv2.imread(str(fr2 / name), -1)
        np.testing.assert_array_equal(s["target"][0].numpy(), raw.astype(np.float32) / np.float32(5000.0))
        valid = s["target"][s["mask"]]
        assert 0.5 < float(valid.min()) and float(valid.max()) < 12.0  # metres
        assert s["meta"]["intrinsics"].tolist() == pytest.approx([520.9, 521.0, 325.1, 249.7])


def test_real_middlebury_pfm(shared_dir):
    root = shared_dir / "data" / "real" / "middlebury2014"
    disp = read_pfm(root / "disp0GT.pfm")
    mask = cv2.imread(str(root / "mask0nocc.png"), cv2.IMREAD_GRAYSCALE)
    assert disp.shape == mask.shape == (497, 741)
    known = np.isfinite(disp)
    assert np.all(disp[known] > 0) and np.all(np.isinf(disp[~known]))
    # Orientation: unknown disparity exactly where the mask says "no ground truth" (0); a
    # disparity read top-down would not line up with the mask.
    np.testing.assert_array_equal(known, mask > 0)
    calib = dict(line.split("=", 1) for line in (root / "calib.txt").read_text().splitlines() if "=" in line)
    f, doffs, baseline = float(calib["cam0"].strip("[").split()[0]), float(calib["doffs"]), float(calib["baseline"])
    assert float(calib["vmin"]) - 5 < disp[known].min() and disp[known].max() < float(calib["vmax"]) + 5
    depth_m = baseline * f / (disp[known] + doffs) / 1000.0
    assert 1.0 < depth_m.min() and depth_m.max() < 5.0  # a table-top scene a few metres away
