"""Issue 22 ("Reliability 3"), item 7: the stereo data quality guards of ``svde prepare-stereo`` on
small synthetic pairs (svde.data.stereo.synthetic): the rectification check runs on views of 128 px
and less (a 6 px vertical shift, a mono frame passed as side by side) and sees a small rotation; a
check that cannot run drops the frame, with the reason in the manifest and the summary line; a few
wrong-sign pixels do not set a frame's offset; re-sharding an existing --out redoes nothing and
records nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from svde.cli.common import run_main
from svde.cli.prepare_stereo import main as stereo_main
from svde.data.io import read_depth_any, read_gray, write_rgb
from svde.data.stereo.synthetic import synthetic_pair

H, W, BASELINE = 96, 128, 0.1


def cli(args: list) -> int:
    return run_main(stereo_main, [str(a) for a in args] + ["--no-progress"])


def write_pair(root: Path, name: str, left: np.ndarray, right: np.ndarray) -> None:
    write_rgb(root / "left" / f"{name}.png", left)
    write_rgb(root / "right" / f"{name}.png", right)


def frames_of(out: Path, manifest: str = "manifest.json") -> dict[str, dict]:
    return {f["name"]: f for f in json.loads((out / manifest).read_text())["frames"]}


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(image, turn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_small_views_6_px_apart_vertically_are_dropped(tmp_path):
    """128 x 96 views: too small for the old check (fewer than 30 ORB matches: skipped silently)."""
    for room in (0, 2):
        pair = synthetic_pair(room, H, W, BASELINE)
        write_pair(tmp_path / "pairs", f"{room:03d}", pair["left"], pair["right"])
        write_pair(tmp_path / "pairs", f"{room:03d}_low", pair["left"], np.roll(pair["right"], 6, axis=0))
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    frames = frames_of(out)
    for room in ("000", "002"):
        assert frames[f"{room}_low"]["status"] == "dropped", frames[f"{room}_low"]
        assert "views not rectified: median vertical offset +6.0 px" in frames[f"{room}_low"]["reason"]
        assert frames[room]["status"] == "kept" and abs(frames[room]["vertical_offset"]) <= 0.5
        low, high = frames[room]["vertical_range"]
        assert -1 <= low <= high <= 1


def test_a_small_rotation_is_dropped(tmp_path):
    """The right view turned by 1 degree: its median vertical offset is 0, its corners are 1-2 px off."""
    pair = synthetic_pair(1, 2 * H, 2 * W, BASELINE)
    write_pair(tmp_path / "pairs", "000", pair["left"], pair["right"])
    write_pair(tmp_path / "pairs", "001", pair["left"], rotated(pair["right"], 1.0))
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    frames = frames_of(out)
    assert frames["000"]["status"] == "kept"
    assert frames["001"]["status"] == "dropped", frames["001"]
    assert "views not rectified: vertical offset from -" in frames["001"]["reason"]
    assert "rotated or scaled views" in frames["001"]["reason"]


def test_mono_frames_passed_as_side_by_side_are_dropped_and_the_summary_says_why(tmp_path, capsys):
    """A 2D film read as side by side: its halves are two parts of one picture, not two views."""
    video = tmp_path / "mono.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (2 * W, H))
    stereo = synthetic_pair(3, H, W, BASELINE)
    frames = [synthetic_pair(room, H, 2 * W, BASELINE)["left"] for room in (0, 1, 4)]
    frames.append(np.concatenate([stereo["left"], stereo["right"]], axis=1))  # one true stereo frame
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli([video, "--out", out, "--cut-threshold", "0", "--dup-threshold", "0"]) == 0
    records = sorted(frames_of(out).values(), key=lambda r: r["frame_index"])
    assert [r["status"] for r in records] == ["dropped", "dropped", "dropped", "kept"], records
    for rec in records[:3]:
        assert rec["reason"].startswith(("rectification not checked", "views not rectified")), rec["reason"]
    summary = capsys.readouterr().out
    assert "1 frames kept, 3 dropped" in summary and "; dropped: " in summary
    assert ("rectification not checked" in summary) or ("views not rectified" in summary)


def test_a_frame_whose_rectification_cannot_be_checked_is_dropped_with_the_reason(tmp_path, monkeypatch):
    """No point matches (the check cannot run) but pixels the matcher keeps: dropped, not kept unchecked."""
    import svde.data.stereo.matching as matching

    pair = synthetic_pair(0, H, W, BASELINE)
    write_pair(tmp_path / "pairs", "000", pair["left"], pair["right"])
    other = synthetic_pair(1, H, W, BASELINE)
    write_pair(tmp_path / "pairs", "001", other["left"], other["right"])
    real = matching.rectification
    monkeypatch.setattr("svde.data.stereo.pipeline.rectification",
                        lambda left, right: matching.Rectification(0, 0) if np.array_equal(left, pair["left"])
                        else real(left, right))
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    frames = frames_of(out)
    assert frames["001"]["status"] == "kept"
    assert frames["000"]["status"] == "dropped" and frames["000"]["reason"].startswith("rectification not checked")
    assert frames["000"]["kept_fraction"] > 0.5  # the matcher had kept it


def test_a_few_wrong_sign_pixels_do_not_set_the_frames_offset(tmp_path, monkeypatch):
    """87 wrongly matched pixels at -46 px in a frame whose disparities are all positive (6-20 px)."""
    import svde.data.stereo.pipeline as pipeline

    pair = synthetic_pair(0, H, W, BASELINE)
    write_pair(tmp_path / "pairs", "000", pair["left"], pair["right"])
    truth = pair["disparity"].astype(np.float32)
    assert truth.min() >= 1
    wrong = np.zeros(truth.shape, bool)
    wrong.flat[np.random.default_rng(0).choice(truth.size, 87, replace=False)] = True

    def matcher(left, right, *args, **kwargs):
        return np.where(wrong, -46.0, truth).astype(np.float32), np.ones(truth.shape, bool)

    monkeypatch.setattr(pipeline, "estimate_disparity", matcher)
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    rec = frames_of(out)["000"]
    assert rec["status"] == "kept" and rec["stored_offset"] == 0 and rec["low_outliers"] == 87
    mask = read_gray(out / "mask/000.png") > 0
    disp = read_depth_any(out / "disparity/000.npy")
    assert not mask[wrong].any() and mask[~wrong].all()
    np.testing.assert_allclose(disp[mask], truth[mask])
    assert rec["kept_fraction"] == pytest.approx(mask.mean(), abs=1e-6)


def test_resharding_an_existing_out_redoes_nothing_and_records_each_frame_once(tmp_path):
    for room in range(3):
        pair = synthetic_pair(room, H, W, BASELINE)
        write_pair(tmp_path / "pairs", f"{room:03d}", pair["left"], pair["right"])
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "left").iterdir()}
    assert len(stamps) == 3
    for k in (0, 1):
        assert cli([tmp_path / "pairs", "--out", out, "--shard", f"{k}/2"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "left").iterdir()} == stamps  # nothing redone
    names = [f["name"] for m in sorted(out.glob("manifest*.json")) for f in json.loads(m.read_text())["frames"]]
    assert sorted(names) == ["000", "001", "002"]  # each frame in one manifest
    # a frame lost since is redone by the shard that owns it, and recorded there
    (out / "left" / "001.png").unlink()
    assert cli([tmp_path / "pairs", "--out", out, "--shard", "1/2"]) == 0
    assert (out / "left" / "001.png").is_file()
    assert [f["name"] for f in json.loads((out / "manifest.shard-1-of-2.json").read_text())["frames"]] == ["001"]
