"""Issue 22 ("Reliability 3"), item 5 and the evaluation parts of 6: ``svde eval`` goes on past an
image it cannot read (writes the results of the others, names the unreadable one, exits 1;
``--strict`` stops at the first), a dataset's error inside a DataLoader worker is its own one
line, and a model with NaN weights is one ``error:`` line (exit 1) in ``svde eval`` and
``svde paper-table``, not a ``ValueError`` traceback."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from svde.cli.common import run_main
from svde.cli.eval import main as eval_main
from svde.cli.paper_table import main as paper_table_main
from svde.data.registry import build_dataset
from svde.evaluation import evaluate_model
from svde.models import build_model

BAD = 2  # the truncated image of the folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An rgbd_folder of 4 samples (48x64); ``rgb/2.png`` is truncated."""
    root = tmp_path / "office"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        ok, png = cv2.imencode(".png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        data = png.tobytes()
        (root / "rgb" / f"{i}.png").write_bytes(data[: len(data) // 2] if i == BAD else data)
        np.save(root / "depth" / f"{i}.npy", rng.uniform(1, 5, (48, 64)).astype(np.float32))
    return root


def svde(main, argv: list, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_main(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def eval_args(checkpoint: Path, folder: Path, out: Path, *extra) -> list:
    return ["--checkpoint", checkpoint, "--datasets", "office", "--root", f"office={folder}", "--out", out,
            "--device", "cpu", "--no-progress", "--short-side", "64", *extra]


@pytest.fixture
def office_config(tmp_path: Path, folder: Path) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps({"datasets": {"office": {"type": "rgbd_folder", "root": str(folder)}}}))
    return path


@pytest.mark.parametrize("workers", [0, 1])
def test_eval_goes_on_past_a_corrupt_image_names_it_and_exits_1(tmp_path, folder, office_config, mn_checkpoint,
                                                                capsys, workers):
    out = tmp_path / "results"
    code, stdout, err = svde(eval_main, eval_args(mn_checkpoint, folder, out, "--config", office_config,
                                                  "--num-workers", workers), capsys)
    line = one_error(err)
    bad = folder / "rgb" / f"{BAD}.png"
    assert code == 1, err[-2000:]
    assert line.startswith("error: 1 of 4 images could not be read") and str(bad) in line and "cannot decode" in line
    results = json.loads((out / "results.json").read_text())["results"][0]
    assert (results["n_images"], results["n_skipped"], results["n_unreadable"]) == (3, 0, 1)
    assert results["uts"]["delta1_err"] is not None and results["uts"]["abs_rel"] is not None  # the others
    per_image = list(csv.DictReader((out / "per_image.csv").open()))
    unreadable = [r for r in per_image if r["reason"].startswith("unreadable")]
    assert len(per_image) == 4 * 2 and {r["mode"] for r in unreadable} == {"uts", "utss"}
    assert all(str(bad) in r["file"] for r in unreadable)
    assert "3 evaluated, 0 skipped, 1 unreadable" in stdout and (out / "summary.csv").is_file()


def test_eval_strict_stops_at_the_first_unreadable_image(tmp_path, folder, office_config, mn_checkpoint, capsys):
    out = tmp_path / "results"
    code, _, err = svde(eval_main, eval_args(mn_checkpoint, folder, out, "--config", office_config, "--strict"),
                        capsys)
    assert code == 2 and one_error(err) == f"error: {folder / 'rgb' / f'{BAD}.png'}: cannot decode the image (corrupt " \
                                           "or unsupported format)"
    assert not (out / "results.json").exists()


def test_a_dataset_error_in_an_eval_worker_is_the_datasets_one_line(folder):
    """The library's strict evaluation with a worker process: the dataset's own message, not the worker's traceback."""
    from svde.data.base import DataError

    with pytest.raises(DataError) as caught:
        evaluate_model(build_model("mn_lrn4"), build_dataset("rgbd_folder", folder), protocol="folder", short_side=64,
                       num_workers=1)
    assert str(caught.value) == f"{folder / 'rgb' / f'{BAD}.png'}: cannot decode the image (corrupt or unsupported format)"


@pytest.fixture
def nan_checkpoint(tmp_path: Path, mn_checkpoint: Path) -> Path:
    """``mn_checkpoint`` with NaN in one convolution (written with torch.save: svde refuses to)."""
    payload = torch.load(mn_checkpoint, map_location="cpu", weights_only=True)
    key = next(k for k, v in payload["model"].items() if k.endswith("weight") and v.ndim == 4)
    payload["model"][key] = payload["model"][key] * float("nan")
    path = tmp_path / "nan.pt"
    torch.save(payload, path)
    return path


def test_eval_of_nan_weights_is_one_line_exit_1(tmp_path, nan_checkpoint, capsys):
    code, _, err = svde(eval_main, ["--checkpoint", nan_checkpoint, "--datasets", "synthetic", "--max-images", "2",
                                    "--short-side", "64", "--out", tmp_path / "out", "--device", "cpu", "--no-progress"],
                        capsys)
    line = one_error(err)
    assert code == 1 and "the model's prediction has" in line and "non-finite values" in line
    assert "weights are probably broken" in line


def test_paper_table_of_nan_weights_is_one_line_exit_1(tmp_path, nan_checkpoint, capsys):
    diw = tmp_path / "DIW"
    (diw / "DIW_test").mkdir(parents=True)
    ok, jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    (diw / "DIW_test" / "0.thumb").write_bytes(jpg.tobytes())
    (diw / "DIW_test.csv").write_text("./DIW_test/0.thumb\n10,12,30,40,>,56,40\n")
    code, _, err = svde(paper_table_main, ["--models", "mn_lrn4", "--weights", f"mn_lrn4={nan_checkpoint}",
                                           "--datasets", "diw", "--root", f"diw={diw}", "--out", tmp_path / "pt",
                                           "--device", "cpu", "--no-progress"], capsys)
    assert code == 1 and "non-finite values" in one_error(err)


def test_a_diverged_prediction_beyond_the_alignments_range_is_one_line(tmp_path, mn_checkpoint, capsys):
    """Finite weights, but log-disparities so far apart that the aligned depth overflows float64."""
    payload = torch.load(mn_checkpoint, map_location="cpu", weights_only=True)
    payload["model"]["head.conv.weight"] = payload["model"]["head.conv.weight"] * 1e6
    path = tmp_path / "huge.pt"
    torch.save(payload, path)
    code, _, err = svde(eval_main, ["--checkpoint", path, "--datasets", "synthetic", "--max-images", "1",
                                    "--short-side", "64", "--out", tmp_path / "out", "--device", "cpu", "--no-progress",
                                    "--modes", "uts"], capsys)
    line = one_error(err)
    assert code == 1 and "gives depths that are not finite and > 0 after uts alignment" in line, line
