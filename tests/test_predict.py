"""Prediction (svde.api: resize, domains; PNG16, point clouds, PLY) and the predict command (svde.cli.predict) end to end."""

import json
import math
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import svde

from svde.cli.common import run_main
from svde.cli.main import main as svde_main
from svde.cli.predict import main as predict_main
from svde.data.base import DataError
from svde.data.io import read_image
from svde.api import convert_domain, load_depth_model, predict
from svde.cli.common import output_stems
from svde.data.io import load_png16, save_png16, write_ply
from svde.data.layout import list_images
from svde.geometry import intrinsics_from_fov, point_cloud
from svde.preprocess import network_size
from svde.viz import colorize

REPO = Path(__file__).resolve().parents[1]


def parse_ply(path: Path) -> tuple[list[str], np.ndarray]:
    """A reader independent of write_ply: header lines and the vertex records."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    props = [line.split() for line in header if line.startswith("property")]
    types = {"float": "<f4", "uchar": "u1"}
    dtype = np.dtype([(p[2], types[p[1]]) for p in props])
    if "format binary_little_endian 1.0" in header:
        body = raw[end:]
        assert len(body) == count * dtype.itemsize, "binary body size does not match the vertex count"
        return header, np.frombuffer(body, dtype=dtype)
    assert "format ascii 1.0" in header
    rows = [line.split() for line in raw[end:].decode("ascii").splitlines() if line.strip()]
    assert len(rows) == count
    return header, np.array([tuple(float(v) for v in r) for r in rows], dtype=dtype)


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_network_size_rounds_to_multiples_of_32():
    assert network_size(50, 70) == (64, 64)
    assert network_size(10, 10) == (32, 32)
    assert network_size(480, 640, short_side=384) == (384, 512)
    # Halves round to even (Python's round), as the authors' get_size; one rule for predict and eval.
    from svde.evaluation import get_protocol

    assert network_size(384, 400, short_side=384) == (384, 384)
    assert network_size(384, 432, short_side=384) == (384, 448)  # 13.5 -> 14
    for hw in ((384, 400), (128, 304), (1152, 2352), (375, 1242)):
        assert network_size(*hw, short_side=384) == get_protocol("nyu").input_size(*hw)
    h, w = network_size(1080, 1920, short_side=384)
    assert h == 384 and w % 32 == 0 and abs(w / h - 1920 / 1080) < 0.05
    with pytest.raises(ValueError, match="positive"):
        network_size(0, 5)


@pytest.mark.parametrize("shape", [(50, 70), (33, 97), (64, 96)])
def test_predict_any_size_matches_network_at_rounded_size(mn_model, shape):
    rgb = random_rgb(*shape)
    out = predict(mn_model, rgb, short_side=None)  # the native size, rounded to 32
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    # At a size that is already a multiple of 32 no resizing happens: identical to the network.
    if shape == (64, 96):
        from svde.data.base import normalize_image

        with torch.no_grad():
            ref = mn_model(normalize_image(rgb)[None])[0, 0].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-6)


def test_predict_rejects_non_rgb(mn_model):
    with pytest.raises(ValueError, match="uint8"):
        predict(mn_model, np.zeros((32, 32), np.uint8))


def test_domains_are_consistent():
    log_disp = np.array([[-1.0, 0.0], [0.5, 2.0]], np.float32)
    disp, depth = convert_domain(log_disp, "disparity"), convert_domain(log_disp, "depth")
    np.testing.assert_allclose(disp * depth, 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.log(disp), log_disp, atol=1e-6)
    np.testing.assert_array_equal(convert_domain(log_disp, "log_depth"), -log_disp)
    np.testing.assert_array_equal(convert_domain(log_disp, "log_disparity"), log_disp)
    with pytest.raises(KeyError, match="valid domains"):
        convert_domain(log_disp, "metres")
    with pytest.raises(FloatingPointError, match="overflow"):
        convert_domain(np.array([-200.0], np.float32), "depth")


def test_png16_round_trip(tmp_path):
    values = np.random.default_rng(1).uniform(0.3, 12.0, (20, 30)).astype(np.float32)
    meta = save_png16(tmp_path / "d.depth.png", values, domain="depth")
    assert json.loads((tmp_path / "d.depth.json").read_text())["domain"] == "depth"
    back = load_png16(tmp_path / "d.depth.png")
    assert np.abs(back - values).max() <= (meta["max"] - meta["min"]) / 131070 + 1e-6
    save_png16(tmp_path / "c.png", np.full((4, 4), 2.5))
    np.testing.assert_array_equal(load_png16(tmp_path / "c.png"), 2.5)
    (tmp_path / "c.json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_png16(tmp_path / "c.png")
    with pytest.raises(ValueError, match="finite"):
        save_png16(tmp_path / "n.png", np.array([[1.0, np.nan]]))


def test_colorize_uses_robust_percentiles():
    values = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    values[0, 0] = 1e6  # one outlier must not wash out the rest
    rgb = colorize(values)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50
    masked = colorize(values, mask=values < 0.5)
    assert (masked[values >= 0.5] == 0).all()


def test_fov_intrinsics_and_backprojection_reproject():
    fx, fy, cx, cy = intrinsics_from_fov(64, 48, 90.0)
    assert fx == fy == pytest.approx(32.0) and (cx, cy) == (31.5, 23.5)
    with pytest.raises(ValueError, match="field of view"):
        intrinsics_from_fov(64, 48, 180.0)
    depth = np.random.default_rng(2).uniform(1.0, 5.0, (48, 64)).astype(np.float32)
    depth[3, 4] = np.nan
    depth[5, 6] = 0.0
    rgb = random_rgb(48, 64)
    points, colors = point_cloud(depth, (fx, fy, cx, cy), rgb)
    assert len(points) == 48 * 64 - 2 and colors.shape == points.shape
    # Projecting the points back gives the pixel grid (minus the two invalid pixels).
    u = points[:, 0] * fx / points[:, 2] + cx
    v = points[:, 1] * fy / points[:, 2] + cy
    valid = np.ones((48, 64), bool)
    valid[3, 4] = valid[5, 6] = False
    vv, uu = np.nonzero(valid)
    np.testing.assert_allclose(u, uu, atol=1e-3)
    np.testing.assert_allclose(v, vv, atol=1e-3)
    np.testing.assert_array_equal(colors, rgb[vv, uu])
    assert math.isclose(points[:, 2].sum(), depth[valid].sum(), rel_tol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_parses_back(tmp_path, binary):
    points = np.random.default_rng(3).normal(size=(17, 3)).astype(np.float32)
    colors = np.random.default_rng(4).integers(0, 256, (17, 3), dtype=np.uint8)
    write_ply(tmp_path / "c.ply", points, colors, binary=binary)
    header, verts = parse_ply(tmp_path / "c.ply")
    assert "element vertex 17" in header and len(verts) == 17
    np.testing.assert_allclose(np.stack([verts[a] for a in "xyz"], 1), points, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.stack([verts[c] for c in ("red", "green", "blue")], 1), colors)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "bad.ply", points[:, :2])


def test_list_images_and_collision_free_names(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "a.PNG", "sub/b.png", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    images, skipped = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in images] == ["a.PNG", "a.jpg", "sub/b.png"]
    assert [p.name for p in skipped] == ["notes.txt"]
    assert [s.as_posix() for s in output_stems(images, tmp_path)] == ["a_PNG", "a_jpg", "sub/b"]
    with pytest.raises(ValueError, match="not an image"):
        list_images(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:load_depth_model is deprecated:DeprecationWarning")
def test_load_depth_model_sources(mn_checkpoint, mn_model):
    with pytest.warns(DeprecationWarning, match="use svde.load"):
        loaded = load_depth_model(checkpoint=mn_checkpoint)
    assert loaded.name == "mn_lrn4" and not loaded.training
    for key, value in mn_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(ValueError, match="holds a mn_lrn4"):
        load_depth_model(checkpoint=mn_checkpoint, model="b0_lrn4")
    with pytest.raises(ValueError, match="model name"):
        load_depth_model(official=mn_checkpoint)
    with pytest.raises(KeyError, match="valid models"):
        load_depth_model(model="resnet")
    with pytest.raises(ValueError, match="nothing to load"):
        load_depth_model()


def _write_inputs(folder: Path) -> dict[str, np.ndarray]:
    images = {"x.png": random_rgb(45, 61, 5), "nested/deeper/y.jpg": random_rgb(70, 40, 6)}
    for rel, rgb in images.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / rel), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    (folder / "readme.txt").write_text("not an image")
    return images


def test_predict_cli_folder_npy(tmp_path, mn_checkpoint, mn_model, capsys):
    images = _write_inputs(tmp_path / "in")
    rc = predict_main(["--checkpoint", str(mn_checkpoint), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                       "--domain", "depth", "--short-side", "0", "--device", "cpu", "--recursive"])
    assert rc == 0
    assert "note: skipping 1 file that is not an image" in capsys.readouterr().err
    for rel, rgb in images.items():
        stem = tmp_path / "out" / Path(rel).with_suffix("")
        depth = np.load(f"{stem}.depth.npy")
        assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32 and (depth > 0).all()
        # Same numbers as the library on the decoded file (the jpg is lossy, so decode it again).
        expected = convert_domain(predict(mn_model, read_image(tmp_path / "in" / rel), short_side=None), "depth")
        np.testing.assert_allclose(depth, expected, rtol=1e-5)
        vis = read_image(f"{stem}.vis.png")
        assert vis.shape == rgb.shape
    assert not list((tmp_path / "out").rglob("readme*"))


def test_predict_cli_png16_and_point_cloud(tmp_path, mn_checkpoint):
    rgb = random_rgb(40, 52, 7)
    cv2.imwrite(str(tmp_path / "img.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    rc = predict_main(["--checkpoint", str(mn_checkpoint), "--input", str(tmp_path / "img.png"), "--out", str(tmp_path / "o"),
                       "--domain", "disparity", "--format", "png", "--ply", "--intrinsics", "40", "40", "26", "20",
                       "--device", "cpu"])
    assert rc == 0
    disp = load_png16(tmp_path / "o" / "img.disparity.png")
    assert disp.shape == (40, 52) and (disp > 0).all()
    header, verts = parse_ply(tmp_path / "o" / "img.ply")
    assert len(verts) == 40 * 52 and "property uchar red" in header
    np.testing.assert_array_equal(np.stack([verts["red"], verts["green"], verts["blue"]], 1), rgb.reshape(-1, 3))
    # The cloud's depth is 1 / disparity (up to the 16-bit quantisation of the saved disparity).
    np.testing.assert_allclose(verts["z"].reshape(40, 52), 1.0 / disp, rtol=1e-3)


def test_predict_cli_errors(tmp_path, mn_checkpoint, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    rc = run_main(predict_main, ["--checkpoint", str(mn_checkpoint), "--input", str(tmp_path / "in"),
                                 "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 1 and "broken.jpg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_main(["--checkpoint", str(mn_checkpoint), "--input", str(tmp_path), "--out", str(tmp_path), "--ply"])
    with pytest.raises(SystemExit):
        predict_main(["--official", str(mn_checkpoint), "--input", str(tmp_path), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # no weights named at all
        predict_main([str(tmp_path / "in")])
    with pytest.raises(SystemExit):  # two different inputs
        predict_main(["--checkpoint", str(mn_checkpoint), str(tmp_path), "--input", str(tmp_path / "in")])
    with pytest.raises(SystemExit):  # a mesh needs a camera
        predict_main(["--checkpoint", str(mn_checkpoint), str(tmp_path / "in"), "--mesh"])
    with pytest.raises(DataError, match="broken.jpg"):
        read_image(tmp_path / "in" / "broken.jpg")


def test_predict_cli_official_fixture(tmp_path, shared_dir, official_state):
    """--official with a file in the released layout (the fixture's deterministic fill)."""
    fixture = shared_dir / "fixtures" / "official-lrn4"
    state = official_state("mn_lrn4")
    torch.save(state, tmp_path / "mn_lrn4.pth")
    mn_model = svde.load(tmp_path / "mn_lrn4.pth", model="mn_lrn4")
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = mn_model(x).numpy()
    np.testing.assert_allclose(out, np.load(fixture / "mn_lrn4.out-seed0-128x160.npy"), atol=1e-4)
    cv2.imwrite(str(tmp_path / "p.png"), random_rgb(30, 30))
    assert predict_main(["--official", str(tmp_path / "mn_lrn4.pth"), "--model", "mn_lrn4", "--input",
                         str(tmp_path / "p.png"), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    assert np.load(tmp_path / "o" / "p.log_disparity.npy").shape == (30, 30)



def parse_mesh_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (x, y, z, r, g, b records) and faces (M, 3) of a binary PLY mesh, read independently of write_ply."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert "format binary_little_endian 1.0" in header and "property list uchar int vertex_indices" in header
    n_vert = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    n_face = int(next(line for line in header if line.startswith("element face")).split()[-1])
    vdtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    fdtype = np.dtype([("n", "u1"), ("idx", "<i4", (3,))])
    body = raw[end:]
    assert len(body) == n_vert * vdtype.itemsize + n_face * fdtype.itemsize
    faces = np.frombuffer(body[n_vert * vdtype.itemsize:], dtype=fdtype)
    assert (faces["n"] == 3).all()
    return np.frombuffer(body[:n_vert * vdtype.itemsize], dtype=vdtype), faces["idx"]


def test_predict_cli_mesh_next_to_the_point_cloud(tmp_path, mn_checkpoint, mn_model):
    from svde.geometry import depth_to_mesh

    rgb = random_rgb(32, 48, 8)
    cv2.imwrite(str(tmp_path / "img.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    k = [40.0, 40.0, 24.0, 16.0]
    assert predict_main(["--checkpoint", str(mn_checkpoint), str(tmp_path / "img.png"), "--out", str(tmp_path / "o"),
                         "--short-side", "0", "--ply", "--mesh", "--intrinsics", *map(str, k), "--device", "cpu"]) == 0
    verts, faces = parse_mesh_ply(tmp_path / "o" / "img.mesh.ply")
    _, cloud = parse_ply(tmp_path / "o" / "img.ply")
    depth = convert_domain(predict(mn_model, rgb, short_side=None), "depth")
    expected = depth_to_mesh(depth, k, rgb)
    np.testing.assert_array_equal(faces, expected.faces)  # the library's triangulation, jumps left open
    assert len(faces) > 0 and faces.max() < len(verts)
    for axis in "xyz":  # the mesh's vertices are the point cloud's points
        np.testing.assert_allclose(verts[axis], cloud[axis], rtol=1e-6)
    np.testing.assert_array_equal(np.stack([verts["red"], verts["green"], verts["blue"]], 1), rgb.reshape(-1, 3))


# ---- predict by name: the released weights, from a local server standing in for the release ---------
def test_predict_by_name_uses_the_released_weights(tmp_path, release_server, official_state, capsys):
    from svde.models import load_official_checkpoint

    state = official_state("mn_lrn4")
    release_server.put("mn_lrn4.pth", state)
    rgb = random_rgb(36, 50, 9)
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    # the svde command, positional input and the default output folder (relative to the working directory)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert svde_main(["predict", "--model", "mn_lrn4", "photo.png", "--device", "cpu", "--mesh", "--fov", "60"]) == 0
    expected = predict(load_official_checkpoint(state, "mn_lrn4"), rgb, short_side=384)  # the command's default
    np.testing.assert_allclose(np.load(tmp_path / "predictions" / "photo.log_disparity.npy"), expected, atol=1e-5)
    assert (tmp_path / "predictions" / "photo.vis.png").is_file() and (tmp_path / "predictions" / "photo.mesh.ply").is_file()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    assert cached.is_file()
    # the scripts' form, with the server gone: the cached file is used
    release_server.close()
    assert predict_main(["--model", "mn_lrn4", "--input", str(tmp_path / "photo.png"), "--out", str(tmp_path / "preds"),
                         "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "preds" / "photo.log_disparity.npy"), expected, atol=1e-5)


def test_predict_by_name_offline_is_one_error_line(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    url = f"http://127.0.0.1:{port}/v1.0"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_WEIGHTS_URL", url)
    cv2.imwrite(str(tmp_path / "photo.png"), random_rgb(20, 20))
    capsys.readouterr()
    rc = svde_main(["predict", "--model", "b5_lrn4", str(tmp_path / "photo.png"), "--out", str(tmp_path / "o"),
                    "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    for fragment in (f"{url}/b5_lrn4.pth", str(tmp_path / "torch" / "hub" / "checkpoints" / "b5_lrn4.pth"),
                     "SVDE_WEIGHTS_URL"):
        assert fragment in line
    assert not list((tmp_path / "o").iterdir())  # nothing predicted


# Every public name svde 0.1's svde/inference.py defined (git show 4b03a2e:svde/inference.py), and
# network_size, which it imported from its home; not its command-line helpers (now svde.cli.common).
INFERENCE_0_1 = {
    "STRIDE", "DOMAINS", "IMAGE_EXTENSIONS", "ExportError", "load_depth_model", "preprocess", "predict",
    "convert_domain", "list_images", "colorize", "write_rgb", "save_png16", "load_png16", "intrinsics_from_fov",
    "backproject", "write_ply", "export_onnx", "export_torchscript", "EXPORTERS", "export_model", "count_parameters",
    "count_macs", "measure_latency", "AMP_DTYPES", "benchmark_model", "markdown_table", "network_size",
}


def test_the_0_1_inference_module_serves_its_names_each_with_a_deprecation_warning():
    import svde.inference as old
    from svde.geometry import point_cloud
    from test_architecture import REPO as ROOT, import_graph

    assert set(old.__all__) == INFERENCE_0_1
    for name in INFERENCE_0_1:
        with pytest.warns(DeprecationWarning, match=r"svde.inference is deprecated \(removal in svde 0.4\): use svde\."):
            getattr(old, name)
    with pytest.warns(DeprecationWarning, match="use svde.geometry.point_cloud"):
        assert old.backproject is point_cloud
    with pytest.raises(AttributeError):
        old.add_model_arguments  # noqa: B018 (a command-line helper: svde.cli.common)
    imported = import_graph()["svde.inference"]  # function-level imports included
    code = (ROOT / "svde/inference.py").read_text().split('"""', 2)[2]  # after the module docstring
    assert imported and not any(m.startswith("svde.cli") for m in imported) and "svde.cli" not in code
    with pytest.warns(DeprecationWarning):
        net = old.load_depth_model(model="mn_lrn4", device="auto")  # 0.1: a name alone, random weights; "auto" too
    assert net.name == "mn_lrn4" and not net.training
    with pytest.warns(DeprecationWarning):
        x = old.preprocess(np.zeros((50, 70, 3), np.uint8), (64, 64))
    assert tuple(x.shape) == (1, 3, 64, 64)


# ---- folders: the photos only, each once, however often the command runs ----------------------------
def _photo_folder(folder: Path) -> set[str]:
    """Photos (colour, and a greyscale one) next to what is not a photo; returns the photos' stems."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "a.jpg"), random_rgb(40, 56, 10))
    cv2.imwrite(str(folder / "b.png"), random_rgb(36, 48, 11))
    cv2.imwrite(str(folder / "grey.png"), random_rgb(36, 48, 12)[:, :, 0])  # a greyscale photo: many values
    depth16 = np.random.default_rng(13).integers(0, 65536, (36, 48), dtype=np.uint16)
    cv2.imwrite(str(folder / "depth16.png"), depth16)  # a 16-bit depth map
    cv2.imwrite(str(folder / "mask.png"), np.where(random_rgb(36, 48, 14)[:, :, 0] > 127, 255, 0).astype(np.uint8))
    from PIL import Image

    Image.fromarray(np.eye(32, dtype=bool)).save(folder / "mask1bit.png")  # a 1-bit mask
    (folder / "notes.txt").write_text("not an image")
    return {"a", "b", "grey"}


def _predicted(out: str) -> set[str]:
    """The stems of the ``INPUT -> OUT.*`` lines the command printed."""
    return {Path(line.split(" -> ")[0]).stem for line in out.splitlines() if " -> " in line}


def test_predict_folder_twice_into_a_subfolder_predicts_each_photo_once(tmp_path, mn_checkpoint, capsys):
    """The issue's acceptance: ``svde predict DIR --out DIR/preds`` run twice predicts each photo once
    and skips a 16-bit PNG (and masks), with one note per kind of skipped file."""
    photos = _photo_folder(tmp_path / "dir")
    argv = ["predict", "--checkpoint", str(mn_checkpoint), str(tmp_path / "dir"), "--out", str(tmp_path / "dir" / "preds"),
            "--short-side", "0", "--device", "cpu"]
    for _ in range(2):
        assert svde_main(argv) == 0
        out, err = capsys.readouterr()
        assert _predicted(out) == photos and out.count(" -> ") == len(photos)
        notes = [line for line in err.splitlines() if line.startswith("note:")]
        assert "note: skipping 3 images that are not photos (1-bit or 2-valued masks, 16-bit or float single-channel " \
               "depth maps)" in notes
        assert "note: skipping 1 file that is not an image (extensions: .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, " \
               ".ppm, .pgm, .pnm)" in notes
        assert f"note: not searching the output folder {tmp_path / 'dir' / 'preds'}" in notes
        assert len(notes) == 3 and "depth16.png" not in err and "mask.png" not in err  # counts, not a line per file
    written = sorted(p.relative_to(tmp_path / "dir" / "preds").as_posix() for p in (tmp_path / "dir" / "preds").rglob("*"))
    assert written == sorted(f"{s}.{kind}" for s in photos for kind in ("log_disparity.npy", "vis.png"))
    # --recursive never descends into the output folder either
    assert svde_main([*argv, "--recursive"]) == 0
    out, err = capsys.readouterr()
    assert _predicted(out) == photos and "not searching the output folder" in err
    assert not list((tmp_path / "dir" / "preds").rglob("preds")) and not list(tmp_path.rglob("*.vis.vis.png"))


def test_predict_folder_twice_into_itself_skips_its_own_outputs(tmp_path, mn_checkpoint, capsys):
    photos = _photo_folder(tmp_path / "dir")
    argv = ["predict", "--checkpoint", str(mn_checkpoint), str(tmp_path / "dir"), "--out", str(tmp_path / "dir"),
            "--format", "png", "--ply", "--fov", "60", "--short-side", "0", "--device", "cpu"]
    assert svde_main(argv) == 0
    assert _predicted(capsys.readouterr().out) == photos
    before = sorted(p.name for p in (tmp_path / "dir").iterdir())
    assert svde_main(argv) == 0
    out, err = capsys.readouterr()
    assert _predicted(out) == photos  # not a.vis, not a.log_disparity: those are svde's
    # per photo: .log_disparity.png + its .json sidecar, .vis.png, .ply
    assert f"note: skipping {4 * len(photos)} files svde predict writes" in err
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == before  # nothing new: no .vis.vis.png


def test_predict_folder_is_not_searched_recursively_unless_asked(tmp_path, mn_checkpoint, capsys):
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "dir" / "sub" / "nested.png"), random_rgb(32, 32, 15))
    argv = ["predict", "--checkpoint", str(mn_checkpoint), str(tmp_path / "dir"), "--out", str(tmp_path / "o"),
            "--short-side", "0", "--device", "cpu"]
    assert svde_main(argv) == 2  # no photos in the folder itself: one error line with the way out
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "no images to predict there" in line and "1 subfolder not searched: add --recursive" in line
    cv2.imwrite(str(tmp_path / "dir" / "top.png"), random_rgb(32, 32, 16))
    assert svde_main(argv) == 0
    out, err = capsys.readouterr()
    assert _predicted(out) == {"top"} and "note: 1 subfolder not searched (--recursive searches them)" in err
    assert svde_main([*argv, "--recursive"]) == 0
    assert _predicted(capsys.readouterr().out) == {"top", "nested"}
    assert (tmp_path / "o" / "sub" / "nested.log_disparity.npy").is_file()


def test_a_named_file_is_predicted_whatever_it_holds(tmp_path, mn_checkpoint):
    _photo_folder(tmp_path)
    assert predict_main(["--checkpoint", str(mn_checkpoint), str(tmp_path / "depth16.png"), "--out", str(tmp_path / "o"),
                         "--short-side", "0", "--device", "cpu"]) == 0
    assert (tmp_path / "o" / "depth16.log_disparity.npy").is_file()


@pytest.mark.parametrize("cmap", ["magma", "viridis", "tab10"])
def test_colorize_is_matplotlibs_colour_map(cmap):
    """svde.viz.colorize looks colours up in a cached table: the very values matplotlib's colour map
    gives for the same scaled input (NaN and masked pixels black, inverted too)."""
    import matplotlib

    from svde.viz import colorize

    values = np.random.default_rng(1).standard_normal((37, 53))
    values[::5, ::3] = np.nan
    lo, hi = np.nanpercentile(values, (2, 98))
    for invert in (False, True):
        scaled = np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0, 1)
        scaled = 1 - scaled if invert else scaled
        expected = (matplotlib.colormaps[cmap](scaled)[..., :3] * 255).round().astype(np.uint8)
        expected[np.isnan(values)] = 0
        assert np.array_equal(colorize(values, cmap=cmap, invert=invert), expected)
