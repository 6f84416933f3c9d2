"""ONNX / TorchScript export (svde.models.export and the export command, svde.cli.export) with parity against PyTorch."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from svde.cli.common import run_main
from svde.cli.export import main as export_main
from svde.models.export import ExportError, export_onnx, export_torchscript
from svde.models import MODELS, build_model
from svde.models.precision import agreement, calibration_inputs


def reference(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_onnx_static_export_cli(tmp_path, mn_checkpoint, mn_model, capsys):
    out = tmp_path / "m.onnx"
    assert export_main(["--checkpoint", str(mn_checkpoint), "--format", "onnx", "--out", str(out),
                        "--height", "64", "--width", "96"]) == 0
    assert "max abs difference" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["svde_model"] == "mn_lrn4" and meta["output"] == "log_disparity" and meta["svde_precision"] == "fp32"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 96)).astype(np.float32)
    assert [i.name for i in session.get_inputs()] == ["image"]  # the names the README documents
    assert [o.name for o in session.get_outputs()] == ["log_disparity"]
    got = session.run(None, {"image": x})[0]
    assert got.shape == (1, 1, 64, 96)
    assert np.abs(got - reference(mn_model, x)).max() <= 1e-4
    # A static export is fixed to its size.
    with pytest.raises(Exception):
        session.run(None, {"image": np.zeros((1, 3, 96, 96), np.float32)})


def test_onnx_dynamic_export_accepts_other_sizes(tmp_path, mn_model):
    out = tmp_path / "dyn.onnx"
    diff = export_onnx(mn_model, out, height=64, width=64, dynamic=True)
    assert 0 <= diff <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(2, 3, 96, 160)).astype(np.float32)
    got = session.run(None, {"image": x})[0]
    assert got.shape == (2, 1, 96, 160)
    assert np.abs(got - reference(mn_model, x)).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_cli(tmp_path, mn_checkpoint, mn_model):
    out = tmp_path / "m.ts"
    assert export_main(["--checkpoint", str(mn_checkpoint), "--format", "torchscript", "--out", str(out),
                        "--height", "64", "--width", "64", "--dynamic"]) == 0
    loaded = torch.jit.load(str(out))
    x = np.random.default_rng(2).normal(size=(1, 3, 96, 128)).astype(np.float32)
    with torch.no_grad():
        got = loaded(torch.from_numpy(x)).numpy()
    assert np.abs(got - reference(mn_model, x)).max() <= 1e-4


class SizeDependent(nn.Module):
    """Python control flow on the input size: tracing bakes in the branch taken at export."""

    name = "size_dependent"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * (2.0 if x.shape[-1] > 64 else 1.0)


@pytest.mark.parametrize("exporter", [export_onnx, export_torchscript])
def test_parity_failure_writes_nothing(tmp_path, exporter):
    out = tmp_path / "bad.model"
    with pytest.raises(ExportError, match="max abs difference"):
        exporter(SizeDependent().eval(), out, height=64, width=64, dynamic=True)
    assert not out.exists() and not list(tmp_path.iterdir())
    # At the export size alone the traced graph is right.
    assert exporter(SizeDependent().eval(), out, height=64, width=64) <= 1e-4 and out.exists()


def test_export_argument_errors(tmp_path, mn_checkpoint):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_main(["--checkpoint", str(mn_checkpoint), "--out", str(tmp_path / "x.onnx"), "--height", "50"])
    with pytest.raises(SystemExit):
        export_main(["--official", str(mn_checkpoint), "--out", str(tmp_path / "x.onnx")])
    with pytest.raises(ValueError, match="opset"):
        export_onnx(build_model("mn_lrn4").eval(), tmp_path / "x.onnx", 64, 64, opset=13)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_model_exports(tmp_path, name, fmt):
    assert export_main(["--random-weights", "--model", name, "--format", fmt, "--out", str(tmp_path / f"{name}.{fmt}"),
                        "--height", "64", "--width", "96", "--dynamic"]) == 0


def test_export_by_name_uses_the_released_weights(tmp_path, release_server, official_state):
    from svde.models import load_official_checkpoint

    state = official_state("mn_lrn4")
    release_server.put("mn_lrn4.pth", state)
    assert export_main(["--model", "mn_lrn4", "--out", str(tmp_path / "m.onnx"), "--height", "64", "--width", "64"]) == 0
    x = np.random.default_rng(2).normal(size=(1, 3, 64, 64)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        ["log_disparity"], {"image": x})[0]
    assert np.abs(got - reference(load_official_checkpoint(state, "mn_lrn4"), x)).max() <= 1e-4


def test_readme_onnxruntime_example_runs(tmp_path, mn_model, monkeypatch):
    """README.md's 'Running the ONNX file' snippet, on an exported file: the documented names, input rule and output."""
    import re

    import cv2

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "onnxruntime" in b]
    assert len(snippet.strip().splitlines()) <= 5
    export_onnx(mn_model, tmp_path / "mn.onnx", height=64, width=64, dynamic=True)
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(snippet, namespace)
    x, log_disp = namespace["x"], namespace["log_disp"]
    assert x.shape == (1, 3, 384, 512) and x.dtype == np.float32 and log_disp.shape == (384, 512)
    from svde.preprocess import prepare_input

    # the snippet's tensor is svde's own input (same bilinear resize, same normalisation)
    np.testing.assert_allclose(x, prepare_input(namespace["rgb"], size=(384, 512)).numpy(), atol=1e-4)
    assert np.abs(log_disp - reference(mn_model, x)[0, 0]).max() <= 1e-4


# ---- --precision int8 (svde.models.precision.export_int8; a tiny model's test: tests/test_precision.py) ----
@pytest.mark.slow  # mn_lrn4: export, calibration and quantization take 10-20 s
def test_int8_export_cli_on_a_checkpoint(tmp_path, mn_checkpoint, mn_model, capsys):
    out = tmp_path / "mn.int8.onnx"
    assert export_main(["--checkpoint", str(mn_checkpoint), "--precision", "int8", "--out", str(out),
                        "--height", "64", "--width", "64", "--calibration-count", "2"]) == 0
    printed = capsys.readouterr().out
    assert "onnx int8" in printed and "delta1" in printed and "abs-rel" in printed
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    delta1, abs_rel = float(meta["svde_int8_delta1"]), float(meta["svde_int8_abs_rel"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = calibration_inputs(None, 1, 64, 64, split="test")[0]
    got = agreement(reference(mn_model, x), session.run(["log_disparity"], {"image": x})[0])
    assert got["delta1"] >= delta1 - 2.0 and got["abs_rel"] <= 2.0 * abs_rel + 0.01


def test_export_precision_errors(tmp_path, mn_checkpoint, capsys):
    base = ["--checkpoint", str(mn_checkpoint), "--out", str(tmp_path / "m.onnx"), "--height", "64", "--width", "64"]
    assert run_main(export_main, base + ["--precision", "bf16"]) == 2
    assert "setting of the runtime" in capsys.readouterr().err
    assert run_main(export_main, base + ["--precision", "int8", "--format", "torchscript"]) == 2
    assert "ONNX file" in capsys.readouterr().err
    assert run_main(export_main, base + ["--calibration", str(tmp_path)]) == 2
    assert "for --precision int8" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
