"""Stereo footage -> UTSS data (svde.data.stereo, `svde prepare-stereo`): the synthetic pair's exact disparity,
SGBM accuracy on it (directly and through a side-by-side video), the output layout, resume,
settings refusal, shards, bad input, and training on the result."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from svde.cli.common import run_main
from svde.cli.prepare_stereo import main as stereo_main
from svde.config import build_config, read_yaml
from svde.data.io import read_depth_any, read_gray, read_image, write_rgb
from svde.data.registry import build_dataset
from svde.data.synthetic import render, render_stereo, sample_scene
from svde.data.stereo import StereoSettings, estimate_disparity
from svde.data.stereo.synthetic import synthetic_pair

REPO = Path(__file__).resolve().parents[1]
H, W, BASELINE = 96, 128, 0.1  # max true disparity ~6-20 px; default search range 128 / 6 -> 32 px


def d1_errors(disp: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """KITTI 2015's D1 outliers: error > 3 px and > 5 % of the true disparity (devkit, eval_scene_flow)."""
    err = np.abs(disp - gt)
    return (err > 3) & (err > 0.05 * gt)


def cli(args: list) -> int:
    return run_main(stereo_main, [str(a) for a in args] + ["--no-progress"])


def write_pairs(root: Path, indices=range(3)) -> list[dict]:
    pairs = []
    for i in indices:
        p = synthetic_pair(i, H, W, BASELINE)
        write_rgb(root / "left" / f"{i:03d}.png", p["left"])
        write_rgb(root / "right" / f"{i:03d}.png", p["right"])
        pairs.append(p)
    return pairs


def write_sbs_video(path: Path, frames: list[tuple[np.ndarray, np.ndarray]], fps: float = 10.0) -> Path:
    h, w = frames[0][0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (2 * w, h))
    assert writer.isOpened()
    for left, right in frames:
        writer.write(cv2.cvtColor(np.concatenate([left, right], axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_right_view_and_disparity_are_exact():
    """The left pixel u with disparity d sees, in the right view at u - d, the same 3-D point (same depth)."""
    scene = sample_scene(np.random.default_rng(3), H, W)
    pair = render_stereo(scene, H, W, BASELINE)
    assert np.array_equal(pair["left"], render(scene, H, W)["image"])
    fx = scene.intrinsics[0]
    assert np.allclose(pair["disparity"] * pair["depth"], fx * BASELINE, rtol=1e-5)
    from dataclasses import replace
    right_depth = render(replace(scene, cam_pos=scene.cam_pos + BASELINE * scene.cam_rot[:, 0]), H, W)["depth"]
    u = np.arange(W)[None, :] - pair["disparity"]
    inside = (u >= 0) & (u <= W - 1)
    rows = np.broadcast_to(np.arange(H)[:, None], (H, W))
    seen = right_depth[rows[inside], np.rint(u[inside]).astype(int)]
    rel = np.abs(seen - pair["depth"][inside]) / pair["depth"][inside]
    assert np.mean(rel < 0.02) > 0.9  # the rest: occlusions and rounding at depth edges
    with pytest.raises(ValueError, match="baseline"):
        render_stereo(scene, H, W, 0.0)


def test_sgbm_keeps_most_pixels_with_few_d1_errors_on_exact_ground_truth():
    kept, bad = [], []
    for i in range(4):
        p = synthetic_pair(i, H, W, BASELINE)
        disp, valid = estimate_disparity(p["left"], p["right"])
        assert disp.dtype == np.float32 and valid.dtype == bool and disp.shape == valid.shape == (H, W)
        assert np.all(disp[~valid] == 0) and np.all(np.isfinite(disp))
        kept.append(valid.mean())
        bad.append(d1_errors(disp, p["disparity"])[valid].mean())
    assert np.mean(kept) >= 0.75 and np.mean(bad) <= 0.05, (kept, bad)


def test_the_consistency_check_removes_errors():
    """Without the left-right check more pixels are kept and a larger share of them is wrong (the
    rooms' own textures, with flat patches, and a wider baseline: more occlusions)."""
    counts = np.zeros((2, 2))  # (check on, off) x (kept, D1 errors)
    for i in range(4):
        p = synthetic_pair(i, H, W, 2 * BASELINE, tile_scale=None)
        for row, tol in enumerate((1.0, float("inf"))):
            disp, valid = estimate_disparity(p["left"], p["right"], "sgbm", StereoSettings(lr_tolerance=tol))
            counts[row] += valid.sum(), d1_errors(disp, p["disparity"])[valid].sum()
    (kept_on, bad_on), (kept_off, bad_off) = counts
    assert kept_off > kept_on and bad_off / kept_off > 1.5 * bad_on / kept_on


def test_settings_are_checked():
    with pytest.raises(ValueError, match="block_size.*odd.*num_disparities|num_disparities.*block_size"):
        StereoSettings(num_disparities=20, block_size=4).check()
    with pytest.raises(ValueError, match="raft_model must be one of large, small"):
        StereoSettings(raft_model="huge").check()
    with pytest.raises(KeyError, match="valid matchers: raft, sgbm"):
        estimate_disparity(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "psmnet")


def test_pair_folder_to_stereo_folder_loads_and_resumes(tmp_path):
    pairs = write_pairs(tmp_path / "pairs")
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["status"] for f in manifest["frames"]] == ["kept"] * 3
    settings = manifest["settings"]
    assert settings["matcher"] == "sgbm" and settings["stereo"]["block_size"] == 5
    assert "sampling" not in settings and "raft_iters" not in settings["stereo"]  # they cannot shape this output
    for rec, pair in zip(manifest["frames"], pairs):
        disp = read_depth_any(out / "disparity" / f"{rec['name']}.npy")
        mask = read_gray(out / "mask" / f"{rec['name']}.png") > 0
        assert rec["kept_fraction"] == pytest.approx(mask.mean(), abs=1e-5)
        assert np.all(disp[mask] > 0) and np.all(disp[~mask] == 0)
        assert d1_errors(disp, pair["disparity"])[mask].mean() <= 0.05
        lo, hi = rec["disparity_range"]
        assert 0 < lo < hi <= pair["disparity"].max() + 3
    ds = build_dataset("stereo_folder", str(out))
    sample = ds[0]
    assert len(ds) == 3 and sample["depth_type"] == "utss"
    assert sample["mask"].float().mean() == pytest.approx(manifest["frames"][0]["kept_fraction"], abs=1e-5)
    # resume: nothing is redone, the files stay as they were
    stamp = (out / "left" / "000.png").stat().st_mtime_ns
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    assert (out / "left" / "000.png").stat().st_mtime_ns == stamp
    # a lost frame is redone
    (out / "left" / "001.png").unlink()
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    assert (out / "left" / "001.png").is_file()
    # the same input spelled another way, with settings that do not apply to it: still a resume
    spelled = tmp_path / "pairs" / ".." / "pairs"
    assert cli([spelled, "--out", out, "--every", "5", "--raft-iters", "20", "--workers", "2"]) == 0
    assert (out / "left" / "000.png").stat().st_mtime_ns == stamp


def test_other_settings_are_refused_naming_them(tmp_path, capsys):
    write_pairs(tmp_path / "pairs", [0])
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert cli([tmp_path / "pairs", "--out", out, "--block-size", "7", "--min-kept", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "stereo.block_size: 5 there, 7 now" in err and "min_kept: 0.2 there, 0.3 now" in err
    assert sorted(p.name for p in out.rglob("*")) == before
    (out / "manifest.json").unlink()  # left/ etc. without a manifest: someone else's data
    assert cli([tmp_path / "pairs", "--out", out]) == 2
    assert "already holds left/, disparity/, mask/ but no manifest.json" in capsys.readouterr().err
    # no left-right check (inf) is a setting like any other: recorded, and resumed
    for _ in range(2):
        assert cli([tmp_path / "pairs", "--out", tmp_path / "no_lr", "--lr-tolerance", "inf"]) == 0
    assert json.loads((tmp_path / "no_lr/manifest.json").read_text())["settings"]["stereo"]["lr_tolerance"] == "inf"
    assert cli([tmp_path / "pairs", "--out", tmp_path / "nan", "--lr-tolerance", "nan"]) == 2
    assert "lr_tolerance must be >= 0" in capsys.readouterr().err


def test_shards_split_the_frames(tmp_path):
    write_pairs(tmp_path / "pairs", range(3))
    out = tmp_path / "out"
    for k in (0, 1):
        assert cli([tmp_path / "pairs", "--out", out, "--shard", f"{k}/2"]) == 0
    names = [[f["name"] for f in json.loads((out / f"manifest.shard-{k}-of-2.json").read_text())["frames"]]
             for k in (0, 1)]
    assert names == [["000", "002"], ["001"]]
    assert len(build_dataset("stereo_folder", str(out))) == 3
    assert cli([tmp_path / "pairs", "--out", out, "--shard", "2/2"]) == 2


def shots(rooms=(0, 1, 2), length: int = 6, speed: float = 0.02) -> list[dict]:
    """Frames of a film: one shot per room, the camera moving ``speed`` m per frame within a shot."""
    return [synthetic_pair(room, H, W, BASELINE, move=speed * t) for room in rooms for t in range(length)]


def score(out: Path, frames: list[dict], truth: list[dict]) -> tuple[float, float]:
    """Mean kept fraction and mean D1 among kept pixels of the kept frames, against ``truth``."""
    kept, bad = [], []
    for rec in frames:
        gt = truth[rec["frame_index"]]["disparity"]
        disp = read_depth_any(out / "disparity" / f"{rec['name']}.npy")
        mask = read_gray(out / "mask" / f"{rec['name']}.png") > 0
        assert disp.shape == gt.shape
        kept.append(mask.mean())
        bad.append(d1_errors(disp, gt)[mask].mean())
    return float(np.mean(kept)), float(np.mean(bad))


def test_sbs_video_round_trip_keeps_the_accuracy_and_skips_scene_cuts(tmp_path):
    truth = shots()
    video = write_sbs_video(tmp_path / "film.avi", [(p["left"], p["right"]) for p in truth])
    out = tmp_path / "out"
    assert cli([video, "--out", out, "--every", "2"]) == 0
    frames = json.loads((out / "manifest.json").read_text())["frames"]
    assert [(f["frame_index"], f["time_s"]) for f in frames] == [(i, i / 10) for i in range(0, 18, 2)]
    status = {f["frame_index"]: f["status"] for f in frames}
    assert [i for i, s in status.items() if s == "dropped"] == [6, 12]  # the first frames of shots 2 and 3
    assert all("at a scene cut" in f["reason"] for f in frames if f["status"] == "dropped")
    kept_frames = [f for f in frames if f["status"] == "kept"]
    kept, bad = score(out, kept_frames, truth)
    assert kept >= 0.75 and bad <= 0.05, (kept, bad)
    assert len(build_dataset("stereo_folder", str(out))) == 7


@pytest.mark.parametrize("layout, half", [("tb", False), ("sbs", True), ("tb", True)])
def test_top_bottom_and_half_packings_are_unpacked_to_the_true_views(tmp_path, layout, half):
    truth = shots(rooms=(0,), length=3)
    packed = []
    for p in truth:
        views = [p["left"], p["right"]]
        if half:  # squeeze each view to half width (sbs) or height (tb), as broadcasts do
            size = (W // 2, H) if layout == "sbs" else (W, H // 2)
            views = [cv2.resize(v, size, interpolation=cv2.INTER_AREA) for v in views]
        packed.append(np.concatenate(views, axis=1 if layout == "sbs" else 0))
    video = tmp_path / "film.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, packed[0].shape[1::-1])
    for frame in packed:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    args = [video, "--out", out, "--layout", layout] + (["--half"] if half else [])
    assert cli(args) == 0
    frames = json.loads((out / "manifest.json").read_text())["frames"]
    assert [f["status"] for f in frames] == ["kept"] * 3
    assert read_gray(out / "mask" / f"{frames[0]['name']}.png").shape == (H, W)  # the true aspect
    kept, bad = score(out, frames, truth)
    assert kept >= 0.75 and bad <= 0.05, (kept, bad)  # measured: 93 % kept, 0 % D1 in all three


def test_letterbox_bars_are_cropped_from_both_views(tmp_path):
    truth = shots(rooms=(0,), length=2)
    bar = 10
    frames = [(cv2.copyMakeBorder(p["left"], bar, bar, 0, 0, cv2.BORDER_CONSTANT),
               cv2.copyMakeBorder(p["right"], bar, bar, 0, 0, cv2.BORDER_CONSTANT)) for p in truth]
    video = write_sbs_video(tmp_path / "scope.avi", frames)
    out = tmp_path / "out"
    assert cli([video, "--out", out]) == 0
    recs = json.loads((out / "manifest.json").read_text())["frames"]
    assert recs[0]["crop"] == [bar, bar, 0, 0]
    left = read_image(out / "left" / f"{recs[0]['name']}.png")
    assert left.shape == (H, W, 3)
    error = np.abs(left.astype(int) - truth[0]["left"]).mean(axis=(1, 2))  # per row; MJPG noise ~5
    assert error.max() < 12 and left[0].mean() > 3 * 16  # the picture up to its first row, no bar left
    kept, bad = score(out, recs, truth)
    assert kept >= 0.75 and bad <= 0.05
    assert cli([video, "--out", tmp_path / "uncropped", "--no-crop"]) == 0
    rec = json.loads((tmp_path / "uncropped/manifest.json").read_text())["frames"][0]
    assert rec["crop"] == [0, 0, 0, 0]
    assert read_gray(tmp_path / "uncropped/mask" / f"{rec['name']}.png").shape == (H + 2 * bar, W)


def test_near_duplicate_frames_of_a_static_shot_are_dropped(tmp_path):
    still = synthetic_pair(0, H, W, BASELINE)
    moving = shots(rooms=(0,), length=3, speed=0.05)[1:]  # the camera starts moving
    video = write_sbs_video(tmp_path / "still.avi", [(still["left"], still["right"])] * 3
                            + [(p["left"], p["right"]) for p in moving])
    out = tmp_path / "out"
    assert cli([video, "--out", out, "--cut-threshold", "0"]) == 0
    frames = json.loads((out / "manifest.json").read_text())["frames"]
    assert [f["status"] for f in frames] == ["kept", "dropped", "dropped", "kept", "kept"]
    assert "near-duplicate of frame 0" in frames[1]["reason"] and "near-duplicate of frame 1" in frames[2]["reason"]
    # the same decisions in any shard: each frame is compared with the frame sampled before it
    for k in (0, 1):
        assert cli([video, "--out", tmp_path / "sharded", "--cut-threshold", "0", "--shard", f"{k}/2"]) == 0
    shard_status = {f["frame_index"]: f["status"] for k in (0, 1) for f in json.loads(
        (tmp_path / f"sharded/manifest.shard-{k}-of-2.json").read_text())["frames"]}
    assert shard_status == {f["frame_index"]: f["status"] for f in frames}


def test_unrectified_views_are_dropped_with_the_reason(tmp_path):
    big = synthetic_pair(0, 2 * H, 2 * W, BASELINE)
    for name, shift in (("000", 0), ("001", 4)):
        write_rgb(tmp_path / "pairs/left" / f"{name}.png", big["left"])
        write_rgb(tmp_path / "pairs/right" / f"{name}.png", np.roll(big["right"], shift, axis=0))
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    frames = {f["name"]: f for f in json.loads((out / "manifest.json").read_text())["frames"]}
    assert frames["000"]["status"] == "kept" and abs(frames["000"]["vertical_offset"]) <= 0.5
    assert frames["001"]["status"] == "dropped"
    assert "views not rectified: median vertical offset +4.0 px" in frames["001"]["reason"]


def test_workers_give_the_same_output(tmp_path):
    write_pairs(tmp_path / "pairs", range(2))
    assert cli([tmp_path / "pairs", "--out", tmp_path / "a"]) == 0
    assert cli([tmp_path / "pairs", "--out", tmp_path / "b", "--workers", "2"]) == 0
    for name in ("000", "001"):
        assert np.array_equal(np.load(tmp_path / "a/disparity" / f"{name}.npy"),
                              np.load(tmp_path / "b/disparity" / f"{name}.npy"))


def test_mono_video_is_dropped_with_the_reason(tmp_path, capsys):
    video = write_sbs_video(tmp_path / "mono.avi", [(p["left"], p["left"]) for p in shots(rooms=(0,), length=2)])
    out = tmp_path / "out"
    assert cli([video, "--out", out]) == 1
    assert "all 2 frames were dropped" in capsys.readouterr().err
    frames = json.loads((out / "manifest.json").read_text())["frames"]
    assert all("left equals right" in f["reason"] for f in frames)
    assert not (out / "left").exists()


def test_corrupt_pair_is_skipped_with_its_reason(tmp_path):
    write_pairs(tmp_path / "pairs", range(2))
    (tmp_path / "pairs/right/001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    frames = {f["name"]: f for f in json.loads((out / "manifest.json").read_text())["frames"]}
    assert frames["000"]["status"] == "kept"
    assert frames["001"]["status"] == "dropped" and "001.png" in frames["001"]["reason"]
    assert sorted(p.name for p in (out / "left").iterdir()) == ["000.png"]


def test_corrupt_video_frame_is_dropped_and_the_frames_after_it_kept(tmp_path, caplog, corrupt_mjpg_frame):
    """Frame 3's JPEG data zeroed in an MJPG .avi (its grab() fails, OpenCV's reader goes on)."""
    truth = shots(rooms=(0,), length=6)
    video = write_sbs_video(tmp_path / "film.avi", [(p["left"], p["right"]) for p in truth])
    corrupt_mjpg_frame(video, 3, frames=6)
    out = tmp_path / "out"
    assert cli([video, "--out", out, "--dup-threshold", "0"]) == 0
    frames = {f["frame_index"]: f for f in json.loads((out / "manifest.json").read_text())["frames"]}
    assert sorted(frames) == list(range(6))
    assert frames[3]["status"] == "dropped" and "could not be decoded (corrupt frame)" in frames[3]["reason"]
    assert [i for i, f in frames.items() if f["status"] == "kept"] == [0, 1, 2, 4, 5]
    kept, bad = score(out, [frames[i] for i in (0, 1, 2, 4, 5)], truth)
    assert kept >= 0.75 and bad <= 0.05, (kept, bad)
    for i in (4, 5):  # the frames after the corrupt one are themselves, not shifted by one
        left = read_image(out / "left" / f"{frames[i]['name']}.png").astype(float)
        errors = [np.abs(left - truth[j]["left"]).mean() for j in range(6)]
        assert int(np.argmin(errors)) == i, errors
    assert "1 corrupt frame(s) do not decode (first: 3)" in caplog.text


@pytest.mark.parametrize("case", ["junk", "truncated", "missing", "no_right"])
def test_bad_inputs_are_refused_before_any_work(tmp_path, capsys, case):
    p = synthetic_pair(0, H, W, BASELINE)
    if case == "junk":
        src, expect = tmp_path / "x.avi", "cannot open the video"
        src.write_bytes(b"not a video" * 50)
    elif case == "truncated":
        full = write_sbs_video(tmp_path / "full.avi", [(p["left"], p["right"])] * 6).read_bytes()
        src, expect = tmp_path / "cut.avi", "truncated video"
        src.write_bytes(full[: len(full) // 2])
    elif case == "missing":
        src, expect = tmp_path / "nothing.avi", "no such file"
    else:
        write_pairs(tmp_path / "pairs", [0])
        (tmp_path / "pairs/right/000.png").unlink()
        src, expect = tmp_path / "pairs", "no right view for 000.png"
    out = tmp_path / "out"
    assert cli([src, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expect in err and str(src) in err
    assert not out.exists()


@pytest.mark.parametrize("layout, size, expect", [("sbs", (255, 96), "must have an even width"),
                                                  ("tb", (256, 97), "must have an even height")])
def test_odd_packed_video_is_refused(tmp_path, monkeypatch, capsys, layout, size, expect):
    """cv2.VideoWriter rounds sizes to even, so the odd-sized capture is simulated."""
    import svde.data.stereo.sources as sources

    class OddCapture:
        def __init__(self, path):
            self.frames = 2

        def isOpened(self):
            return True

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_COUNT: 2, cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_WIDTH: size[0],
                    cv2.CAP_PROP_FRAME_HEIGHT: size[1]}[prop]

        def grab(self):
            self.frames -= 1
            return self.frames >= 0

        def release(self):
            pass

    video = tmp_path / "odd.avi"
    video.write_bytes(b"")
    monkeypatch.setattr(sources.cv2, "VideoCapture", OddCapture)
    assert cli([video, "--out", tmp_path / "out", "--layout", layout]) == 2
    assert expect in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_layout_that_does_not_fit_the_input_is_refused(tmp_path, capsys):
    write_pairs(tmp_path / "pairs", [0])
    video = write_sbs_video(tmp_path / "film.avi", [(p["left"], p["right"]) for p in shots(rooms=(0,), length=1)])
    assert cli([tmp_path / "pairs", "--out", tmp_path / "a", "--layout", "sbs"]) == 2
    assert "a folder is read as pairs" in capsys.readouterr().err
    assert cli([video, "--out", tmp_path / "b", "--layout", "pairs"]) == 2
    assert "--layout pairs expects folders" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse lists the choices
        cli([video, "--out", tmp_path / "c", "--matcher", "psmnet"])
    assert exc.value.code == 2 and "invalid choice: 'psmnet'" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_prepared_stereo_mixed_with_uts_trains(tmp_path):
    """The loop closed: prepare, then train 2 steps on configs/stereo_mix.yaml (UTSS + UTS) on CPU."""
    from svde.training import train

    write_pairs(tmp_path / "pairs", range(2))
    assert cli([tmp_path / "pairs", "--out", tmp_path / "stereo"]) == 0
    raw = read_yaml(REPO / "configs/stereo_mix.yaml")
    raw["data"]["train"][0]["root"] = str(tmp_path / "stereo")
    raw["data"]["train"][1]["options"] = {"length": 4, "height": 72, "width": 80}
    cfg = build_config(raw, ["data.height=64", "data.width=64", "data.batch_size=2", "data.epoch_length=4",
                             "train.steps=2", "train.device=cpu", "train.log_every=1", "val.every=0",
                             "train.checkpoint_every=2", "train.image_every=0"])
    assert [e.name for e in cfg.data.train] == ["stereo_folder", "synthetic"] and cfg.data.train[1].convert == "uts"
    summary = train(cfg, tmp_path / "run")
    logs = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2] and all(np.isfinite(r["loss"]) for r in logs)


def test_an_interrupted_run_leaves_whole_frames_and_resumes(tmp_path, monkeypatch):
    import svde.data.stereo.pipeline as pipeline

    write_pairs(tmp_path / "pairs", range(3))
    out = tmp_path / "out"
    real_write = pipeline.write_rgb
    calls = []

    def failing_write(path, rgb):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing the second frame
        return real_write(path, rgb)

    monkeypatch.setattr(pipeline, "write_rgb", failing_write)
    assert cli([tmp_path / "pairs", "--out", out]) == 130
    assert [f["name"] for f in json.loads((out / "manifest.json").read_text())["frames"]] == ["000"]
    assert len(build_dataset("stereo_folder", str(out))) == 1  # the half-done frame has no left/ image
    monkeypatch.setattr(pipeline, "write_rgb", real_write)
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    assert len(build_dataset("stereo_folder", str(out))) == 3


def converged_pair(shift: int = 10) -> tuple[dict, np.ndarray]:
    """A 192x256 pair as converged footage shows it: the right view moved ``shift`` px to the
    right, so that disparity is ``d - shift`` (negative behind the 'screen')."""
    pair = synthetic_pair(0, 2 * H, 2 * W, BASELINE)
    right = np.concatenate([np.repeat(pair["right"][:, :1], shift, axis=1), pair["right"][:, :-shift]], axis=1)
    return {**pair, "right": right}, pair["disparity"] - shift


def test_converged_footage_finds_negative_disparities_and_stores_them_shifted(tmp_path):
    pair, truth = converged_pair()
    assert truth.min() < -4 < 0 < truth.max()  # both sides of the screen
    write_rgb(tmp_path / "pairs/left/000.png", pair["left"])
    write_rgb(tmp_path / "pairs/right/000.png", pair["right"])
    results = {}
    for name, extra in (("auto", []), ("explicit", ["--num-disparities", "64", "--min-disparity", "-32"]),
                        ("positive_only", ["--num-disparities", "64", "--min-disparity", "0"])):
        out = tmp_path / name
        assert cli([tmp_path / "pairs", "--out", out, *extra]) == 0
        rec = json.loads((out / "manifest.json").read_text())["frames"][0]
        disp = read_depth_any(out / "disparity/000.npy")
        mask = read_gray(out / "mask/000.png") > 0
        assert np.all(disp[mask] >= 1) and rec["stored_offset"] == float(rec["stored_offset"]) >= 0
        results[name] = (mask.mean(), d1_errors(disp - rec["stored_offset"], truth)[mask].mean())
    for name in ("auto", "explicit"):
        assert results[name][0] >= 0.75 and results[name][1] <= 0.05, results
    assert results["positive_only"][0] < results["auto"][0] - 0.2  # a [0, 64) search misses what is behind
    assert len(build_dataset("stereo_folder", str(tmp_path / "auto"))) == 1


def test_search_range_follows_the_feature_matches():
    from svde.data.stereo.matching import search_range

    pair, truth = converged_pair()
    low, count = search_range(pair["left"], pair["right"], StereoSettings())
    assert low <= truth.min() and truth.max() < low + count and count % 16 == 0
    assert search_range(pair["left"], pair["right"], StereoSettings(num_disparities=48, min_disparity=-7)) == (-7, 48)
    tiny = synthetic_pair(0, 48, 64)  # too few features: the fixed range [min_disparity, + width / 6)
    assert search_range(tiny["left"], tiny["right"], StereoSettings(min_disparity=-3)) == (-3, 16)


def test_an_input_given_twice_is_read_once(tmp_path, caplog):
    write_pairs(tmp_path / "pairs", range(2))
    video = write_sbs_video(tmp_path / "film.avi", [(p["left"], p["right"]) for p in shots(rooms=(0,), length=4)])
    out = tmp_path / "out"
    assert cli([video, tmp_path / "pairs", video, tmp_path / "pairs" / ".", "--out", out, "--dup-threshold", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    kept = sorted(f["name"] for f in manifest["frames"] if f["status"] == "kept")
    assert manifest["frames_kept"] == len(kept) == 6 and manifest["frames_dropped"] == 0
    assert kept == sorted(p.stem for p in (out / "left").iterdir())
    assert caplog.text.count("given twice") == 2


def test_two_images_of_one_name_in_a_pair_folder_are_refused(tmp_path, capsys):
    write_pairs(tmp_path / "pairs", [0])
    write_rgb(tmp_path / "pairs/left/000.jpg", read_image(tmp_path / "pairs/left/000.png"))
    assert cli([tmp_path / "pairs", "--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "000.jpg and 000.png would both be frame '000'" in err
    assert not (tmp_path / "out").exists()


def test_one_video_open_at_a_time(tmp_path, monkeypatch):
    import svde.data.stereo.sources as sources

    frames = [(p["left"], p["right"]) for p in shots(rooms=(0,), length=2)]
    videos = [write_sbs_video(tmp_path / f"clip{i}.avi", frames) for i in range(4)]
    opened, real = [], cv2.VideoCapture

    class Counted:
        def __init__(self, path):
            self.cap = real(path)
            opened.append(self)
            self.open = True

        def release(self):
            self.open = False
            self.cap.release()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(sources.cv2, "VideoCapture", Counted)
    live = []
    original = sources._VideoReader.advance_to

    def watch(self, *args):
        live.append(sum(c.open for c in opened))
        return original(self, *args)

    monkeypatch.setattr(sources._VideoReader, "advance_to", watch)
    assert cli([*videos, "--out", tmp_path / "out", "--dup-threshold", "0"]) == 0
    assert max(live) == 1 and not any(c.open for c in opened)


def test_a_run_killed_before_its_first_frame_resumes(tmp_path, monkeypatch):
    import svde.data.stereo.pipeline as pipeline

    write_pairs(tmp_path / "pairs", range(2))
    out = tmp_path / "out"

    def killed(task):
        ref = task[0]
        (out / "disparity").mkdir(parents=True, exist_ok=True)
        (out / "disparity" / f".{ref.name}.npy.abc123.tmp").write_bytes(b"half")  # a writer killed mid-file
        (out / "disparity" / ".other_shard_frame.npy.xyz789.tmp").write_bytes(b"theirs")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "process_frame", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.prepare([str(tmp_path / "pairs")], str(out))  # str paths work too
    assert json.loads((out / "manifest.json").read_text())["frames"] == []
    monkeypatch.undo()
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    assert sorted(p.name for p in (out / "disparity").iterdir()) == [".other_shard_frame.npy.xyz789.tmp",
                                                                     "000.npy", "001.npy"]


def test_an_empty_shard_still_writes_its_manifest(tmp_path):
    write_pairs(tmp_path / "pairs", range(2))
    assert cli([tmp_path / "pairs", "--out", tmp_path / "out", "--shard", "3/4"]) == 0
    manifest = json.loads((tmp_path / "out/manifest.shard-3-of-4.json").read_text())
    assert manifest["frames"] == [] and manifest["shard"] == "3/4"


def test_all_dropped_message_stays_short(tmp_path, capsys):
    write_pairs(tmp_path / "pairs", range(6))
    assert cli([tmp_path / "pairs", "--out", tmp_path / "out", "--min-kept", "0.999"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: all 6 frames were dropped (6 x too few valid pixels: ")
    assert len(err.splitlines()) == 1 and err.count("too few valid pixels") == 1


def test_frames_without_valid_pixels_or_too_small_are_dropped(tmp_path):
    write_pairs(tmp_path / "pairs", [0])
    tiny = np.random.default_rng(0).integers(0, 255, (1, 40, 3), dtype=np.uint8)
    write_rgb(tmp_path / "pairs/left/tiny.png", tiny)
    write_rgb(tmp_path / "pairs/right/tiny.png", np.roll(tiny, 2, axis=1))
    flat = np.full((H, W, 3), 128, np.uint8)
    write_rgb(tmp_path / "pairs/left/flat.png", flat)
    write_rgb(tmp_path / "pairs/right/flat.png", flat + np.uint8(3))  # differs, but nothing to match
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out, "--min-kept", "0", "--min-range", "0"]) == 0
    frames = {f["name"]: f for f in json.loads((out / "manifest.json").read_text())["frames"]}
    assert frames["000"]["status"] == "kept"
    assert "expected at least 16 px a side" in frames["tiny"]["reason"]
    assert frames["flat"]["status"] == "dropped" and frames["flat"]["reason"].startswith("no valid pixel")
    assert sorted(p.stem for p in (out / "left").iterdir()) == ["000"]


def test_out_that_is_a_file_is_refused_before_reading_the_videos(tmp_path, capsys, monkeypatch):
    import svde.data.stereo.sources as sources

    video = write_sbs_video(tmp_path / "film.avi", [(p["left"], p["right"]) for p in shots(rooms=(0,), length=2)])
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(sources, "video_info", lambda *a: pytest.fail("the videos were read first"))
    assert cli([video, "--out", tmp_path / "afile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {tmp_path / 'afile'}: cannot write there") and "is not a folder" in err
    assert cli([video, "--out", tmp_path / "afile" / "sub"]) == 2
    assert "afile exists and is not a folder" in capsys.readouterr().err


def test_a_damaged_manifest_is_one_error_line(tmp_path, capsys):
    write_pairs(tmp_path / "pairs", [0])
    out = tmp_path / "out"
    assert cli([tmp_path / "pairs", "--out", out]) == 0
    (out / "manifest.json").write_text(json.dumps({"settings": {}, "frames": {"000": 1}}))
    assert cli([tmp_path / "pairs", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a stereo manifest" in err and "Traceback" not in err
    assert cli([tmp_path / "pairs", "--out", tmp_path / "o2", "--threads", "-5"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
