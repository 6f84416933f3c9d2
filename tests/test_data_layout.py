"""The data layer's homes: layout helpers (svde.data.layout), readers (svde.data.io), the
eval-set package, and the compatibility names kept where code imported them before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

import svde.data.eval_sets as eval_sets
from svde import preprocess
from svde.data import DataError, build_dataset, collate
from svde.data import base, io, layout
from svde.data.folder import RGBDFolderDataset
from svde.types import DepthType

# Every public name the single-module svde/data/eval_sets.py defined, with its new home.
OLD_EVAL_SETS = {
    "NYU_INTRINSICS": "nyu", "NYUv2LabeledDataset": "nyu", "NYUv2SyncDataset": "nyu",
    "TUM_INTRINSICS": "tum", "TUM_SIZE": "tum", "TUMH5Dataset": "tum", "TUMRawDataset": "tum",
    "associate_timestamps": "tum", "KITTIDataset": "kitti", "SintelDataset": "sintel", "DIWDataset": "diw",
    "ETH3DDataset": "eth3d", "read_kitti_calib": "io", "read_sintel_cam": "io", "read_h5": "io", "as_rgb": "io",
    "SINTEL_CAM_TAG": "io", "check_split": "layout", "as_intrinsics": "layout",
    "pair_by_stem": "layout", "parse_list": "layout", "IMAGE_EXTS": "layout", "EVAL_SPLITS": "layout",
}
# Old names whose home calls them something else (svde.geometry.as_intrinsics is the one as_intrinsics).
RENAMED = {"as_intrinsics": "check_intrinsics"}


@pytest.mark.parametrize("name, home", sorted(OLD_EVAL_SETS.items()))
def test_old_eval_sets_names_are_the_new_homes_objects(name, home):
    module = {"io": io, "layout": layout}.get(home) or __import__(f"svde.data.eval_sets.{home}", fromlist=["_"])
    assert getattr(eval_sets, name) is getattr(module, RENAMED.get(name, name))
    assert name in eval_sets.__all__


def test_base_keeps_the_input_contract_names_from_preprocess():
    assert base.normalize_image is preprocess.normalize_image
    assert base.denormalize_image is preprocess.denormalize_image
    assert base.IMAGENET_MEAN is preprocess.IMAGENET_MEAN and base.IMAGENET_STD is preprocess.IMAGENET_STD
    assert base.DEPTH_TYPES == ("absolute", "uts", "utss", "ordinal")
    assert all(type(t) is str for t in base.DEPTH_TYPES)


def test_dataset_depth_type_is_the_enum_and_samples_stay_plain_strings():
    ds = build_dataset("synthetic", length=2, height=32, width=32, depth_type="utss")
    assert ds.depth_type is DepthType.UTSS
    samples = [ds[0], ds[1]]
    assert type(samples[0]["depth_type"]) is str and samples[0]["depth_type"] == DepthType.UTSS
    # Samples go through YAML (safe_dump rejects str-enum members), JSON and both collates.
    assert yaml.safe_load(yaml.safe_dump({"t": samples[0]["depth_type"]})) == {"t": "utss"}
    assert json.dumps(samples[0]["depth_type"]) == '"utss"'
    assert collate(samples)["depth_type"] == ["utss", "utss"]
    assert default_collate([{"t": s["depth_type"]} for s in samples])["t"] == ["utss", "utss"]
    with pytest.raises(DataError, match="depth_type must be 'absolute', 'uts' or 'utss', got 'ordinal'"):
        build_dataset("synthetic", length=1, height=32, width=32, depth_type="ordinal")


def _write_pair(root, name, depth_name=None):
    import cv2

    (root / "rgb").mkdir(exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "rgb" / name), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(root / "depth" / (depth_name or name.rsplit(".", 1)[0] + ".png")), np.full((4, 6), 1000, np.uint16))


def test_folder_list_file_keeps_inline_comments(tmp_path):
    _write_pair(tmp_path, "a.png")
    (tmp_path / "list.txt").write_text("# image depth\nrgb/a.png depth/a.png  # the only frame\n\n")
    ds = RGBDFolderDataset(tmp_path, list_file="list.txt", depth_scale=1000.0)
    assert len(ds) == 1 and torch.allclose(ds[0]["target"], torch.ones(1, 4, 6))
    (tmp_path / "bad.txt").write_text("rgb/a.png  # no depth\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: expected 'image depth \[mask\]', got 'rgb/a\.png'"):
        RGBDFolderDataset(tmp_path, list_file="bad.txt")


def test_folder_pairing_uses_the_glob_and_names_missing_depth(tmp_path):
    _write_pair(tmp_path, "keep_1.png")
    _write_pair(tmp_path, "skip_1.jpg")
    assert [r[0].name for r in RGBDFolderDataset(tmp_path, image_glob="keep_*").records] == ["keep_1.png"]
    assert len(RGBDFolderDataset(tmp_path).records) == 2
    (tmp_path / "depth" / "keep_1.png").unlink()
    with pytest.raises(DataError, match=r"rgbd_folder: no depth file for .*keep_1\.png; looked for .*keep_1\.png, "
                                        r".*keep_1\.pfm, .*keep_1\.npy, .*keep_1\.dpt"):
        RGBDFolderDataset(tmp_path)


def test_parse_list_comment_rules(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a b # c\n#x\n  \nd\n")
    assert layout.parse_list(path) == [(1, ["a", "b", "#", "c"]), (4, ["d"])]
    assert layout.parse_list(path, inline_comments=True) == [(1, ["a", "b"]), (4, ["d"])]
    with pytest.raises(DataError, match=r"l\.txt:4: expected at least 2 fields, got 'd'"):
        layout.parse_list(path, min_tokens=2)
