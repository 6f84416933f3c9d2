"""``svde prepare-stereo`` previews (svde.data.stereo.preview): a picture per frame (kept: left |
disparity | mask as stored; dropped: left | right), a contact sheet of the first kept and dropped
frames with the reasons, ``--no-preview``; on synthetic pairs and on the shared Middlebury and
Scene Flow pairs."""

from __future__ import annotations

import functools
import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np

from svde.data.io import read_gray, read_image, write_rgb
from svde.data.registry import build_dataset
from svde.data.stereo import preview
from svde.data.stereo.pipeline import process_frame
from svde.viz import colorize
from test_stereo import H, W, cli, write_pairs  # tests/ is on sys.path (pytest rootdir-relative imports)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def pairs_with_two_bad_ones(root: Path) -> None:
    """Synthetic pairs 000..002 (kept), ``mono`` (left = right) and ``shifted`` (right view 4 rows lower)."""
    pairs = write_pairs(root)
    write_rgb(root / "left" / "mono.png", pairs[0]["left"])
    write_rgb(root / "right" / "mono.png", pairs[0]["left"])
    write_rgb(root / "left" / "shifted.png", pairs[1]["left"])
    write_rgb(root / "right" / "shifted.png", np.roll(pairs[1]["right"], 4, axis=0))


def panels(picture: np.ndarray, count: int) -> list[np.ndarray]:
    """The ``count`` panels of a preview (equal widths, :data:`preview.GAP` px apart)."""
    width = (picture.shape[1] - preview.GAP * (count - 1)) // count
    return [picture[:, i * (width + preview.GAP):i * (width + preview.GAP) + width] for i in range(count)]


def test_prepare_writes_a_preview_per_frame_and_a_contact_sheet(tmp_path, capsys):
    pairs_with_two_bad_ones(tmp_path / "pairs")
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    sheet = out / "preview" / "contact_sheet.jpg"
    assert f"previews: {out / 'preview'}/ (contact sheet: {sheet})" in capsys.readouterr().out
    records = {r["name"]: r for r in json.loads((out / "manifest.json").read_text())["frames"]}
    kept = sorted(n for n, r in records.items() if r["status"] == "kept")
    assert kept == ["000", "001", "002"] and records["mono"]["status"] == records["shifted"]["status"] == "dropped"
    assert sorted(p.name for p in (out / "preview").glob("*.jpg")) == ["000.jpg", "001.jpg", "002.jpg",
                                                                       "contact_sheet.jpg"]
    assert sorted(p.name for p in (out / "preview" / "dropped").iterdir()) == ["mono.jpg", "shifted.jpg"]
    for name in kept:  # left | disparity | mask, as stored
        left, colour, mask = panels(read_rgb(out / "preview" / f"{name}.jpg"), 3)
        assert left.shape[0] == preview.PANEL_HEIGHT and abs(left.shape[1] - W * preview.PANEL_HEIGHT / H) <= 2
        size = (left.shape[1], left.shape[0])
        stored = cv2.resize(read_image(out / "left" / f"{name}.png"), size, interpolation=cv2.INTER_LINEAR)
        assert np.abs(left[20:].astype(int) - stored[20:]).mean() < 6  # (the label covers the top rows)
        valid = read_gray(out / "mask" / f"{name}.png") > 0
        assert abs((mask[20:, :, 0] > 127).mean() - valid[H // 8:].mean()) < 0.05
        expected = colorize(np.load(out / "disparity" / f"{name}.npy"), mask=valid)
        expected[~valid] = preview.INVALID_GREY
        expected = cv2.resize(expected, size)
        assert np.abs(colour[20:].astype(int) - expected[20:]).mean() < 12
    left, right = panels(read_rgb(out / "preview" / "dropped" / "mono.jpg"), 2)
    assert np.abs(left[20:].astype(int) - right[20:]).mean() < 6  # the same view twice (JPEG noise aside)
    left, right = panels(read_rgb(out / "preview" / "dropped" / "shifted.jpg"), 2)
    assert np.abs(left[20:].astype(int) - right[20:]).mean() > 10  # two views
    picture = read_rgb(sheet)
    assert picture.shape[1] == preview.SHEET_TILE_WIDTH * 2 + 8 and picture.shape[0] > 300
    # the dataset is untouched: stereo_folder reads left/, disparity/ and mask/ only
    assert len(build_dataset("stereo_folder", str(out))) == 3


def test_contact_sheet_lists_kept_then_dropped_frames_with_their_reasons(tmp_path, monkeypatch):
    pairs_with_two_bad_ones(tmp_path / "pairs")
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out, "--no-preview"]) == 0
    assert not (out / "preview").exists()
    captions = []
    real_caption = preview._caption
    monkeypatch.setattr(preview, "_caption", lambda r, w, n: captions.append((r["name"], r["status"],
                                                                              r.get("reason", ""))) or real_caption(r, w, n))
    sheet = preview.write_contact_sheet(out, frames=2)
    assert [c[:2] for c in captions] == [("000", "kept"), ("001", "kept"), ("mono", "dropped"), ("shifted", "dropped")]
    assert "left equals right" in captions[2][2] and "not rectified" in captions[3][2]
    # kept frames prepared without previews are drawn from their stored files (and kept for next time)
    assert sheet == out / "preview" / "contact_sheet.jpg" and sorted(p.name for p in (out / "preview").glob("0*.jpg")) \
        == ["000.jpg", "001.jpg"]


def test_a_run_that_drops_every_frame_still_shows_them(tmp_path, capsys):
    root = tmp_path / "pairs"
    pair = write_pairs(root, [0])[0]
    write_rgb(root / "right" / "000.png", pair["left"])  # mono
    out = tmp_path / "out"
    assert cli([root, "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: all 1 frames were dropped") and len(err.strip().splitlines()) == 1
    assert err.strip().endswith(f"; contact sheet of the frames and the reasons: {out / 'preview' / 'contact_sheet.jpg'}")
    assert (out / "preview" / "dropped" / "000.jpg").is_file()


def test_frame_previews_pickle_for_the_worker_pool():
    work = functools.partial(preview.previewed, process_frame)
    assert pickle.loads(pickle.dumps(work)).func is preview.previewed


def test_previews_of_the_shared_middlebury_and_scene_flow_pairs(shared_dir, tmp_path):
    """The real pairs of ../shared/data/real/stereo as a pair folder: both kept, each with its preview
    (the motorcycle's disparity panel is mostly valid), and a contact sheet."""
    stereo = shared_dir / "data/real/stereo"
    root = tmp_path / "pairs"
    for name, left, right in (("motorcycle", "middlebury2014_motorcycle/im0.png", "middlebury2014_motorcycle/im1.png"),
                              ("flyingthings", "sceneflow/left.png", "sceneflow/right.png")):
        for side, source in (("left", left), ("right", right)):
            (root / side).mkdir(parents=True, exist_ok=True)
            shutil.copy(stereo / source, root / side / f"{name}.png")
    out = tmp_path / "out"
    assert cli([root, "--out", out, "--num-disparities", "0"]) == 0
    records = {r["name"]: r for r in json.loads((out / "manifest.json").read_text())["frames"]}
    assert {n: r["status"] for n, r in records.items()} == {"motorcycle": "kept", "flyingthings": "kept"}
    for name in records:
        picture = read_rgb(out / "preview" / f"{name}.jpg")
        assert picture.shape[0] == preview.PANEL_HEIGHT
        mask = panels(picture, 3)[2]
        assert abs((mask[20:, :, 0] > 127).mean() - records[name]["kept_fraction"]) < 0.08
    assert (out / "preview" / "contact_sheet.jpg").stat().st_size > 20_000
