"""Reduced precision (svde.models.precision): CPU features, int8 export and runtimes, bf16 via OpenVINO,
and the --precision options of svde predict / export / benchmark. Tiny models and images only."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from svde.cli.common import run_main
from svde.cli.predict import main as predict_main
from svde.errors import UserError
from svde.models import precision
from svde.models.precision import (
    CpuFeatures,
    MissingRuntime,
    agreement,
    calibration_inputs,
    check_inputs,
    cpu_features,
    export_int8,
    precision_problem,
    runtime_model,
)
from svde.models import predict

NO_UNITS = CpuFeatures(avx2=True, avx512=False, avx512_bf16=False, amx_bf16=False, avx512_vnni=False,
                       avx_vnni=False, amx_int8=False)
ALL_UNITS = CpuFeatures(avx2=True, avx512=True, avx512_bf16=True, amx_bf16=False, avx512_vnni=True,
                        avx_vnni=False, amx_int8=False)


class Tiny(nn.Module):
    """A small depth-like network (stride 4) whose log-disparity varies over the image, so that
    quantization error shows."""

    name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return nn.functional.interpolate(2.0 * out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def fp32_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# ---- features and the "does it pay here" rule ---------------------------------------------------
def test_precision_pays_only_with_the_units():
    assert precision_problem("fp32", NO_UNITS) is None
    assert "no bf16 units" in precision_problem("bf16", NO_UNITS)
    assert "no int8 dot-product units" in precision_problem("int8", NO_UNITS)
    assert precision_problem("bf16", ALL_UNITS) is None and precision_problem("int8", ALL_UNITS) is None
    assert "avx2" in NO_UNITS.describe() and "no avx512" in NO_UNITS.describe()
    with pytest.raises(KeyError, match="valid"):
        precision_problem("fp8")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_cpu_features_agree_with_the_kernel_flags():
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    f = cpu_features()
    assert f.avx512_bf16 == ("avx512_bf16" in flags) and f.avx512_vnni == ("avx512_vnni" in flags)
    assert f.bf16 == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_agreement_is_delta1_and_abs_rel_of_depth():
    ref = np.zeros((2, 5))
    assert agreement(ref, ref) == {"delta1": 100.0, "abs_rel": 0.0, "pixels": 10}
    other = ref.copy()
    other[0, :2] = np.log(2.0)  # disparity x2: depth / 2 on 2 of 10 pixels
    got = agreement(ref, other)
    assert got["delta1"] == pytest.approx(80.0) and got["abs_rel"] == pytest.approx(0.5 * 2 / 10)


def test_calibration_images_from_a_folder_or_synthetic_rooms(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8))
    photos = calibration_inputs(tmp_path, count=3, height=32, width=64)
    assert len(photos) == 3 and all(x.shape == (1, 3, 32, 64) and x.dtype == np.float32 for x in photos)
    rooms = calibration_inputs(None, count=2, height=32, width=32)
    held_out = check_inputs(2, 32, 32)
    assert len(rooms) == 2 and not np.allclose(rooms[0], held_out[0])  # never checked on its calibration
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no photos"):
        calibration_inputs(tmp_path / "empty", count=2)


# ---- int8 -----------------------------------------------------------------------------------------
def test_int8_export_of_a_tiny_model_is_qdq_and_matches_fp32(tmp_path):
    model = Tiny().eval()
    out = tmp_path / "tiny.int8.onnx"
    result = export_int8(model, out, height=32, width=64, dynamic=True, count=4, checks=2)
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4 for t in proto.graph.initializer)  # weights
    axes = [a.i for n in proto.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute if a.name == "axis"]
    assert 0 in axes  # per output channel
    # the first convolution and the output's (with what follows it) stay fp32
    fp32_convs = [n for n in proto.graph.node if n.op_type == "Conv" and not n.input[1].endswith("DequantizeLinear_Output")]
    assert len(fp32_convs) == 2
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["svde_precision"] == "int8" and meta["svde_model"] == "tiny"
    assert float(meta["svde_int8_delta1"]) == pytest.approx(result["delta1"], abs=1e-4)
    # It runs in ONNX Runtime and reproduces the agreement measured at export ...
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    pairs = [(fp32_of(model, x), session.run(None, {"image": x})[0]) for x in check_inputs(2, 32, 64)]
    again = precision.pooled_agreement(pairs)
    assert again["delta1"] == pytest.approx(result["delta1"]) and again["abs_rel"] == pytest.approx(result["abs_rel"])
    assert result["abs_rel"] > 0  # int8 really changed the numbers, a little
    assert result["delta1"] >= 95 and result["abs_rel"] < 0.1
    # ... and matches fp32 within that change on an image it never saw (another size: dynamic).
    x = calibration_inputs(None, 1, 64, 96, split="test")[0]
    fresh = agreement(fp32_of(model, x), session.run(None, {"image": x})[0])
    assert fresh["delta1"] >= result["delta1"] - 2.0 and fresh["abs_rel"] <= 2.0 * result["abs_rel"] + 0.01


def test_runtime_model_int8_predicts_like_fp32():
    model = Tiny().eval()
    net = runtime_model(model, "int8", height=32, width=32, count=2)
    assert list(net.parameters()) == []
    if precision.openvino_installed():  # the faster of the two here
        assert set(net.timings) == {"onnxruntime", "openvino"} and net.runtime == min(net.timings, key=net.timings.get)
    else:
        assert net.runtime == "onnxruntime" and net.timings == {}
    rgb = (calibration_inputs(None, 1, 40, 56, split="test")[0][0].transpose(1, 2, 0) * 0.2 + 0.45).clip(0, 1)
    rgb = rgb.astype(np.float32)
    ref, got = predict(model, rgb, short_side=32), predict(net, rgb, short_side=32)
    assert got.shape == ref.shape == (40, 56)
    assert agreement(ref, got)["delta1"] >= 95


# ---- bf16 (OpenVINO, an optional extra) ------------------------------------------------------------
def test_bf16_without_openvino_is_one_error_line(tmp_path, mn_checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingRuntime, match=r"svde\[openvino\]"):
        precision.require_openvino()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert run_main(predict_main, ["--checkpoint", str(mn_checkpoint), str(tmp_path / "a.png"), "--out",
                                   str(tmp_path / "out"), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "pip install 'svde[openvino]'" in err[0]


def test_predict_bf16_is_refused_on_a_cpu_without_bf16_units(tmp_path, mn_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_features", lambda: NO_UNITS)
    monkeypatch.setattr("svde.cli.predict.require_openvino", lambda: None)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert run_main(predict_main, ["--checkpoint", str(mn_checkpoint), str(tmp_path / "a.png"), "--out",
                                   str(tmp_path / "out"), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no bf16 units" in err[0]
    assert not (tmp_path / "out").exists()


def test_predict_precision_argument_errors(tmp_path, mn_checkpoint, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    base = ["--checkpoint", str(mn_checkpoint), str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]
    for extra, message in ((["--precision", "int8", "--device", "cuda"], "runs on the CPU"),
                           (["--calibration", str(tmp_path)], "for --precision int8")):
        with pytest.raises(SystemExit):
            predict_main(base + extra)
        assert message in capsys.readouterr().err


@pytest.mark.slow  # mn_lrn4 exported and quantized: 10 s
def test_predict_int8_cli_writes_what_fp32_writes_within_the_change(tmp_path, mn_checkpoint, capsys):
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    common = ["--checkpoint", str(mn_checkpoint), str(tmp_path / "a.png"), "--short-side", "64", "--no-vis",
              "--threads", "1"]
    assert predict_main(common + ["--out", str(tmp_path / "fp32")]) == 0
    assert predict_main(common + ["--out", str(tmp_path / "int8"), "--precision", "int8"]) == 0
    assert "int8 runs in" in capsys.readouterr().err
    ref, got = (np.load(tmp_path / p / "a.log_disparity.npy") for p in ("fp32", "int8"))
    assert got.shape == ref.shape == (48, 80) and agreement(ref, got)["delta1"] >= 99


def test_bf16_openvino_runs_at_bf16_where_the_cpu_has_units():
    pytest.importorskip("openvino")
    model = Tiny().eval()
    net = runtime_model(model, "bf16", height=32, width=32)
    x = calibration_inputs(None, 1, 64, 96, split="test")[0]  # a new shape: compiled on first use
    got = net(torch.from_numpy(x)).numpy()
    assert agreement(fp32_of(model, x), got)["delta1"] >= 99
    assert net.runner.inference_precision((1, 3, 64, 96)) == ("bf16" if cpu_features().bf16 else "f32")


def test_an_empty_calibration_folder_fails_before_any_export(tmp_path, monkeypatch):
    from svde.errors import UserError
    from svde.models import build_model, precision

    monkeypatch.setattr(precision, "export_onnx", lambda *a, **k: pytest.fail("exported before the check"))
    (tmp_path / "photos").mkdir()
    net = build_model("mn_lrn4").eval()
    for call in (lambda: precision.export_int8(net, tmp_path / "m.onnx", 64, 64, calibration=tmp_path / "photos"),
                 lambda: precision.runtime_model(net, "int8", 64, 64, calibration=tmp_path / "photos"),
                 lambda: precision.runtime_model(net, "int8", 64, 64, runtime="tensorrt")):
        with pytest.raises(UserError):
            call()
