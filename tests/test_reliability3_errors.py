"""Issue 22 ("Reliability 3"), items 6 and 9: one ``error:`` line where there was a traceback (a
malformed ``SVDE_WEIGHTS_URL``, ``--mesh``/``--ply`` of very far depth, a full disk in
``prepare-stereo``, ``redweb`` with a null root; ``paper-table --weights`` with a bad file stays one
line without torch's ``weights_only=False`` advice), and loaders refuse samples smaller than 2x2
and depth arrays of complex or non-numeric values, naming the file."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import svde.atomic
from svde.cli.common import run_main
from svde.cli.main import main as svde_main
from svde.data.base import DataError, DepthDataset
from svde.data.registry import build_dataset


def one_error(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def photo(path: Path, height: int = 40, width: int = 52) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


def command(argv: list, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = svde_main([str(a) for a in argv])
    return code, capsys.readouterr().err


# ---- SVDE_WEIGHTS_URL ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["::not a url", "http://[bad", "http://host:port/x", "ftp://mirror/weights"])
def test_a_malformed_weights_url_is_one_user_error_naming_the_variable(tmp_path, monkeypatch, capsys, value):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached: the URL is needed
    monkeypatch.setenv("SVDE_WEIGHTS_URL", value)
    code, err = command(["predict", "--model", "mn_lrn4", photo(tmp_path / "p.png"), "--out", tmp_path / "out",
                         "--device", "cpu"], capsys)
    line = one_error(err)
    assert code == 2 and f"SVDE_WEIGHTS_URL={value!r} is not a usable base URL" in line and "file:///folder" in line


# ---- --mesh / --ply of very far depth ------------------------------------------------------------
def far_checkpoint(tmp_path: Path, mn_checkpoint: Path, bias: float) -> Path:
    """``mn_checkpoint`` whose head predicts log-disparity ~``bias`` everywhere (depth ~e^-bias)."""
    payload = torch.load(mn_checkpoint, map_location="cpu", weights_only=True)
    payload["model"]["head.conv.bias"] = payload["model"]["head.conv.bias"] * 0 + bias
    path = tmp_path / f"far{bias}.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("option", ["--mesh", "--ply"])
def test_3d_output_of_depth_beyond_float32_points_is_one_line(tmp_path, mn_checkpoint, capsys, option):
    """Depth ~2.7e38 fits float32, its 3D points at a wide field of view do not (before: a ValueError traceback)."""
    code, err = command(["predict", "--checkpoint", far_checkpoint(tmp_path, mn_checkpoint, -88.5),
                         photo(tmp_path / "p.png"), "--out", tmp_path / "out", option, "--fov", "150"], capsys)
    line = one_error(err)
    assert code == 1 and "points lie beyond float32's range" in line and "too far to write as a point cloud or mesh" in line


def test_mesh_of_depth_beyond_float32_says_why_not_to_use_a_log_domain(tmp_path, mn_checkpoint, capsys):
    code, err = command(["predict", "--checkpoint", far_checkpoint(tmp_path, mn_checkpoint, -200.0),
                         photo(tmp_path / "p.png"), "--out", tmp_path / "out", "--mesh", "--fov", "60"], capsys)
    line = one_error(err)
    assert code == 1 and "--mesh:" in line and "too far for 3D points" in line and "use a log domain" not in line


def test_depth_to_mesh_and_point_cloud_refuse_infinite_vertices():
    from svde.geometry import PointsOverflow, depth_to_mesh, point_cloud

    depth = np.full((4, 6), 3e38, np.float32)
    for build in (depth_to_mesh, point_cloud):
        with pytest.raises(PointsOverflow, match="24 points lie beyond float32's range"):
            build(depth, (0.5, 0.5, 2.5, 1.5))


# ---- prepare-stereo on a full disk ---------------------------------------------------------------
def test_prepare_stereo_on_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    from svde.cli.prepare_stereo import main as stereo_main
    from svde.data.io import write_rgb
    from svde.data.stereo.synthetic import synthetic_pair

    for room in range(3):
        pair = synthetic_pair(room, 96, 128, 0.1)
        write_rgb(tmp_path / "pairs" / "left" / f"{room:03d}.png", pair["left"])
        write_rgb(tmp_path / "pairs" / "right" / f"{room:03d}.png", pair["right"])
    real = svde.atomic.fsync_file

    def full(path):
        if Path(path).name.startswith(".001.png."):  # the disk fills while the second frame is stored
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path)

    monkeypatch.setattr(svde.atomic, "fsync_file", full)
    out = tmp_path / "out"
    capsys.readouterr()
    code = run_main(stereo_main, [str(tmp_path / "pairs"), "--out", str(out), "--no-progress"])
    line = one_error(capsys.readouterr().err)
    assert code == 1, line
    assert re.search(f"cannot write {re.escape(str(out))}/(disparity/001.npy|mask/001.png|left/001.png): "
                     "No space left on device", line), line
    frames = {f["name"]: f for f in json.loads((out / "manifest.json").read_text())["frames"]}
    assert frames["000"]["status"] == "kept" and "001" not in frames  # what was done is kept: a rerun continues
    monkeypatch.setattr(svde.atomic, "fsync_file", real)
    assert run_main(stereo_main, [str(tmp_path / "pairs"), "--out", str(out), "--no-progress"]) == 0


# ---- redweb with a null root, paper-table with a bad weights file ---------------------------------
def test_redweb_with_a_null_root_is_one_user_error(tmp_path, capsys):
    from test_train import tiny_raw  # tests/ is on sys.path

    with pytest.raises(DataError, match=r"redweb: no root folder given \(root is null\)"):
        build_dataset("redweb", None)
    raw = tiny_raw(val={"every": 0})
    raw["data"]["train"] = [{"name": "redweb", "root": None}]
    config = tmp_path / "redweb.yaml"
    config.write_text(json.dumps(raw))
    code, err = command(["train", "--config", config, "--out", tmp_path / "run"], capsys)
    assert code == 2 and "redweb: no root folder given (root is null)" in one_error(err)


def test_paper_table_with_a_bad_weights_file_is_one_line_without_torchs_advice(tmp_path, capsys):
    """Already one line before issue 22 (svde.load reads weights with weights_only=True): kept so."""
    import argparse

    diw = tmp_path / "DIW"
    photo(diw / "DIW_test" / "0.png")
    (diw / "DIW_test" / "0.png").rename(diw / "DIW_test" / "0.thumb")
    (diw / "DIW_test.csv").write_text("./DIW_test/0.thumb\n10,12,30,40,>,52,40\n")
    garbage, pickled = tmp_path / "garbage.pth", tmp_path / "pickled.pth"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"args": argparse.Namespace(lr=1)}, pickled)
    for bad in (garbage, pickled):
        code, err = command(["paper-table", "--models", "mn_lrn4", "--weights", f"mn_lrn4={bad}", "--datasets", "diw",
                             "--root", f"diw={diw}", "--out", tmp_path / "pt", "--no-progress"], capsys)
        line = one_error(err)
        assert code == 2 and str(bad) in line and "weights_only" in line and "weights_only=False" not in err


# ---- item 9: odd samples --------------------------------------------------------------------------
def rgbd_sample(root: Path, image: np.ndarray, depth: np.ndarray) -> Path:
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    cv2.imwrite(str(root / "rgb" / "a.png"), image)
    np.save(root / "depth" / "a.npy", depth)
    return root


def test_a_1x1_sample_is_refused_naming_the_file(tmp_path):
    root = rgbd_sample(tmp_path / "d", np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), np.float32))
    with pytest.raises(DataError) as caught:
        build_dataset("rgbd_folder", root)[0]
    assert str(caught.value) == f"{root / 'rgb' / 'a.png'}: the sample is 1x1 (WxH); samples must be at least 2x2 pixels"


def test_a_complex_depth_file_is_refused_naming_it(tmp_path):
    root = rgbd_sample(tmp_path / "d", np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 1 + 2j, np.complex64))
    with pytest.raises(DataError, match=re.escape(str(root / "depth" / "a.npy")) + ".*complex numbers"):
        build_dataset("rgbd_folder", root)[0]


class Handed(DepthDataset):
    """A loader that hands its arrays to the base class as they are (as the HDF5 and .mat loaders do)."""

    name = "handed"

    def __init__(self, target: Any, size: int = 8) -> None:
        self.target, self.size = target, size
        super().__init__(None)

    def index(self) -> list[str]:
        return ["scene/0001"]

    def read(self, record: str) -> dict[str, Any]:
        return {"image": np.zeros((self.size, self.size, 3), np.uint8), "target": self.target, "file": record}


@pytest.mark.parametrize("target, kind", [
    (np.full((8, 8), 1 + 1j, np.complex128), "complex128"),
    (np.full((8, 8), "1.5"), "<U3"),
    (np.full((8, 8), None, dtype=object), "object"),
    (np.ones((8, 8), bool), "bool"),
])
def test_depth_arrays_of_complex_or_non_numeric_values_are_refused(target, kind):
    with pytest.raises(DataError) as caught:
        Handed(target)[0]
    assert str(caught.value) == f"scene/0001: depth must hold real numbers (integer or float), got {kind} values"


def test_the_smallest_accepted_sample_is_2x2():
    assert Handed(np.ones((2, 2), np.float32), size=2)[0]["target"].shape == (1, 2, 2)
    with pytest.raises(DataError, match="scene/0001: the sample is 1x1"):
        Handed(np.ones((1, 1), np.float32), size=1)[0]
