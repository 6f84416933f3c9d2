"""``svde predict clip.mp4``: colour depth video with the input's frame count, size and frame rate,
one colour range per video (a static pixel keeps its colour), corrupt frames skipped and named,
resumable (svde.cli.video)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from svde.api import predict
from svde.cli import video
from svde.cli.main import main
from svde.data.synthetic import render, sample_scene
from svde.viz import colorize

H, W, FPS = 96, 128, 12.0
CODEC_TOLERANCE = 16  # grey levels: MPEG-4 (mp4v) coding of a static textured pixel drifts by up to ~10 between frames


def room(seed: int = 0) -> np.ndarray:
    """A synthetic room, RGB uint8 (H, W, 3)."""
    return render(sample_scene(np.random.default_rng(seed), H, W), H, W)["image"]


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS, codec: str = "mp4v") -> Path:
    """RGB frames -> a video file (mp4v .mp4; FFV1 .mkv is lossless, MJPG .avi one JPEG per frame)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame (BGR) of a video and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    cap.release()
    return frames, fps


def flicker(frames: list[np.ndarray], region: tuple[slice, slice], mean: bool = False) -> float:
    """The largest (``mean``: the mean) change of the pixels of ``region`` (any channel) across ``frames``."""
    stack = np.stack([f[region].astype(int) for f in frames])
    change = (stack.max(axis=0) - stack.min(axis=0)).max(axis=-1)
    return float(change.mean() if mean else change.max())


@pytest.mark.parametrize("name, codec", [("clip.mp4", "mp4v"), ("clip.mkv", "FFV1")])
def test_static_scene_gives_the_inputs_count_size_and_fps_and_steady_colours(tmp_path, mn_checkpoint, capsys,
                                                                             name, codec):
    """A rendered room, unchanged for 14 frames. Through a lossless input (FFV1) every pixel of the
    input is static, and so is its colour in the output; an MPEG-4 input changes by a few grey
    levels between its key frame and the next, which the (random) network's tiny output range
    would magnify, so there only the count, size and rate are compared."""
    clip = write_video(tmp_path / name, [room()] * 14, codec=codec)
    assert main(["predict", "--checkpoint", str(mn_checkpoint), str(clip), "--out", str(tmp_path / "out"),
                 "--threads", "1"]) == 0
    out = tmp_path / "out" / "clip.depth.mp4"
    assert f"-> {out} (14 frames)" in capsys.readouterr().out
    frames, fps = decode(out)
    assert len(frames) == 14 and frames[0].shape == (H, W, 3) and fps == FPS
    assert frames[0].std() > 10  # a depth picture, not a flat one
    if codec == "FFV1":
        assert flicker(decode(clip)[0], (slice(None), slice(None))) == 0
        assert flicker(frames, (slice(None), slice(None))) <= CODEC_TOLERANCE
    assert not (tmp_path / "out" / "clip.depth.mp4.parts").exists()  # the segments are gone once it is whole


def moving_square_clip(tmp_path: Path, n: int = 8) -> tuple[Path, list[np.ndarray]]:
    """A static room with a square in its top-left corner whose brightness jumps every frame (lossless)."""
    frames = []
    for i in range(n):
        frame = room().copy()
        frame[:24, :24] = 255 if i % 2 else 0
        frames.append(frame)
    return write_video(tmp_path / "square.mkv", frames, codec="FFV1"), frames


def brightness_depth(frame_bgr: np.ndarray) -> np.ndarray:
    """A stand-in network: log-disparity from brightness; the square swings the frame's range."""
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    out = grey.copy()
    out[:24, :24] = 8.0 * (grey[:24, :24] - 0.5)  # -4 or +4: far outside the room's 0..1
    return out


def test_one_colour_range_per_video_so_static_pixels_do_not_flicker(tmp_path):
    clip, frames = moving_square_clip(tmp_path)
    result = video.depth_video(brightness_depth, clip, tmp_path / "square.depth.mp4", progress=False)
    decoded, _ = decode(result.output)
    static = (slice(32, None), slice(32, None))
    assert len(decoded) == len(frames)
    assert flicker(decoded, static) <= CODEC_TOLERANCE and flicker(decoded, static, mean=True) < 2
    # what a per-frame range (svde.viz.colorize of each frame alone) would have shown: the room flickers
    per_frame = [colorize(brightness_depth(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))) for f in frames]
    assert flicker(per_frame, static, mean=True) > 100


def test_corrupt_frame_is_skipped_and_named_and_the_length_kept(tmp_path, mn_checkpoint, capsys, corrupt_mjpg_frame):
    """Frame 3's JPEG data zeroed in an MJPG .avi (its grab() fails; OpenCV's reader goes on)."""
    rng = np.random.default_rng(0)
    frames = [np.clip(room().astype(int) + rng.integers(-20, 20, (H, W, 1)), 0, 255).astype(np.uint8)
              for _ in range(6)]
    clip = write_video(tmp_path / "bad.avi", frames, fps=10.0, codec="MJPG")
    corrupt_mjpg_frame(clip, 3, frames=6)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(mn_checkpoint), str(clip), "--out", str(out), "--npy",
                 "--short-side", "64", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "frame 3 (0.30 s) could not be decoded (corrupt frame): skipped" in captured.err
    assert "6 frames" in captured.out and "1 corrupt frame(s) skipped" in captured.out
    decoded, _ = decode(out / "bad.depth.mp4")
    assert len(decoded) == 6
    assert np.abs(decoded[3].astype(int) - decoded[2].astype(int)).max() <= CODEC_TOLERANCE  # repeated
    assert sorted(p.name for p in (out / "bad.frames").iterdir()) == [
        f"{i:06d}.log_disparity.npy" for i in (0, 1, 2, 4, 5)]


def test_npy_frames_are_svde_predict_of_each_frame_and_side_by_side_doubles_the_width(tmp_path, mn_checkpoint, mn_model):
    clip = write_video(tmp_path / "clip.mp4", [room(0)] * 3 + [room(1)] * 2)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(mn_checkpoint), str(clip), "--out", str(out), "--npy",
                 "--side-by-side", "--domain", "depth", "--short-side", "96", "--threads", "1"]) == 0
    inputs, _ = decode(clip)
    decoded, fps = decode(out / "clip.depth.mp4")
    assert len(decoded) == 5 and decoded[0].shape == (H, 2 * W, 3) and fps == FPS
    for i, frame in enumerate(inputs):
        expected = predict(mn_model, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), short_side=96)
        np.testing.assert_allclose(np.load(out / "clip.frames" / f"{i:06d}.depth.npy"), np.exp(-expected),
                                   rtol=1e-5)
        assert np.abs(decoded[i][:, :W].astype(int) - frame.astype(int)).mean() < 3  # the input, on the left


def test_an_interrupted_video_resumes_after_its_last_whole_segment(tmp_path, monkeypatch):
    clip, frames = moving_square_clip(tmp_path, n=10)
    calls, fail_at = [], [10 + 6]  # 10 for the colour range, then frames 0..4 written, frame 5 interrupted

    def counting(frame):
        calls.append(1)
        if len(calls) == fail_at[0]:
            raise KeyboardInterrupt
        return brightness_depth(frame)

    output = tmp_path / "out" / "square.depth.mp4"
    output.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        video.depth_video(counting, clip, output, segment_frames=4, progress=False)
    parts = output.with_name(output.name + ".parts")
    assert sorted(p.name for p in parts.iterdir()) == ["00000000.mkv", "progress.json"]  # no scratch left
    calls.clear()
    fail_at[0] = 0
    result = video.depth_video(counting, clip, output, segment_frames=4, progress=False)
    assert result.resumed_at == 4 and len(calls) == 6 and result.frames == 10  # frames 4..9 only
    fresh = video.depth_video(brightness_depth, clip, tmp_path / "fresh.depth.mp4", segment_frames=4, progress=False)
    resumed, _ = decode(output)
    assert len(resumed) == 10 and all(np.array_equal(a, b) for a, b in zip(resumed, decode(fresh.output)[0]))
    # another setting starts over
    calls.clear()
    video.depth_video(counting, clip, output, segment_frames=4, progress=False, side_by_side=True)
    assert len(calls) == 20


def test_video_frames_are_coloured_as_a_photo_s_vis_png_with_one_fixed_range():
    """One colour code for photos and videos (svde.viz.colorize): a frame is a photo's picture,
    except that its range is the video's, fixed."""
    values = np.array([[-1.0, 0.0, 0.5, 1.0, 9.0]])
    fixed = colorize(values, value_range=(0.0, 1.0))
    assert (fixed[0, 0] == fixed[0, 1]).all() and (fixed[0, 3] == fixed[0, 4]).all()
    ramp = np.linspace(0.0, 1.0, 64).reshape(8, 8)
    assert np.array_equal(colorize(ramp, value_range=(0.0, 1.0)), colorize(ramp, percentiles=(0.0, 100.0)))


@pytest.mark.parametrize("argv, message", [
    (["photo.png", "--side-by-side"], "--side-by-side is for a video INPUT"),
    (["clip.mp4", "--ply", "--fov", "60"], "--ply: for photos"),
])
def test_video_and_photo_options_do_not_mix(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--model", "mn_lrn4", *argv]) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("content, message", [(b"not a video at all" * 10, "junk.mp4: cannot open the video"),
                                              (None, "junk.mp4: no such file")])
def test_unreadable_or_missing_video_is_one_error_line(tmp_path, mn_checkpoint, capsys, content, message):
    clip = tmp_path / "junk.mp4"
    if content is not None:
        clip.write_bytes(content)
    assert main(["predict", "--checkpoint", str(mn_checkpoint), str(clip), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err and not (tmp_path / "out").exists()


def test_a_folder_named_like_a_video_is_a_folder_and_a_blocked_output_fails_first(tmp_path, mn_checkpoint, capsys,
                                                                                  monkeypatch):
    folder = tmp_path / "d.mp4"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), room())
    assert main(["predict", "--checkpoint", str(mn_checkpoint), str(folder), "--out", str(tmp_path / "o1"),
                 "--short-side", "64", "--threads", "1", "--ply", "--fov", "60"]) == 0  # photo options: a folder
    assert list((tmp_path / "o1").glob("a*.ply"))
    clip = write_video(tmp_path / "clip.mp4", [room(i) for i in range(3)])
    (tmp_path / "o2" / "clip.depth.mp4").mkdir(parents=True)  # where the video would go
    from svde.cli import common

    monkeypatch.setattr(common, "load_network", lambda *a: pytest.fail("loaded before the check"))
    assert main(["predict", "--checkpoint", str(mn_checkpoint), str(clip), "--out", str(tmp_path / "o2"),
                 "--threads", "1"]) == 2
    assert "clip.depth.mp4 exists and is not a file" in capsys.readouterr().err
