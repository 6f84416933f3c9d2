"""Depth for a video: ``svde predict clip.mp4`` writes ``clip.depth.mp4`` under ``--out``.

The output has the input's frame count, size and frame rate (``--side-by-side``: the input on the
left, the depth on the right, twice as wide); ``--npy`` also writes every frame's prediction,
``<out>/clip.frames/<frame>.<domain>.npy`` (``--domain``, as for photos).

**One colour scale per video.** Each frame's log-disparity is coloured as a photo's picture
(:func:`svde.viz.colorize`, magma, near = bright) with one fixed range: the 2nd..98th percentiles of the predictions of :data:`SCALE_FRAMES` frames
spread evenly over the video, computed before the first frame is written. A per-frame range would
make a static scene flicker whenever something else moves; with one range a pixel whose
prediction does not change keeps its colour. (The networks predict depth up to scale, so the
range is the video's own, not a metric one.)

**Resumable.** Frames are coloured into lossless segments of :data:`SEGMENT_FRAMES` frames
(FFV1 in Matroska) in ``<out>/clip.depth.mp4.parts/``, each renamed into place when whole, with
``progress.json`` recording the input (path, size, modification time), the settings, the colour
range and the finished segments. A rerun with the same input and settings goes on after the last
finished segment (at most one segment is redone); otherwise it starts over. When every frame is
done the segments are encoded once into the MPEG-4 output (``mp4v``, the encoder OpenCV's wheels
ship), which is renamed into place, and the parts folder is removed.

**Corrupt frames** (they do not decode; OpenCV's reader goes on after them) are skipped and named
(frame number and time): the previous depth frame is repeated in their place (black at the very
start, or first after a resume), so that the output keeps the input's length and timing, and no ``.npy`` is written for
them. MPEG-4 needs even sizes: an odd width or height is padded by one pixel (edge repeated).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from svde.atomic import atomic_path, write_json
from svde.data.io import write_npy
from svde.errors import RunFailed, UserError
from svde.models.prediction import convert_domain
from svde.viz import colorize

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
PROGRESS_FORMAT = "svde-video/1"
SEGMENT_FRAMES = 120  # frames per lossless segment: the most work a resumed run redoes
SCALE_FRAMES = 16  # frames sampled for the colour range
PERCENTILES = (2.0, 98.0)
CMAP = "magma"
SEGMENT_CODEC, SEGMENT_EXT = "FFV1", ".mkv"  # lossless, so the output is compressed once
OUTPUT_CODEC = "mp4v"
MAX_FAILED_GRABS = 50  # consecutive frames that do not decode: the rest of the file is gone
SCRATCH_PREFIX = ".svde-video."

PredictFn = Callable[[np.ndarray], np.ndarray]  # BGR uint8 (H, W, 3) -> log-disparity float32 (H, W)


def is_video(path: Path) -> bool:
    """A path (not a folder) whose extension is one of :data:`VIDEO_EXTS`."""
    return Path(path).suffix.lower() in VIDEO_EXTS and not Path(path).is_dir()


# ---- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    """What the container declares: frame count (0: unknown), frame rate, size."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int

    def identity(self) -> dict[str, Any]:
        """The input as ``progress.json`` records it: a changed file is not resumed."""
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "frames": self.frames, "fps": self.fps, "size": [self.width, self.height]}


def probe_video(path: Path) -> VideoInfo:
    """The :class:`VideoInfo` of ``path``; a :class:`UserError` when OpenCV cannot open it."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(f"{path}: cannot open the video (unreadable, or not a format OpenCV can decode)")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        info = VideoInfo(Path(path), max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
                         fps if np.isfinite(fps) and fps > 0 else 0.0,
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    if info.width <= 0 or info.height <= 0:
        raise UserError(f"{path}: the video declares no frame size; is it a video?")
    if info.fps == 0:
        raise UserError(f"{path}: the video declares no frame rate; re-mux it (e.g. ffmpeg -i IN -c copy OUT.mp4)")
    return info


def read_frames(path: Path, start: int = 0, declared: int = 0) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(index, BGR frame or None)`` for every frame from ``start``; ``None``: it does not decode.

    OpenCV's FFmpeg reader fails the ``grab()`` of a corrupt frame and goes on with the next one,
    so up to the ``declared`` count a failure is a corrupt frame, not the end (as
    :func:`svde.data.stereo.sources.video_info` reads 3D films); :data:`MAX_FAILED_GRABS` failures
    in a row end the file (trailing failures are not reported as frames).
    """
    cap = cv2.VideoCapture(str(path))
    index, failed = 0, 0
    try:
        while True:
            if not cap.grab():
                failed += 1
                if index >= declared or failed > MAX_FAILED_GRABS:
                    return
                index += 1
                continue
            for missing in range(index - failed, index):  # failures followed by a frame: corrupt frames
                if missing >= start:
                    yield missing, None
            failed = 0
            if index >= start:
                ok, frame = cap.retrieve()
                yield index, frame if ok and frame is not None else None
            index += 1
    finally:
        cap.release()


# ---- colour --------------------------------------------------------------------------------------
def colour_range(predict_fn: PredictFn, info: VideoInfo, samples: int = SCALE_FRAMES) -> tuple[float, float]:
    """The video's colour range: :data:`PERCENTILES` of the predictions of ``samples`` frames spread
    evenly over it (seeking; the first decodable frames when seeking finds none)."""
    picks = sorted(set(np.linspace(0, max(info.frames - 1, 0), max(1, samples)).round().astype(int).tolist()))
    values: list[np.ndarray] = []
    cap = cv2.VideoCapture(str(info.path))
    try:
        for index in picks if info.frames > 0 else []:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok and frame is not None:
                values.append(predict_fn(frame)[::4, ::4].ravel())
    finally:
        cap.release()
    if not values:
        for _, frame in read_frames(info.path, declared=info.frames):
            if frame is not None:
                values.append(predict_fn(frame)[::4, ::4].ravel())
            if len(values) >= samples:
                break
    if not values:
        raise UserError(f"{info.path}: no frame could be decoded (unreadable or empty video)")
    lo, hi = (float(v) for v in np.percentile(np.concatenate(values), PERCENTILES))
    return lo, (hi if hi > lo else lo + 1e-6)


# ---- writing -------------------------------------------------------------------------------------
class _Writer:
    """A ``cv2.VideoWriter`` on a scratch file of the parts folder, renamed into place by :meth:`commit`
    (through :func:`svde.atomic.atomic_path`: OpenCV picks the container by the file's extension, which
    the atomic temporary does not have)."""

    def __init__(self, parts: Path, name: str, codec: str, fps: float, size: tuple[int, int]) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parts))
        self.path, self.count = self.scratch / name, 0
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), fps, size)
        if not self.writer.isOpened():
            self.discard()
            raise RunFailed(f"OpenCV cannot write {codec} video ({name}, {size[0]}x{size[1]}); is its FFmpeg backend "
                            f"there? (pip install opencv-python-headless)")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.count += 1

    def commit(self, target: Path) -> None:
        self.writer.release()
        try:
            with atomic_path(target) as tmp:
                os.replace(self.path, tmp)
        finally:
            self.discard()

    def discard(self) -> None:
        self.writer.release()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _even(frame: np.ndarray) -> np.ndarray:
    """``frame`` padded to even height and width (edge repeated): MPEG-4's 4:2:0 colour needs them."""
    h, w = frame.shape[:2]
    return cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE) if h % 2 or w % 2 else frame


@dataclass
class VideoResult:
    """What :func:`depth_video` did: the output, its frame count, the corrupt frames it skipped
    (``(index, seconds)``), the frame it resumed at (0: a fresh start) and the colour range."""

    output: Path
    frames: int
    skipped: list[tuple[int, float]] = field(default_factory=list)
    resumed_at: int = 0
    value_range: tuple[float, float] = (0.0, 1.0)


def _load_progress(parts: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((parts / "progress.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("format") == PROGRESS_FORMAT else None


def _start(parts: Path, info: VideoInfo, settings: dict[str, Any], predict_fn: PredictFn,
           scale_frames: int) -> dict[str, Any]:
    """The parts folder's progress: the recorded one when it matches, else a fresh one (colour range computed)."""
    state = _load_progress(parts)
    if state is not None and (state.get("input") != info.identity() or state.get("settings") != settings):
        state = None
    if state is None:
        shutil.rmtree(parts, ignore_errors=True)
        state = {"format": PROGRESS_FORMAT, "input": info.identity(), "settings": settings,
                 "range": list(colour_range(predict_fn, info, scale_frames)), "segments": [], "skipped": []}
    parts.mkdir(parents=True, exist_ok=True)
    keep = {f"{start:08d}{SEGMENT_EXT}" for start, _ in state["segments"]}
    for path in parts.iterdir():  # a killed run's scratch folders and unrecorded segments
        if path.name.startswith(SCRATCH_PREFIX):
            shutil.rmtree(path, ignore_errors=True)
        elif path.suffix == SEGMENT_EXT and path.name not in keep:
            path.unlink()
    write_json(parts / "progress.json", state)
    return state


def _encode(parts: Path, state: dict[str, Any], output: Path, fps: float, size: tuple[int, int]) -> int:
    """Encode the finished segments into ``output`` (once, atomically); returns the frame count."""
    writer = _Writer(parts, output.name, OUTPUT_CODEC, fps, size)
    try:
        for start, end in state["segments"]:
            cap = cv2.VideoCapture(str(parts / f"{start:08d}{SEGMENT_EXT}"))
            count = 0
            while (frame := cap.read()[1]) is not None:
                writer.write(frame)
                count += 1
            cap.release()
            if count != end - start:
                raise RunFailed(f"{parts}: segment {start:08d}{SEGMENT_EXT} holds {count} frames, expected "
                                f"{end - start}; delete {parts} and run again")
        writer.commit(output)
    except BaseException:
        writer.discard()
        raise
    return writer.count


def depth_video(predict_fn: PredictFn, source: Path, output: Path, *, side_by_side: bool = False,
                npy_dir: Path | None = None, domain: str = "log_disparity", settings: dict[str, Any] | None = None,
                progress: bool | None = None, segment_frames: int = SEGMENT_FRAMES,
                scale_frames: int = SCALE_FRAMES) -> VideoResult:
    """Colour depth video of ``source`` into ``output`` (see the module docstring); resumable.

    ``predict_fn`` maps a BGR frame to log-disparity; ``settings`` are recorded in the progress
    file with the output's own options, and a run with other settings starts over; ``progress``:
    a tqdm bar (``None``: on a terminal only).
    """
    info = probe_video(source)
    parts = output.with_name(output.name + ".parts")
    settings = {**(settings or {}), "side_by_side": side_by_side, "npy": str(npy_dir) if npy_dir else None,
                "percentiles": list(PERCENTILES), "cmap": CMAP, "segment_frames": segment_frames,
                **({"domain": domain} if npy_dir else {})}  # the domain shapes the .npy files only
    state = _start(parts, info, settings, predict_fn, scale_frames)
    value_range = (float(state["range"][0]), float(state["range"][1]))
    resumed_at = state["segments"][-1][1] if state["segments"] else 0
    size = (info.width * (2 if side_by_side else 1) + info.width % 2, info.height + info.height % 2)
    from tqdm import tqdm

    bar = tqdm(total=info.frames or None, initial=resumed_at, unit="frame", desc=source.name,
               disable=None if progress is None else not progress)
    segment: _Writer | None = None
    previous = np.zeros((size[1], size[0], 3), np.uint8)  # repeated for a corrupt first frame
    try:
        for index, frame in read_frames(source, resumed_at, info.frames):
            if segment is None:
                segment = _Writer(parts, f"{index:08d}{SEGMENT_EXT}", SEGMENT_CODEC, info.fps, size)
            if frame is None:
                state["skipped"].append([index, round(index / info.fps, 3)])
            else:
                if frame.shape[:2] != (info.height, info.width):
                    frame = cv2.resize(frame, (info.width, info.height), interpolation=cv2.INTER_AREA)
                log_disp = predict_fn(frame)
                if npy_dir is not None:
                    write_npy(npy_dir / f"{index:06d}.{domain}.npy", convert_domain(log_disp, domain))
                colour = np.ascontiguousarray(colorize(log_disp, cmap=CMAP, value_range=value_range)[..., ::-1])  # BGR
                previous = _even(np.hstack([frame, colour]) if side_by_side else colour)
            segment.write(previous)
            bar.update(1)
            if segment.count == segment_frames:
                _finish_segment(parts, state, segment)
                segment = None
        if segment is not None:
            _finish_segment(parts, state, segment)
            segment = None
    finally:
        bar.close()
        if segment is not None:
            segment.discard()
    if not state["segments"]:
        raise UserError(f"{source}: no frame could be decoded (unreadable or empty video)")
    frames = _encode(parts, state, output, info.fps, size)
    shutil.rmtree(parts, ignore_errors=True)
    return VideoResult(output, frames, [(int(i), float(t)) for i, t in state["skipped"]], resumed_at, value_range)


def _finish_segment(parts: Path, state: dict[str, Any], segment: _Writer) -> None:
    """Rename a finished segment into place and record it (with the skipped frames so far)."""
    start = state["segments"][-1][1] if state["segments"] else 0
    segment.commit(parts / f"{start:08d}{SEGMENT_EXT}")
    state["segments"].append([start, start + segment.count])
    write_json(parts / "progress.json", state)


# ---- the command-line side (svde predict VIDEO) -----------------------------------------------------
def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """``svde predict``'s options for a video INPUT."""
    group = parser.add_argument_group(f"a video INPUT ({', '.join(VIDEO_EXTS[:5])}, ...) gives <out>/<name>.depth.mp4")
    group.add_argument("--side-by-side", action="store_true",
                       help="video: the input on the left, the colour depth on the right (twice as wide)")
    group.add_argument("--npy", action="store_true",
                       help="video: also write every frame's prediction, <out>/<name>.frames/<frame>.<domain>.npy")


def check_video_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` for options that do not go with the input (a video, or a photo)."""
    if not (args.input is not None and is_video(args.input)):
        for flag in ("side_by_side", "npy"):
            if getattr(args, flag):
                parser.error(f"--{flag.replace('_', '-')} is for a video INPUT ({', '.join(VIDEO_EXTS)})")
        return
    photo_only = {"--ply": args.ply, "--mesh": args.mesh, "--format png": args.format == "png",
                  "--recursive": args.recursive, "--no-vis": args.no_vis,
                  "--precision": getattr(args, "precision", "fp32") != "fp32"}
    given = [flag for flag, on in photo_only.items() if on]
    if given:
        parser.error(f"{', '.join(given)}: for photos; a video gives <name>.depth.mp4 (and --npy, --side-by-side)")


def main_video(args: argparse.Namespace, device: Any) -> int:
    """``svde predict VIDEO``: write ``<out>/<stem>.depth.mp4``; prints what was written and skipped."""
    from svde.cli.common import check_output_folder, load_network, weights_source
    from svde.models.prediction import predict

    source = Path(args.input)
    probe_video(source)  # a video OpenCV can open, before the model loads
    check_output_folder(args.out)
    output = args.out / f"{source.stem}.depth.mp4"
    if output.exists() and not output.is_file():  # found now, not after every frame is predicted
        raise UserError(f"{output} exists and is not a file: cannot write the depth video there")
    model = load_network(args, device)
    short_side = args.short_side or None

    def predict_fn(frame: np.ndarray) -> np.ndarray:
        return predict(model, frame, short_side=short_side, bgr=True)

    weights = weights_source(args)
    if Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).resolve()} ({stat.st_size} bytes, mtime_ns {stat.st_mtime_ns})"
    npy_dir = args.out / f"{source.stem}.frames" if args.npy else None
    if (output.with_name(output.name + ".parts") / "progress.json").is_file():
        print(f"note: {output}.parts/ holds an interrupted run: resuming it if its input and settings match",
              file=sys.stderr)
    result = depth_video(predict_fn, source, output, side_by_side=args.side_by_side, npy_dir=npy_dir,
                         domain=args.domain, settings={"weights": weights, "short_side": short_side},
                         segment_frames=SEGMENT_FRAMES, scale_frames=SCALE_FRAMES)
    for index, seconds in result.skipped:
        print(f"warning: {source}: frame {index} ({seconds:.2f} s) could not be decoded (corrupt frame): skipped, "
              f"the previous depth frame repeated in its place", file=sys.stderr)
    resumed = f", resumed at frame {result.resumed_at}" if result.resumed_at else ""
    skipped = f", {len(result.skipped)} corrupt frame(s) skipped" if result.skipped else ""
    print(f"{source} -> {output} ({result.frames} frames{resumed}{skipped}"
          + (f"; per-frame {args.domain}.npy in {npy_dir}" if npy_dir else "") + ")")
    return 0
