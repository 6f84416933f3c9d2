"""Issue 22 ("Reliability 3"), item 3: every file svde writes gets the mode a plain ``open`` gives,
``0666 & ~umask`` (0644 under umask 022; folders 0755), not mkstemp's owner-only 0600: train, eval,
predict, export, prepare-stereo, save_pretrained and the downloads (svde.atomic.atomic_path)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from svde import atomic
from svde.cli.main import main as svde_main

from test_train import tiny_raw  # tests/ is on sys.path (pytest rootdir-relative imports)


@pytest.fixture
def umask022():
    """The usual umask of a shared server, for the test only (os.umask is process-wide)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def assert_readable_by_all(*paths: Path) -> int:
    """Every file under ``paths`` is 0644 and every folder 0755; returns how many files there were."""
    files, wrong = 0, []
    for root in paths:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            mode = stat.S_IMODE(path.stat().st_mode)
            files += path.is_file()
            if mode != (0o755 if path.is_dir() else 0o644):
                wrong.append(f"{path.relative_to(root.parent)}: {oct(mode)}")
    assert not wrong, wrong
    return files


def photo(path: Path, height: int = 40, width: int = 52) -> Path:
    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), rgb)
    return path


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert atomic.current_umask() == 0o022 and atomic.default_file_mode() == 0o644
        for mask, expected in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
            os.umask(mask)
            path = atomic.write_text(tmp_path / f"{mask:o}.txt", "x")
            assert stat.S_IMODE(path.stat().st_mode) == expected, (oct(mask), oct(path.stat().st_mode))
            with atomic.atomic_path(tmp_path / f"{mask:o}.pt") as tmp:
                torch.save({"a": torch.zeros(1)}, tmp)  # a writer that opens the name itself
            assert stat.S_IMODE((tmp_path / f"{mask:o}.pt").stat().st_mode) == expected
        os.umask(0o022)
        with atomic.atomic_path(tmp_path / "secret", mode=0o600) as tmp:
            tmp.write_text("token")
        assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_train_run_folder(tmp_path, umask022):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(train={"steps": 2, "checkpoint_every": 2})))
    run = tmp_path / "run"
    assert svde_main(["train", "--config", str(config), "--out", str(run)]) == 0
    assert (run / "last.pt").is_file() and (run / "config.yaml").is_file()
    assert assert_readable_by_all(run) >= 3


def test_eval_predict_and_export_outputs(tmp_path, mn_checkpoint, umask022):
    out = tmp_path / "eval"
    assert svde_main(["eval", "--checkpoint", str(mn_checkpoint), "--datasets", "synthetic", "--max-images", "2",
                      "--short-side", "64", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    preds = tmp_path / "preds"
    assert svde_main(["predict", "--checkpoint", str(mn_checkpoint), str(photo(tmp_path / "photo.png")),
                      "--out", str(preds), "--device", "cpu", "--short-side", "64", "--ply", "--fov", "60"]) == 0
    onnx_file = tmp_path / "exported" / "m.onnx"
    assert svde_main(["export", "--checkpoint", str(mn_checkpoint), "--format", "onnx", "--out", str(onnx_file),
                      "--height", "64", "--width", "64"]) == 0
    assert assert_readable_by_all(out) >= 1 and assert_readable_by_all(preds) >= 3
    assert assert_readable_by_all(onnx_file.parent) >= 1


def test_prepared_stereo_data(tmp_path, umask022):
    from svde.data.io import write_rgb
    from svde.data.stereo.synthetic import synthetic_pair

    pair = synthetic_pair(0, 96, 128)
    write_rgb(tmp_path / "pairs/left/000.png", pair["left"])
    write_rgb(tmp_path / "pairs/right/000.png", pair["right"])
    out = tmp_path / "stereo"
    assert svde_main(["prepare-stereo", str(tmp_path / "pairs"), "--out", str(out), "--no-progress"]) == 0
    # left/, disparity/, mask/, the manifest, and the previews: preview/000.jpg and its contact sheet
    assert assert_readable_by_all(out) == 6


def test_save_pretrained_folder(tmp_path, umask022):
    from svde.models import build_model, save_pretrained

    folder = save_pretrained(build_model("mn_lrn4"), tmp_path / "shared" / "mn")
    assert assert_readable_by_all(folder) == 3


def test_downloaded_files(tmp_path, umask022):
    from svde.download import download_verified

    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "w.bin").write_bytes(b"weights")
    cache = tmp_path / "cache"
    download_verified((tmp_path / "mirror" / "w.bin").as_uri(), cache / "w.bin", verify=lambda path, sha256: None,
                      unavailable=RuntimeError, progress=False)
    assert assert_readable_by_all(cache) == 1


def test_cached_released_weights_and_their_sha256_record(release_server, official_state, tmp_path, umask022):
    from svde.models.released import load_released

    release_server.put("mn_lrn4.pth", official_state("mn_lrn4"))
    load_released("mn_lrn4", progress=False)
    hub = tmp_path / "torch" / "hub"
    assert assert_readable_by_all(hub) == 2  # checkpoints/mn_lrn4.pth and svde-sha256.json
