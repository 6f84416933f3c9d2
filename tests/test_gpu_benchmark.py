"""benchmarks/gpu.py runs end to end in its quick mode on the CPU, so that it works the first time
it meets a GPU: inference rows next to the paper's P40 FPS, svde's training step with a paper
config's settings, the real training loader with N workers, and its JSON and Markdown results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_on_cpu_writes_json_and_markdown(tmp_path, capsys):
    gpu = load_script()
    assert gpu.main(["--device", "cpu", "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    result = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert result["mode"] == "quick" and result["environment"]["device"] == "cpu"
    rows = result["inference"]
    assert {r["variant"] for r in rows} == {"fp32 NCHW", "fp32 channels-last", "bf16 autocast", "fp16 autocast"}
    assert {r["batch"] for r in rows} == {1, 2} and all(r["paper_p40_fps"] == 135 for r in rows)
    assert all(r["fps"] > 0 for r in rows if "skipped" not in r) and sum("fps" in r for r in rows) >= 6
    (train,) = result["training"]
    assert train["model"] == "mn_lrn4" and train["optimizer"] == "ranger" and train["samples_per_s"] > 0
    assert [(r["workers"], r["colour_on"], r["warp_on"]) for r in result["loader"]] == [
        (w, *places) for w in (0, 1) for places in (("workers", "workers"), ("device", "workers"), ("device", "device"))]
    assert all(0.0 <= r["gpu_idle_fraction"] <= 1.0 and r["samples_per_s"] > 0 for r in result["loader"])
    table = (tmp_path / "gpu_benchmark.md").read_text()
    assert "| mn_lrn4 | 135 |" in table and "GPU idle fraction" in table and "samples/s" in table
    assert "| 1 | device | device |" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_benchmark.json", "gpu_benchmark.md"]  # no temporaries
    assert "written:" in capsys.readouterr().out


def test_paper_fps_and_full_settings():
    gpu = load_script()
    # Romanov et al. 2020, Table 3 (384x384, Tesla P40), for every model svde builds
    assert gpu.PAPER_P40_FPS == {"mn_lrn4": 135, "lite0_lrn4": 127, "b0_lrn4": 82, "b1_lrn4": 63, "b2_lrn4": 62,
                                 "b3_lrn4": 57, "b4_lrn4": 47, "b5_lrn4": 40}
    from svde.models import MODELS

    assert set(gpu.PAPER_P40_FPS) == set(MODELS)
    args = gpu.argparse.Namespace(quick=False, models=None, workers=None)
    full = gpu.settings(args)
    assert full["models"] == list(MODELS) and full["batches"] == (1, 16) and full["size"] == (384, 384)
    assert full["train_models"] == ["mn_lrn4", "b5_lrn4"] and "compiled fp32" in full["variants"]
    cfg = gpu.paper_config("b5_lrn4", "cpu", None, None)
    assert (cfg.data.batch_size, cfg.data.height, cfg.data.width) == (16, 384, 512)  # the paper config's
    assert cfg.model.encoder_weights is None and cfg.data.train[0].name == "synthetic"


def test_compiled_rows_wait_for_the_time_budget():
    gpu = load_script()
    opts = {"models": ["mn_lrn4"], "batches": (1,), "size": (32, 32), "warmup": 0, "repeats": 1,
            "variants": ["compiled fp32"]}
    (row,) = gpu.inference(opts, "cpu", deadline=0.0)  # the deadline has passed: nothing is compiled
    assert row["skipped"] == "time budget" and "fps" not in row
    table = gpu.markdown({"mode": "quick", "seconds": 1.0, "inference": [row], "training": [], "loader": [],
                          "environment": {"device_name": "cpu", "torch": "x", "cpu_count": 1, "load_average": 0}})
    assert "skipped (time budget)" in table


@pytest.mark.parametrize("value, digits, text", [(None, 1, "-"), (3.14159, 2, "3.14"), (7, 1, "7")])
def test_format(value, digits, text):
    assert load_script()._fmt(value, digits) == text
