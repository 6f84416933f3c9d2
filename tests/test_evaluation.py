"""The evaluator over small in-test datasets and fake models, its outputs, and the eval command (svde.cli.eval)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from svde.data.base import IMAGENET_MEAN, IMAGENET_STD, DepthDataset
from svde.evaluation import (
    PROTOCOLS,
    Protocol,
    evaluate_model,
    evaluate_prediction,
    format_table,
    get_protocol,
    write_results,
)

FX = 40.0


def _depth_image(depth: np.ndarray) -> np.ndarray:
    """Encode depth in [1, 10] into the red channel, so a fake model can 'see' it."""
    red = np.round((depth - 1.0) / 9.0 * 255).astype(np.uint8)
    return np.stack([red, np.full_like(red, 128), np.full_like(red, 64)], axis=-1)


def _decoded_depth(red: np.ndarray) -> np.ndarray:
    return (1.0 + 9.0 * red.astype(np.float32) / 255.0).astype(np.float32)


class TinyDataset(DepthDataset):
    """Ramps of depth in [1, 10]; records are (height, width, kind) with kind 'ok', 'empty', 'far'."""

    name = "tiny"

    def __init__(self, records, depth_type="absolute", intrinsics=True):
        self._records, self.depth_type, self._intrinsics = records, depth_type, intrinsics
        super().__init__(root=None)

    def index(self):
        return list(self._records)

    def read(self, record):
        h, w, kind = record
        yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        depth = 1.0 + 9.0 * (0.3 * yy + 0.7 * xx)
        image = _depth_image(depth)
        target = _decoded_depth(image[..., 0])
        if kind == "empty":
            target[:] = 0.0
        elif kind == "far":
            target[:] = 50.0  # beyond every cap of 10 m
        return {"image": image, "target": target, "file": f"tiny/{h}x{w}-{kind}",
                "intrinsics": [FX, FX, w / 2, h / 2] if self._intrinsics else None}


class OrdinalDataset(DepthDataset):
    name = "tiny_ordinal"
    depth_type = "ordinal"

    def __init__(self, pairs_per_image):
        self._pairs = pairs_per_image
        super().__init__(root=None)

    def index(self):
        return list(range(len(self._pairs)))

    def read(self, i):
        h, w = 32, 48
        depth = 1.0 + 9.0 * np.tile(np.linspace(0, 1, w), (h, 1))  # farther to the right
        pairs = self._pairs[i]
        return {"image": _depth_image(depth), "target": np.zeros((h, w), np.float32),
                "pairs": None if pairs is None else np.asarray(pairs, np.float32), "file": f"ordinal/{i}"}


class OracleModel(nn.Module):
    """Reads the depth back from the red channel: log-disparity right up to a scale of 3.

    ``shift`` adds a constant to the *disparity* (a UTSS-style prediction with a wrong shift).
    Records its mode and input sizes at each call.
    """

    def __init__(self, shift: float = 0.0, bad: bool = False):
        super().__init__()
        self.shift, self.bad = shift, bad
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[bool, tuple[int, ...]]] = []

    def forward(self, x):
        self.calls.append((self.training, tuple(x.shape)))
        red = x[:, :1] * float(IMAGENET_STD[0]) + float(IMAGENET_MEAN[0])
        depth = 1.0 + 9.0 * red
        out = torch.log(3.0 / depth + self.shift) + self.dummy
        if self.bad:
            out[:, :, 0, 0] = float("nan")
        return out


def _small(name: str = "synthetic", **kw) -> Protocol:
    # a short side of 64 with 64x96 images makes the resize an exact identity
    return get_protocol(name, short_side=64, **kw)


def test_oracle_scores_zero_in_both_modes_with_geometry():
    ds = TinyDataset([(64, 96, "ok"), (64, 64, "ok")])
    res = evaluate_model(OracleModel(), ds, protocol=_small(), modes=("uts", "utss"))
    assert res["n_images"] == 2 and res["n_skipped"] == 0
    for mode in ("uts", "utss"):
        assert res[mode]["delta1_err"] == 0.0 and res[mode]["delta3_err"] == 0.0
        assert res[mode]["abs_rel"] < 1e-5 and res[mode]["rmse"] < 1e-4
        assert res[mode]["geometry_err"] < 1e-5 and res[mode]["n_geometry"] == 2
    assert res["headline"] == {"metric": "delta1_err", "uts": 0.0, "utss": 0.0}
    assert [r["file"] for r in res["per_image"]] == ["tiny/64x96-ok", "tiny/64x64-ok"]


def test_wrong_shift_shows_in_geometry_and_is_repaired_by_utss_alignment():
    ds = TinyDataset([(64, 96, "ok")])
    res = evaluate_model(OracleModel(shift=1.0), ds, protocol=_small(), modes=("uts", "utss"))
    assert res["uts"]["geometry_err"] > 0.1  # scale-only alignment cannot undo the shift
    assert res["utss"]["geometry_err"] < 1e-4  # fitting the shift (on the ground truth) can
    assert res["uts"]["abs_rel"] > 10 * res["utss"]["abs_rel"]


def test_images_without_valid_pixels_are_skipped_and_counted():
    ds = TinyDataset([(64, 96, "ok"), (64, 96, "empty"), (64, 96, "far")])
    res = evaluate_model(OracleModel(shift=0.1), ds, protocol=_small("nyu"), modes=("uts", "utss"))
    assert res["n_images"] == 1 and res["n_skipped"] == 2
    skipped = [r for r in res["per_image"] if r["skipped"]]
    assert [r["file"] for r in skipped] == ["tiny/64x96-empty", "tiny/64x96-far"]
    assert all("uts" not in r and r["reason"] for r in skipped)
    only = evaluate_model(OracleModel(shift=0.1), TinyDataset([(64, 96, "ok")]), protocol=_small("nyu"))
    assert res["uts"]["abs_rel"] == only["uts"]["abs_rel"]  # not diluted by the skipped images
    none = evaluate_model(OracleModel(), TinyDataset([(64, 96, "empty")]), protocol=_small())
    assert none["n_images"] == 0 and none["uts"]["abs_rel"] is None and none["headline"]["uts"] is None


def test_restores_training_mode_and_batches_same_sizes_only():
    model = OracleModel(shift=0.05).train()
    ds = TinyDataset([(64, 96, "ok"), (64, 64, "ok"), (64, 96, "ok")])
    res3 = evaluate_model(model, ds, protocol=_small(), batch_size=3)
    assert model.training
    assert all(not training for training, _ in model.calls)
    assert sorted(shape for _, shape in model.calls) == [(1, 3, 64, 64), (2, 3, 64, 96)]
    res1 = evaluate_model(OracleModel(shift=0.05), ds, protocol=_small(), batch_size=1)
    assert res1["uts"] == pytest.approx(res3["uts"])
    model.eval()
    evaluate_model(model, ds, protocol=_small(), max_images=1)
    assert not model.training and model.calls[-1][1] == (1, 3, 64, 96)


def test_input_is_resized_per_protocol_and_prediction_back_to_gt():
    model = OracleModel()
    ds = TinyDataset([(75, 250, "ok")])
    res = evaluate_model(model, ds, protocol="kitti")
    # shorter side 75 -> 384; 250 * 384 / 75 = 1280 (a multiple of 32)
    assert model.calls[0][1] == (1, 3, 384, 1280)
    assert res["per_image"][0]["n_valid"] > 0
    # the resize round trip is not exact, but close for a smooth ramp
    assert res["uts"]["delta1_err"] == 0.0 and res["uts"]["abs_rel"] < 0.01
    assert PROTOCOLS["sintel"].input_size(436, 1024) == (384, 896)
    assert PROTOCOLS["nyu"].input_size(480, 640) == (384, 512)
    assert get_protocol("nyu", short_side=100).input_size(480, 640) == (96, 128)


def test_protocol_masks():
    gt = torch.full((20, 30), 5.0)
    ones = torch.ones_like(gt, dtype=torch.bool)
    nyu = PROTOCOLS["nyu"].valid_mask(gt, ones)  # the border crop is a crop of the sample, not a mask
    assert bool(nyu.all())
    cropped = PROTOCOLS["nyu"].crop_sample({"target": gt[None], "mask": ones[None], "image": torch.zeros(3, 20, 30)})
    assert tuple(cropped["target"].shape) == (1, 4, 14) and tuple(cropped["image"].shape) == (3, 4, 14)
    kitti = PROTOCOLS["kitti"].valid_mask(gt, ones)
    assert not kitti[:8].any() and kitti[8:19, 1:28].all() and not kitti[19].any()
    sintel = PROTOCOLS["sintel"]
    capped = torch.tensor([[71.9, 72.0, 0.0, 80.0]])
    assert sintel.valid_mask(capped, torch.ones_like(capped, dtype=torch.bool)).tolist() == [[True, False, False, False]]
    eth = PROTOCOLS["eth3d"].valid_mask(capped, torch.ones_like(capped, dtype=torch.bool))
    assert eth.tolist() == [[True, False, False, False]]  # exclusive for every dataset (authors' get_mask)
    with pytest.raises(KeyError, match="valid protocols"):
        get_protocol("nyuv3")
    with pytest.raises(ValueError, match="headline"):
        Protocol("x", "rmse")


def test_ordinal_whdr_and_skips():
    # depth grows to the right: A=(0, 40) is farther than B=(0, 2)
    pairs = [[[0, 40, 0, 2, 1]], [[0, 40, 0, 2, -1]], None]
    res = evaluate_model(OracleModel(), OrdinalDataset(pairs), protocol=_small("diw"), modes=("uts", "utss"))
    assert [r.get("uts", {}).get("whdr") for r in res["per_image"]] == [0.0, 1.0, None]
    assert res["n_images"] == 2 and res["n_skipped"] == 1
    assert res["uts"]["whdr"] == 0.5 and res["headline"] == {"metric": "whdr", "uts": 0.5, "utss": 0.5}
    with pytest.raises(ValueError, match="ordinal/0.*outside"):
        evaluate_model(OracleModel(), OrdinalDataset([[[0, 99, 0, 2, 1]]]), protocol=_small("diw"))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="tiny/64x96-ok.*non-finite"):
        evaluate_model(OracleModel(bad=True), TinyDataset([(64, 96, "ok")]), protocol=_small())
    with pytest.raises(ValueError, match="depth_type 'utss'"):
        evaluate_model(OracleModel(), TinyDataset([(64, 96, "ok")], depth_type="utss"), protocol=_small())
    with pytest.raises(ValueError, match="modes"):
        evaluate_model(OracleModel(), TinyDataset([(64, 96, "ok")]), modes=("ssi",))


def test_disparity_predictions_of_utss_models():
    gt = 2.0 ** torch.linspace(0, 3, 16).reshape(4, 4)  # 16 valid pixels: more than the 10 needed
    sample = {"target": gt[None], "mask": (gt > 0)[None], "depth_type": "absolute", "meta": {"file": "m"}}
    midas_like = 5.0 / gt - 2.0  # right up to scale and shift, negative in places
    rec = evaluate_prediction(midas_like, sample, "tum", modes=("utss",), prediction="disparity")
    assert rec["utss"]["delta1_err"] == 0.0 and rec["utss"]["abs_rel"] < 1e-6
    with pytest.raises(ValueError, match="m: UTS mode needs a positive disparity"):
        evaluate_prediction(midas_like, sample, "tum", modes=("uts",), prediction="disparity")
    rec = evaluate_prediction(3.0 / gt, sample, "tum", modes=("uts",), prediction="disparity")
    assert rec["uts"]["abs_rel"] < 1e-6
    with pytest.raises(ValueError, match="prediction must be one of"):
        evaluate_prediction(3.0 / gt, sample, "tum", prediction="depth")


def test_model_output_shape_is_checked():
    class Flat(nn.Module):
        def forward(self, x):
            return x[:, 0]

    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*got \(1, 64, 96\)"):
        evaluate_model(Flat(), TinyDataset([(64, 96, "ok")]), protocol=_small())


def test_no_intrinsics_means_no_geometry():
    res = evaluate_model(OracleModel(), TinyDataset([(64, 96, "ok")], intrinsics=False), protocol=_small())
    assert res["uts"]["geometry_err"] is None and res["uts"]["n_geometry"] == 0
    assert "geometry_err" not in res["per_image"][0]["uts"]


def test_evaluate_prediction_folder_protocol_without_cap():
    gt = 2.0 ** torch.linspace(0, 3, 16).reshape(4, 4)
    sample = {"target": gt[None], "mask": (gt > 0)[None], "depth_type": "uts", "meta": {"file": "f"}}
    rec = evaluate_prediction(torch.log(1.0 / gt + 0.2), sample, "rgbd_folder", modes=("utss",))
    assert rec["utss"]["abs_rel"] < 1e-6 and not rec["skipped"]


def test_outputs_json_csv_and_table(tmp_path):
    res = [evaluate_model(OracleModel(shift=0.1), TinyDataset([(64, 96, "ok"), (64, 96, "empty")]),
                          protocol=_small("nyu"), modes=("uts", "utss")),
           evaluate_model(OracleModel(), OrdinalDataset([[[0, 40, 0, 2, 1]]]), protocol=_small("diw"))]
    paths = write_results(res, tmp_path / "out", run_info={"model": "oracle"})
    data = json.loads(paths["json"].read_text())
    assert data["run"] == {"model": "oracle"}
    assert data["results"][0]["protocol"]["border_crop"] == 8 and data["results"][0]["n_skipped"] == 1
    summary = list(csv.DictReader(paths["summary"].open()))
    assert [(r["dataset"], r["mode"]) for r in summary] == [("tiny", "uts"), ("tiny", "utss"), ("tiny_ordinal", "uts")]
    assert float(summary[0]["delta1_err (%)"]) == pytest.approx(100 * res[0]["uts"]["delta1_err"])  # the table's units
    assert float(summary[0]["abs_rel"]) == pytest.approx(res[0]["uts"]["abs_rel"])
    per_image = list(csv.DictReader(paths["per_image"].open()))
    assert len(per_image) == 2 * 2 + 1 and per_image[1]["skipped"] == "False" and per_image[2]["skipped"] == "True"
    table = format_table(res)
    assert f"{100 * res[0]['uts']['delta1_err']:.2f}" in table and "| tiny_ordinal | uts | 1 | 0 | whdr (%) | 0.00 |" in table
    assert "8-px border crop" in table and "< 10 m" in table and "<= 10 m" not in table
    assert "<= 10 valid pixels skipped" in table
    assert not any(math.isnan(float(v)) for r in summary for k, v in r.items() if v and k not in
                   ("dataset", "protocol", "mode", "headline_metric"))


# ---- the eval command (svde eval, scripts/eval.py) ----------------------------------------------
def _script():
    import svde.cli.eval

    return svde.cli.eval


def _evaluate(argv):
    """The results of ``svde eval argv`` (one dict per dataset), as it writes them."""
    script = _script()
    return script.evaluate(script.parse_args(argv))


def test_script_dataset_entries_and_errors(tmp_path):
    from svde.evaluation import EvalEntry

    script = _script()
    cfg = tmp_path / "roots.yaml"
    cfg.write_text("datasets:\n  nyu: /data/nyu\n  office: {type: rgbd_folder, root: /data/office, depth_cap: 10}\n")
    entries = script.dataset_entries(["nyu", "office", "synthetic"], ["nyu=/elsewhere/nyu"], cfg)
    assert all(isinstance(e, EvalEntry) for e in entries.values())
    assert entries["nyu"].root == "/elsewhere/nyu" and entries["nyu"].protocol_for().name == "nyu"
    assert entries["office"].name == "rgbd_folder" and entries["office"].depth_cap == 10
    assert entries["office"].protocol_for().depth_cap == 10
    assert entries["synthetic"].root is None and entries["synthetic"].split == "test"
    assert entries["synthetic"].options == {"length": 100}
    with pytest.raises(ValueError, match="--root kitti=PATH"):
        script.dataset_entries(["kitti"], [], None)
    with pytest.raises(ValueError, match="unknown dataset 'nyu3'.*synthetic"):
        script.dataset_entries(["nyu3"], [], None)
    with pytest.raises(ValueError, match="NAME=PATH"):
        script.dataset_entries(["nyu"], ["/data/nyu"], None)
    cfg.write_text("datasets:\n  nyu: {root: /x, cap: 3}\n")
    with pytest.raises(ValueError, match="unknown keys \\['cap'\\]"):
        script.dataset_entries(["nyu"], [], cfg)
    with pytest.raises(ValueError, match="does not exist"):
        script.dataset_entries(["nyu"], [], tmp_path / "missing.yaml")
    with pytest.raises(SystemExit):
        script.parse_args(["--official", "x.pth", "--datasets", "synthetic"])  # no --model


# ---- end to end over tiny files in each dataset's native format ------------------------------
H, W = 64, 96  # with --short-side 64 the input resize is an identity


def _ramp(h: int = H, w: int = W, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image with the depth in its red channel, the depth in metres that it encodes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    a, b = rng.uniform(0.2, 0.8, 2)
    image = _depth_image(1.0 + 9.0 * (a * yy + b * xx) / (a + b))
    return image, _decoded_depth(image[..., 0])


def _write_rgb(path, image, ext=None):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(ext or path.suffix, np.ascontiguousarray(image[..., ::-1]))
    assert ok
    path.write_bytes(buf.tobytes())


def _write_png16(path, value):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(value).astype(np.uint16))


@pytest.fixture(scope="module")
def native_roots(tmp_path_factory):
    """One tiny copy of every evaluation set in its own layout; returns name -> root."""
    import h5py
    import scipy.io

    base = tmp_path_factory.mktemp("native")
    roots = {}
    # NYUv2 labeled: MATLAB v7.3 (HDF5, column-major: h5py sees (N, 3, W, H) and (N, W, H)) + splits.mat
    nyu = base / "nyu"
    nyu.mkdir()
    frames = [_ramp(seed=s) for s in range(3)]
    depths = np.stack([d for _, d in frames])
    depths[2] = 0.0  # a test frame without any valid depth: skipped and counted
    with h5py.File(nyu / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = np.stack([im.transpose(2, 1, 0) for im, _ in frames])
        f["rawDepths"] = depths.transpose(0, 2, 1)
    scipy.io.savemat(nyu / "splits.mat", {"testNdxs": np.array([[1], [3]]), "trainNdxs": np.array([[2]])})
    roots["nyu"] = nyu
    # TUM subset of Li et al.: *.h5 with /gt/img_1 and /gt/gt_depth
    tum = base / "tum"
    tum.mkdir()
    for s in range(2):
        image, depth = _ramp(seed=10 + s)
        with h5py.File(tum / f"{s:05d}.h5", "w") as f:
            f["gt/img_1"] = image.astype(np.float32) / 255.0
            f["gt/gt_depth"] = depth
    roots["tum"] = tum
    # KITTI folder layout: rgb/*.png + depth/*.png (uint16, metres * 256) + test_annotations.json
    kitti = base / "kitti"
    files = []
    for s in range(2):
        image, depth = _ramp(seed=20 + s)
        depth[: H // 2] = 0.0  # annotated depth covers the lower image only
        _write_rgb(kitti / "rgb" / f"{s:010d}.png", image)
        _write_png16(kitti / "depth" / f"{s:010d}.png", depth * 256)
        files.append({"rgb": f"rgb/{s:010d}.png", "cam_in": [70.0, 70.0, W / 2, H / 2]})
    (kitti / "test_annotations.json").write_text(json.dumps({"files": files}))
    roots["kitti"] = kitti
    # Sintel: final/<scene>/frame_XXXX.png + depth/<scene>/frame_XXXX.dpt (+ camdata_left .cam)
    sintel = base / "sintel"
    for s in range(2):
        image, depth = _ramp(seed=30 + s)
        depth[:, :8] = 72.0  # excluded: Sintel keeps depth < 72 only
        depth[:, 8:16] = 500.0
        _write_rgb(sintel / "final" / "alley_1" / f"frame_{s + 1:04d}.png", image)
        dpt = sintel / "depth" / "alley_1" / f"frame_{s + 1:04d}.dpt"
        dpt.parent.mkdir(parents=True, exist_ok=True)
        dpt.write_bytes(np.float32(202021.25).tobytes() + np.array([W, H], "<i4").tobytes() + depth.astype("<f4").tobytes())
        cam = sintel / "camdata_left" / "alley_1" / f"frame_{s + 1:04d}.cam"
        cam.parent.mkdir(parents=True, exist_ok=True)
        k = np.array([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
        cam.write_bytes(np.float32(202021.25).tobytes() + np.concatenate([k.ravel(), np.eye(3, 4).ravel()]).astype("<f8").tobytes())
    roots["sintel"] = sintel
    # DIW: DIW_test.csv (image line, then 'yA,xA,yB,xB,>|<,w,h', 1-based) + JPEG .thumb images
    diw = base / "diw"
    lines = []
    for s, rel in enumerate((">", "<")):
        image, _ = _ramp(seed=40 + s)
        _write_rgb(diw / "DIW_test" / f"{s}.thumb", image, ext=".jpg")
        # the ramp grows to the bottom right: (60, 90) is farther than (3, 3)
        lines += [f"./DIW_test/{s}.thumb", f"60,90,3,3,{rel},{W},{H}"]
    (diw / "DIW_test.csv").write_text("\n".join(lines) + "\n")
    roots["diw"] = diw
    # ETH3D: <scene>/images_out/dslr_images_undistorted/*.JPG + depth/dslr_images_undistorted/*.png (mm)
    eth = base / "eth3d"
    image, depth = _ramp(seed=50)
    _write_rgb(eth / "courtyard" / "images_out" / "dslr_images_undistorted" / "DSC_0001.JPG", image, ext=".jpg")
    _write_png16(eth / "courtyard" / "depth" / "dslr_images_undistorted" / "DSC_0001.png", depth * 1000)
    roots["eth3d"] = eth
    return roots


@pytest.mark.parametrize("name", ["nyu", "tum", "kitti", "sintel", "eth3d"])
def test_oracle_through_native_formats(native_roots, name):
    from svde.data import build_dataset

    ds = build_dataset(name, native_roots[name])
    res = evaluate_model(OracleModel(), ds, protocol=get_protocol(name, short_side=64), modes=("uts", "utss"))
    assert res["n_images"] >= 1
    for mode in ("uts", "utss"):
        # lossless formats decode to the very depth the image encodes; the JPEG ones nearly
        assert res[mode]["delta1_err"] == 0.0, (name, mode, res[mode])
        assert res[mode]["abs_rel"] < (0.03 if name == "eth3d" else 0.002)
    if name in ("nyu", "tum", "kitti", "sintel"):
        assert res["uts"]["n_geometry"] == res["n_images"] and res["uts"]["geometry_err"] < 0.01


def test_native_protocol_details(native_roots):
    from svde.data import build_dataset

    def run(name):
        return evaluate_model(OracleModel(), build_dataset(name, native_roots[name]),
                              protocol=get_protocol(name, short_side=64))

    nyu = run("nyu")  # test frames 1 and 3; frame 3 has no valid depth
    assert (nyu["n_images"], nyu["n_skipped"]) == (1, 1)
    assert nyu["per_image"][0]["n_valid"] == (H - 16) * (W - 16)  # 8-pixel border crop
    sintel = run("sintel")
    assert all(r["n_valid"] == H * (W - 16) for r in sintel["per_image"])  # >= 72 excluded
    kitti = run("kitti")
    rows = range(int(0.40810811 * H), int(0.99189189 * H))
    cols = range(int(0.03594771 * W), int(0.96405229 * W))
    assert all(r["n_valid"] == len([y for y in rows if y >= H // 2]) * len(cols) for r in kitti["per_image"])
    diw = run("diw")
    assert [r["uts"]["whdr"] for r in diw["per_image"]] == [0.0, 1.0] and diw["uts"]["whdr"] == 0.5


@pytest.fixture(scope="module")
def net():
    """One small real network for the tests that run the whole pipeline (built once: CPU time)."""
    from svde.models import build_model

    return build_model("mn_lrn4").eval()


def test_script_end_to_end_every_format(native_roots, net, tmp_path, capsys):
    from svde.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "x.pt", net)
    names = ["nyu", "tum", "kitti", "sintel", "diw", "eth3d", "synthetic"]
    cfg = tmp_path / "datasets.yaml"  # synthetic needs no root: only its size here
    cfg.write_text("datasets:\n  synthetic: {options: {length: 2, height: 48, width: 64}}\n")
    argv = ["--checkpoint", str(ckpt), "--datasets", *names, "--short-side", "32", "--batch-size", "4",
            "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress", "--config", str(cfg)]
    for name in names[:-1]:
        argv += ["--root", f"{name}={native_roots[name]}"]
    results = _evaluate(argv)
    table = capsys.readouterr().out
    assert [r["dataset"] for r in results] == names
    assert results[-1]["n_images"] == 2 and results[-1]["uts"]["n_geometry"] == 2  # synthetic has intrinsics
    for res in results:
        assert res["n_images"] >= 1
        for mode in ("uts", "utss"):
            value = res[mode][res["headline"]["metric"]]
            assert value is not None and math.isfinite(value)
            assert f"| {res['dataset']} | {mode} | {res['n_images']} | {res['n_skipped']} |" in table
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["run"]["model"] == "mn_lrn4" and [r["protocol"]["name"] for r in data["results"]] == names
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert len(rows) == 2 * len(names)
    assert "Garg crop" in table and "< 72 m" in table and "WHDR" in table


def test_script_table_defines_its_metrics_and_counts_only_what_it_ran(net, tmp_path, capsys):
    from svde.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "x.pt", net)
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text("datasets:\n  synthetic: {options: {length: 3, height: 32, width: 64}}\n")
    (res,) = _evaluate(["--checkpoint", str(ckpt), "--datasets", "synthetic", "--config", str(cfg), "--max-images", "2",
                        "--short-side", "32", "--modes", "uts", "--device", "cpu", "--out", str(tmp_path / "out"),
                        "--no-progress"])
    table = capsys.readouterr().out
    assert res["n_images"] + res["n_skipped"] == 2
    for metric in ("delta1_err", "abs_rel", "log10", "rmse", "geometry_err", "whdr"):
        assert f"\n- {metric}: " in table  # every printed column is defined under the table
    assert f"- synthetic: ran the first 2 of 3 (--max-images; not the full set) images: {res['n_images']} evaluated" in table
    # the table and the CSV show delta1_err in the same units (%), and the footer says so
    (row,) = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    shown = next(line for line in table.splitlines() if line.startswith("| synthetic | uts |")).split(" | ")[5]
    assert row["headline_metric"] == "delta1_err (%)" and float(shown) == pytest.approx(float(row["headline"]), abs=0.006)
    assert "in the table and in summary.csv and per_image.csv alike" in table
    assert (tmp_path / "out" / "results.md").read_text().strip() in table


def test_script_missing_root_layout_errors(net, tmp_path):
    from svde.data.base import DataError
    from svde.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "x.pt", net)
    (tmp_path / "nyu").mkdir()
    with pytest.raises(DataError, match="nyu_depth_v2_labeled.mat"):
        _script().main(["--checkpoint", str(ckpt), "--datasets", "nyu", "--root", f"nyu={tmp_path / 'nyu'}",
                     "--out", str(tmp_path / "out"), "--no-progress"])


# ---- the real frames in ../shared/data/real ------------------------------------------------------
def _real_case(name, real, tmp_path):
    """(dataset, protocol name, {image path: (raw depth file, units per metre)}) for one real-frame set."""
    from svde.data import build_dataset

    if name == "nyu_sync":
        root = real / "nyuv2"
        ds = build_dataset("nyu_sync", root)
        depth = {str(p): (root / "depth" / f"sync_depth_{p.stem[4:]}.png", 1000.0) for p in (root / "rgb").glob("*.jpg")}
        return ds, "nyu", depth
    if name == "kitti":
        root = real / "kitti"
        ds = build_dataset("kitti", root)  # intrinsics from test_annotations.json
        return ds, "kitti", {str(p): (root / "depth" / p.name, 256.0) for p in (root / "rgb").glob("*.png")}
    # TUM RGB-D frames of two Kinects: a generic folder dataset with each sequence's calibration
    root = real / "tum"
    seq, frames, k = {"tum_fr2": ("fr2", [("1.png", "1_depth.png"), ("2.png", "2_depth.png")], [520.9, 521.0, 325.1, 249.7]),
                      "tum_fr3": ("fr3_office", [("TUM_color.png", "TUM_depth.png")], [535.4, 539.2, 320.1, 247.6])}[name]
    listing = tmp_path / f"{name}.txt"
    listing.write_text("".join(f"{root / seq / a} {root / seq / b}\n" for a, b in frames))
    ds = build_dataset("rgbd_folder", root, list_file=listing, depth_scale=5000.0, intrinsics=k)
    return ds, "tum", {str(root / seq / a): (root / seq / b, 5000.0) for a, b in frames}


@pytest.mark.parametrize("name", ["nyu_sync", "kitti", "tum_fr2", "tum_fr3"])
def test_real_frames_end_to_end(shared_dir, net, tmp_path, name):
    import cv2

    real = shared_dir / "data" / "real"
    if not real.is_dir():
        pytest.skip(f"{real} not found")
    ds, protocol_name, depth_files = _real_case(name, real, tmp_path)
    protocol = get_protocol(protocol_name)
    n = len(depth_files)
    assert len(ds) == n > 0
    # the network path: every frame evaluated, metrics finite, geometry from the known intrinsics
    res = evaluate_model(net, ds, protocol=get_protocol(protocol_name, short_side=64),
                         modes=("uts", "utss"), batch_size=2)
    assert (res["n_images"], res["n_skipped"]) == (n, 0)
    for mode in ("uts", "utss"):
        assert all(math.isfinite(res[mode][k]) for k in ("delta1_err", "abs_rel", "rmse", "geometry_err"))
        assert res[mode]["n_geometry"] == n
    for i, rec in enumerate(res["per_image"]):
        sample = ds[i]
        # the valid pixels are exactly the raw file's non-zero depths under the cap and the crop
        path, units = depth_files[rec["file"]]
        raw = torch.from_numpy(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) / units)
        b = protocol.border_crop
        raw = raw[b:raw.shape[0] - b, b:raw.shape[1] - b]
        assert rec["n_valid"] == int(protocol.valid_mask(raw, raw > 0).sum()) > 1000
        # a prediction equal to the ground truth up to scale scores 0; with a wrong shift it bends
        # (a prediction of the cropped frame, at its resolution: nothing to upsample)
        gt = protocol.crop_sample(sample)["target"][0]
        exact = torch.where(gt > 0, -torch.log(gt * 2.5), torch.zeros_like(gt))
        good = evaluate_prediction(exact, sample, protocol, modes=("uts",))["uts"]
        assert good["delta1_err"] == 0.0 and good["abs_rel"] < 1e-5 and good["geometry_err"] < 1e-5
        wrong = 2.0 * float(torch.median(1.0 / gt[gt > 0]))  # a shift twice the typical disparity
        shifted = torch.where(gt > 0, torch.log(1.0 / gt + wrong), torch.zeros_like(gt))
        bent = evaluate_prediction(shifted, sample, protocol, modes=("uts", "utss"))
        assert bent["uts"]["geometry_err"] > 0.05 and bent["utss"]["geometry_err"] < 1e-3
