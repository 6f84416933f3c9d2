"""Bad input to the commands (issue 13): one ``error:`` line, exit 2, no traceback, nothing done.

Each case runs a command's ``main`` (``svde.cli.<name>``) through :func:`svde.cli.common.run_main`,
exactly as ``scripts/<name>.py`` and the ``svde`` command do; a few run the real command lines in
a subprocess. "Nothing done" is checked by replacing the command's work function with one that
fails the test.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from svde.cli.common import run_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scripts():
    """The command modules (their globals can be patched)."""
    return {name: importlib.import_module(f"svde.cli.{name}") for name in ("eval", "predict", "export", "benchmark")}


def run(scripts, name, argv, capsys):
    """(exit status, stdout, stderr) of ``svde <name> argv``."""
    capsys.readouterr()
    rc = run_main(scripts[name].main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error(err: str, *fragments: str) -> str:
    """Exactly one ``error:`` line, no traceback, naming every fragment; returns the line."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def forbid(monkeypatch, module, *names):
    """Replace the module's work functions: reaching them means validation came too late."""
    def fail(*_args, **_kwargs):
        raise AssertionError("work started before the arguments were validated")

    for name in names:
        monkeypatch.setattr(module, name, fail)


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    return folder


@pytest.fixture
def truncated_checkpoint(tmp_path, mn_checkpoint):
    path = tmp_path / "truncated.pt"
    path.write_bytes(mn_checkpoint.read_bytes()[:4096])
    return path


def model_args(name, checkpoint):
    return [] if name == "benchmark" else ["--checkpoint", checkpoint]


def script_args(name, tmp_path, image_dir):
    """Arguments that make each script valid apart from the one under test."""
    return {
        "eval": ["--datasets", "synthetic", "--out", tmp_path / "eval_out", "--no-progress", "--device", "cpu"],
        "predict": ["--input", image_dir, "--out", tmp_path / "pred_out", "--device", "cpu"],
        "export": ["--out", tmp_path / "m.onnx", "--height", "64", "--width", "64"],
        "benchmark": ["--models", "mn_lrn4", "--height", "64", "--width", "64", "--repeats", "1", "--warmup", "0"],
    }[name]


# ---- checkpoints --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["eval", "predict", "export"])
def test_missing_checkpoint(scripts, name, tmp_path, image_dir, capsys):
    missing = tmp_path / "nope.pt"
    rc, _, err = run(scripts, name, ["--checkpoint", missing, *script_args(name, tmp_path, image_dir)], capsys)
    assert rc == 2
    assert_one_error(err, str(missing), "does not exist")


@pytest.mark.parametrize("name", ["eval", "predict", "export"])
def test_truncated_checkpoint(scripts, name, tmp_path, image_dir, truncated_checkpoint, capsys):
    rc, _, err = run(scripts, name, ["--checkpoint", truncated_checkpoint, *script_args(name, tmp_path, image_dir)], capsys)
    assert rc == 2
    assert_one_error(err, str(truncated_checkpoint), "truncated")


def test_debug_shows_the_traceback(scripts, tmp_path, image_dir):
    from svde.models import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        run_main(scripts["predict"].main, ["--checkpoint", str(tmp_path / "nope.pt"), "--input", str(image_dir),
                                           "--out", str(tmp_path / "o"), "--debug"])


# ---- values checked before any work -------------------------------------------------------------
@pytest.mark.parametrize("camera, fragment", [
    (["--fov", "0"], "--fov"),
    (["--fov", "180"], "--fov"),
    (["--fov", "nan"], "--fov"),
    (["--intrinsics", "0", "40", "20", "12"], "--intrinsics"),
    (["--intrinsics", "40", "40", "inf", "12"], "--intrinsics"),
])
def test_predict_camera_checked_before_inference(scripts, monkeypatch, camera, fragment, tmp_path, image_dir,
                                                 mn_checkpoint, capsys):
    forbid(monkeypatch, scripts["predict"], "load_network", "predict")
    rc, _, err = run(scripts, "predict", [*model_args("predict", mn_checkpoint), *script_args("predict", tmp_path, image_dir),
                                          "--ply", *camera], capsys)
    assert rc == 2
    assert_one_error(err, fragment)
    assert not (tmp_path / "pred_out").exists()


@pytest.mark.parametrize("name", ["eval", "predict", "benchmark"])
def test_cuda_without_cuda(scripts, name, monkeypatch, tmp_path, image_dir, mn_checkpoint, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    forbid(monkeypatch, scripts[name], *{"eval": ["evaluate_entry"], "predict": ["predict"],
                                         "benchmark": ["benchmark_model"]}[name])
    rc, _, err = run(scripts, name, [*model_args(name, mn_checkpoint), *script_args(name, tmp_path, image_dir),
                                     "--device", "cuda"], capsys)
    assert rc == 2
    assert_one_error(err, "device 'cuda'", "CUDA is not available")


def test_unknown_device_name(scripts, tmp_path, image_dir, mn_checkpoint, capsys):
    rc, _, err = run(scripts, "predict", [*model_args("predict", mn_checkpoint),
                                          *script_args("predict", tmp_path, image_dir), "--device", "tpu"], capsys)
    assert rc == 2
    assert_one_error(err, "'tpu'", "expected one of auto, cpu, cuda")


@pytest.mark.parametrize("name, option", [("export", "--batch"), ("benchmark", "--batch"), ("eval", "--batch-size"),
                                          ("eval", "--max-images"), ("benchmark", "--repeats")])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_counts_must_be_positive(scripts, monkeypatch, name, option, value, tmp_path, image_dir, mn_checkpoint, capsys):
    forbid(monkeypatch, scripts[name], *{"eval": ["evaluate_entry", "load_network"], "export": ["load_network"],
                                         "benchmark": ["benchmark_model"]}[name])
    rc, _, err = run(scripts, name, [*model_args(name, mn_checkpoint), *script_args(name, tmp_path, image_dir),
                                     option, value], capsys)
    assert rc == 2
    assert_one_error(err, option, ">= 1", value)


@pytest.mark.parametrize("name", ["export", "benchmark"])
@pytest.mark.parametrize("size", [("--height", "50"), ("--width", "100"), ("--height", "0")])
def test_sizes_must_be_multiples_of_32(scripts, monkeypatch, name, size, tmp_path, image_dir, mn_checkpoint, capsys):
    forbid(monkeypatch, scripts[name], "load_network" if name == "export" else "benchmark_model")
    rc, _, err = run(scripts, name, [*model_args(name, mn_checkpoint), *script_args(name, tmp_path, image_dir), *size],
                     capsys)
    assert rc == 2
    assert_one_error(err, "multiples of 32", size[1])


@pytest.mark.parametrize("name", ["eval", "predict", "export"])
def test_unwritable_out(scripts, monkeypatch, name, tmp_path, image_dir, mn_checkpoint, capsys):
    # A path below a regular file can never be created (a read-only folder would not do: tests may run as root).
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / ("m.onnx" if name == "export" else "out")
    argv = script_args(name, tmp_path, image_dir)
    argv[argv.index("--out") + 1] = out
    forbid(monkeypatch, scripts[name], "load_network", *(["evaluate_entry"] if name == "eval" else []))
    rc, _, err = run(scripts, name, ["--checkpoint", mn_checkpoint, *argv], capsys)
    assert rc == 2
    assert_one_error(err, str(blocker), "cannot write")


# ---- eval's datasets: all checked (and built) before the first image ---------------------------
def eval_with_config(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys, config: str, datasets=("synthetic",)):
    forbid(monkeypatch, scripts["eval"], "evaluate_entry")
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(config)
    return run(scripts, "eval", ["--checkpoint", mn_checkpoint, "--datasets", *datasets, "--config", cfg,
                                 "--out", tmp_path / "out", "--device", "cpu", "--no-progress"], capsys)


def test_eval_misspelt_dataset_option(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys):
    rc, _, err = eval_with_config(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys,
                                  "datasets:\n  synthetic: {options: {lenght: 4}}\n")
    assert rc == 2
    assert_one_error(err, "datasets.yaml", "synthetic", "'lenght'", "did you mean 'length'")


def test_eval_unknown_protocol(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys):
    rc, _, err = eval_with_config(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys,
                                  "datasets:\n  synthetic: {protocol: nyuu, options: {length: 2}}\n")
    assert rc == 2
    assert_one_error(err, "datasets.yaml", "unknown protocol 'nyuu'", "valid: synthetic, nyu")


def test_eval_unknown_dataset(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys):
    rc, _, err = eval_with_config(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys, "datasets: {}\n",
                                  datasets=("synthetic", "nyuu"))
    assert rc == 2
    assert_one_error(err, "unknown dataset 'nyuu'", "synthetic")


def test_eval_invalid_yaml(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys):
    rc, _, err = eval_with_config(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys, "datasets: [unclosed\n")
    assert rc == 2
    assert_one_error(err, "datasets.yaml", "not valid YAML")


def test_eval_builds_every_dataset_before_evaluating(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys):
    # The first dataset is fine; the second's root lacks its files: nothing may be evaluated first.
    (tmp_path / "nyu").mkdir()
    rc, _, err = eval_with_config(scripts, monkeypatch, tmp_path, mn_checkpoint, capsys,
                                  f"datasets:\n  synthetic: {{options: {{length: 2}}}}\n  nyu: {tmp_path / 'nyu'}\n",
                                  datasets=("synthetic", "nyu"))
    assert rc == 2
    assert_one_error(err, "nyu_depth_v2_labeled.mat")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing written


def test_eval_writes_results_atomically(scripts, tmp_path, mn_checkpoint, capsys):
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text("datasets:\n  synthetic: {options: {length: 2, height: 32, width: 64}}\n")
    rc, out, _ = run(scripts, "eval", ["--checkpoint", mn_checkpoint, "--datasets", "synthetic", "--config", cfg,
                                       "--out", tmp_path / "out", "--device", "cpu", "--no-progress", "--modes", "uts",
                                       "--short-side", "32"], capsys)
    assert rc == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["per_image.csv", "results.json", "results.md", "summary.csv"]  # no temporaries left
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| synthetic | uts | 2 |" in table and table.strip() in out


# ---- predict goes on past unreadable images --------------------------------------------------------
def test_predict_goes_on_past_unreadable_images(scripts, tmp_path, image_dir, mn_checkpoint, capsys):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (image_dir / "empty.png").write_bytes(b"")
    rc, out, err = run(scripts, "predict", ["--checkpoint", mn_checkpoint, "--input", image_dir, "--short-side", "0",
                                            "--out", tmp_path / "o", "--device", "cpu"], capsys)
    assert rc == 1
    line = assert_one_error(err, "2 of 4 images", str(image_dir / "broken.jpg"), str(image_dir / "empty.png"))
    assert "a.png" not in line
    for stem in ("a", "b"):  # the readable ones were all written, in full
        pred = np.load(tmp_path / "o" / f"{stem}.log_disparity.npy")
        assert pred.shape == (24, 40) and np.isfinite(pred).all()
        assert (tmp_path / "o" / f"{stem}.vis.png").is_file()
    assert not list((tmp_path / "o").glob("broken*")) and not list((tmp_path / "o").glob(".*.tmp"))


def test_predict_input_without_images(scripts, tmp_path, mn_checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(scripts, "predict", ["--checkpoint", mn_checkpoint, "--input", tmp_path / "empty",
                                          "--out", tmp_path / "o", "--device", "cpu"], capsys)
    assert rc == 2
    assert_one_error(err, str(tmp_path / "empty"), "no images")


# ---- the real command lines: each scripts/<name>.py wrapper ----------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


SLOW = pytest.mark.slow  # each starts a Python that imports torch; one script's wiring is checked in the fast suite


@pytest.mark.parametrize("name, argv, fragment", [
    ("predict", ["--checkpoint", "{tmp}/m.pt", "--input", "{tmp}", "--out", "{tmp}/o", "--ply", "--fov", "0"], "--fov"),
    pytest.param("eval", ["--checkpoint", "{tmp}/nope.pt", "--datasets", "synthetic", "--out", "{tmp}/o"],
                 "does not exist", marks=SLOW),
    pytest.param("export", ["--random-weights", "--model", "mn_lrn4", "--out", "{tmp}/m.onnx", "--height", "50"],
                 "multiples of 32", marks=SLOW),
    pytest.param("benchmark", ["--batch", "0"], "--batch", marks=SLOW),
    pytest.param("paper_table", ["--models", "b9_lrn4", "--random-weights"], "b9_lrn4", marks=SLOW),
    pytest.param("train", ["--config", "{tmp}/missing.yaml"], "missing.yaml", marks=SLOW),
])
def test_command_line_prints_one_error_line(name, argv, fragment, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *argv], capture_output=True, text=True,
                          env=_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [assert_one_error(proc.stderr, fragment)]


# ---- safe loading and staying offline --------------------------------------------------------------
class _Payload:
    """Unpickling this creates a marker file: stands for arbitrary code in a crafted pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_crafted_imagenet_cache_file_is_refused_not_run(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    from svde.models import build_model
    from svde.models.pretrained import PretrainedWeightsUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(MobileNet_V2_Weights.IMAGENET1K_V1.url)
    cached.parent.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    torch.save({"features.0.0.weight": torch.zeros(1), "evil": _Payload(marker)}, cached)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        build_model("mn_lrn4", encoder_weights="imagenet")
    assert not marker.exists()
    message = str(info.value)
    assert str(cached) in message and "refused" in message and "weights_only=False" not in message
    # The file really is malicious: unsafe unpickling would have run the payload.
    torch.load(cached, weights_only=False)
    assert marker.exists()


def test_truncated_imagenet_cache_file_is_named(tmp_path, monkeypatch):
    from svde.models.pretrained import PretrainedWeightsUnavailable, load_tensors

    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(PretrainedWeightsUnavailable, match="truncated or not a PyTorch file"):
        load_tensors(path, "test weights")


def test_importing_svde_disables_the_albumentations_update_check():
    # A finder that records the variable at the moment albumentations starts importing.
    code = """
import importlib.abc, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "albumentations":
            seen.append(os.environ.get("NO_ALBUMENTATIONS_UPDATE"))
        return None
sys.meta_path.insert(0, Watch())
import svde.data
from svde.data.transforms import build_train_transform
build_train_transform(64, 64)
import albumentations
print(os.environ.get("NO_ALBUMENTATIONS_UPDATE"), seen[:1])
"""
    env = {k: v for k, v in _env().items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "['1']"]
