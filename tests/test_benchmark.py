"""Parameter / multiply-add counting, latency measurement and the benchmark command (svde.cli.benchmark) on tiny inputs."""

import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from svde.cli.benchmark import main as benchmark_main
from svde.errors import UserError
from svde.models.precision import precision_problem
from svde.models.profile import (
    benchmark_model,
    count_macs,
    count_parameters,
    markdown_table,
    measure_latency,
    time_round_robin,
)
from svde.models import build_model


def test_macs_of_a_convolution_match_the_formula():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # Each of the 8 x H x W outputs needs 3 x 3 x 3 multiply-adds.
    assert count_macs(conv, 32, 48) == 8 * 32 * 48 * 3 * 3 * 3


def test_model_macs_scale_with_pixels_and_params_match():
    model = build_model("mn_lrn4").eval()
    small, large = count_macs(model, 64, 64), count_macs(model, 128, 128)
    assert small > 0 and large == pytest.approx(4 * small, rel=0.01)
    # Independent counts: the released mn_lrn4's parameters (tests/test_models.py PARAMS) and a
    # convolution's by hand (8 x 3 x 3 x 3 weights + 8 biases).
    assert count_parameters(model) == 2_419_081
    assert count_parameters(nn.Conv2d(3, 8, kernel_size=3)) == 8 * 3 * 3 * 3 + 8


class CallCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * 2


def test_measure_latency_times_only_the_repeats():
    module = CallCounter()
    times = measure_latency(module, torch.zeros(2, 2), warmup=3, repeats=5)
    assert module.calls == 8 and len(times) == 5 and all(t >= 0 for t in times)
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(module, torch.zeros(1), repeats=0)


def test_benchmark_row_and_table():
    row = benchmark_model("mn_lrn4", height=32, width=64, batch=2, warmup=0, repeats=2)
    assert row["batch"] == 2 and row["amp"] == "fp32" and row["input"] == "32x64" and row["channels_last"]
    assert row["fps"] == pytest.approx(2 * 1000.0 / row["latency_ms"])
    assert row["latency_min_ms"] <= row["latency_ms"]
    assert row["gmacs"] * 1e9 == pytest.approx(count_macs(build_model("mn_lrn4").eval(), 32, 64), abs=1)
    table = markdown_table([row, row]).splitlines()
    assert len(table) == 4 and all(line.count("|") == table[0].count("|") for line in table)
    with pytest.raises(KeyError, match="valid"):
        benchmark_model("mn_lrn4", amp="fp8")


def test_benchmark_autocast_and_nchw_keep_batchnorm_folding():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = benchmark_model("mn_lrn4", height=32, width=32, warmup=0, repeats=1, amp="bf16", channels_last=False)
    assert row["amp"] == "bf16" and not row["channels_last"] and row["latency_ms"] > 0
    # The folded copy is built in fp32 first: its accuracy check must not trip under autocast.
    assert not [w for w in caught if "folding" in str(w.message)]


def test_benchmark_cli_prints_a_table(capsys):
    assert benchmark_main(["--models", "mn_lrn4", "lite0_lrn4", "--height", "64", "--width", "64",
                           "--warmup", "0", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "model" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["mn_lrn4", "lite0_lrn4"]
    params = {r.split("|")[1].strip(): float(r.split("|")[8]) for r in rows}
    assert params["lite0_lrn4"] == pytest.approx(count_parameters(build_model("lite0_lrn4")) / 1e6, abs=0.005)
    with pytest.raises(ValueError, match="multiples of 32"):
        benchmark_main(["--height", "100"])


@pytest.mark.slow
def test_benchmark_compiled():
    row = benchmark_model("mn_lrn4", height=64, width=64, warmup=1, repeats=1, compile=True)
    assert row["compile"] and row["latency_ms"] > 0


class TinyDepth(nn.Module):
    """A stand-in network for the reduced-precision benchmark (quantizing mn_lrn4 takes 10 s)."""

    name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_time_round_robin_alternates_the_calls():
    order: list[str] = []
    times = time_round_robin({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=2)
    assert order == ["a", "b"] * 3 and [len(v) for v in times.values()] == [2, 2]


def test_benchmark_precision_cli_times_int8_against_fp32(capsys, monkeypatch):
    monkeypatch.setattr("svde.models.profile.build_model", lambda name: TinyDepth())
    assert benchmark_main(["--models", "mn_lrn4", "--precision", "int8", "--height", "32", "--width", "32",
                           "--warmup", "0", "--repeats", "2", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "CPU: " in captured.out and "units: " in captured.out and "onnxruntime" in captured.out
    rows = [line.split("|") for line in captured.out.splitlines() if line.startswith("| mn_lrn4")]
    kinds = [(r[2].strip(), r[3].strip()) for r in rows]
    assert kinds[:3] == [("fp32", "pytorch"), ("fp32", "onnxruntime"), ("int8", "onnxruntime")]
    assert rows[0][9].strip() == rows[0][10].strip() == "1.00x" and float(rows[1][12]) < 1e-4  # ORT fp32 == PyTorch
    if precision_problem("int8") is not None:
        assert "warning: int8:" in captured.err


def test_benchmark_precision_errors(monkeypatch):
    with pytest.raises(UserError, match="CPU"):
        benchmark_main(["--precision", "int8", "--device", "cuda"])
    with pytest.raises(UserError, match="--amp"):
        benchmark_main(["--precision", "int8", "--device", "cpu", "--amp", "bf16"])
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(UserError, match=r"pip install 'svde\[openvino\]'"):
        benchmark_main(["--precision", "bf16", "--device", "cpu"])


def test_data_benchmark_prints_old_and_new_side_by_side(capsys):
    """benchmarks/data.py (issue 25): svde 0.2's dataset path (from git, in its own process), the
    albumentations pipeline, the new one with colour in the workers or on the device, and the pure
    decode, in one run."""
    import importlib.util
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("data_benchmark", root / "benchmarks" / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        # a crop within MAX_SOURCE_RATIO of the 480x640 files: the warp rows take the device path
        module.main(["--samples", "2", "--rounds", "1", "--height", "320", "--width", "416"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        if line.startswith(("synthetic ", "rgbd_folder ", "320x416")) and " = " not in line:
            name, *numbers = line.rsplit(None, 3)
            rows[name] = [float(v) for v in numbers]
    f = "rgbd_folder PNG 480x640"
    expected = [f"{f}, decode only (cv2.imdecode x2)", f"{f}, full augmentation, albumentations (legacy=True)",
                f"{f}, full augmentation, new", f"{f}, full augmentation, new, colour on device: worker part",
                f"{f}, full augmentation, new, colour and warp on device: worker part",
                f"{f}, decode only (svde's readers)", f"{f}, full augmentation, new{module.HANDOVER}",
                f"{f}, full augmentation, new, colour and warp on device: worker part{module.HANDOVER}",
                f"{f} -> 320x416: colour and warp on device: the batch part, per sample on this CPU (batch 8)",
                "synthetic 320x416, full augmentation, new",
                "320x416: colour on device: the batch part, per sample on this CPU (batch 8)"]
    has_history = subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{module.SVDE_02}^{{commit}}"],
                                 capture_output=True).returncode == 0
    if has_history:  # a clone with history: the old rows come from svde 0.2 itself
        expected += [f"{f}, full augmentation, svde 0.2 ({module.SVDE_02}, own process)",
                     f"{f}, full augmentation, svde 0.2 ({module.SVDE_02}, own process){module.HANDOVER}",
                     f"synthetic 320x416, full augmentation, svde 0.2 ({module.SVDE_02}, own process)"]
        assert "rgbd_folder: new / svde 0.2 = " in out and f"rgbd_folder{module.HANDOVER}: new / svde 0.2 = " in out
    else:
        assert "note: no svde 0.2 rows: git archive" in out
    for name in expected:
        assert rows[name][1] > 0, name
    assert "rgbd_folder: new / albumentations (legacy=True) = " in out and "time per sample / pure decode" in out
    assert "load average" in out and "note: the 640x480 files are over" not in out
    # svde 0.2 that cannot run leaves its rows out with the reason, and the rest is measured
    try:
        module.main(["--samples", "1", "--rounds", "1", "--height", "64", "--width", "96", "--old-ref", "deadbeef"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "note: no svde 0.2 rows: git archive deadbeef failed" in out and "svde 0.2 (" not in out
    assert "note: the 640x480 files are over 2.5x a 96x64 crop's pixels" in out  # the warp rows fall back there
    assert f"{f}, full augmentation, new" in out


def test_png_benchmark_times_both_decoders_and_checks_pixels(tmp_path, capsys):
    """benchmarks/png.py on a folder of each PNG kind it groups: every group's pixels agree."""
    import importlib.util
    from pathlib import Path

    import cv2

    spec = importlib.util.spec_from_file_location("png_benchmark", Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / "png.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    for sub, array in (("a", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)),
                       ("b", rng.integers(0, 65536, (20, 30), dtype=np.uint16)),
                       ("c", rng.integers(0, 256, (20, 30, 4), dtype=np.uint8))):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "x.png"), array)
    assert module.main([str(tmp_path), "--passes", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("a ", "b ", "c "))]
    assert [r[0] for r in rows] == ["a", "b", "c"] and all(r[-1] == "True" for r in rows)
    assert module.main([str(tmp_path / "none")]) == 2
