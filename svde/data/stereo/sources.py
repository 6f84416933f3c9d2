"""Where stereo frames come from: folders of rectified pairs, and 3D videos.

* A pair folder (layout ``pairs``) holds ``left/<name>.<ext>`` and ``right/<name>.<ext>`` (any
  image extension of :data:`svde.data.layout.USER_IMAGE_EXTS`), paired by file stem, as in the
  ``stereo_folder`` layout this tool writes.
* A 3D video packs both views in each frame, as 3D films, TV broadcasts and stereo cameras do
  (HDMI 1.4a's 3D structures; ffmpeg's ``stereo3d`` filter names them ``sbsl`` and ``abl``):
  ``sbs`` (side by side) has the left view in the left half, so its width must be even; ``tb``
  (top-bottom, "over-under") has the left view on top, so its height must be even. With
  ``half`` (half-SBS / half-TB, the broadcast form) each view was squeezed to half width
  (height) and is stretched back to its true aspect before matching.

Every input is checked before any work (:func:`list_frames`): a folder without pairs, an
unreadable video, a truncated one (fewer decodable frames than its header declares), an odd
packed size. The same pass finds the video's letterbox (or pillarbox) bars: rows and columns that
stay dark in every probed frame are cropped from both views alike (a shared crop keeps the views
rectified and the disparity unchanged).

Frames are then read in order (:func:`read_frames`). A frame that cannot be read, a video frame
at a scene cut (the first or last frame of a shot: dissolves, fades and eye streams cut on
different frames live there) and a near-duplicate of the previous sampled frame (a static shot
gives nothing new) come with a ``reason`` instead of pixels and are dropped with it. Both tests
use PySceneDetect's content score (Breakthrough/PySceneDetect, ``website/pages/api.md``,
"Content-Aware Detector"): the mean absolute difference of two frames in HSV, averaged over the
three channels, here on 64x36 thumbnails of the left view; a cut is a score above 27, that
documentation's suggested starting threshold.

With ``cut_detector="ffmpeg"`` (FFmpeg's ``select`` scene score, as the MiDaS pipeline) or with
clip sampling (``clip_length`` > 0, the ``midas`` preset) the check pass also scores every frame
against the one before it (:mod:`svde.data.stereo.shots`) and lists the cuts: clip sampling then
takes only frames of clips that fit inside a shot (:func:`~svde.data.stereo.shots.clip_frames`),
and plain sampling with the ``ffmpeg`` score drops a frame that opens or closes a shot. The scan
runs on the uncropped views (bars are found in the same pass).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from svde.data.base import DataError
from svde.data.io import read_image
from svde.data.layout import USER_IMAGE_EXTS
from svde.data.stereo.shots import FFmpegSceneScore, clip_frames
from svde.errors import UserError

log = logging.getLogger(__name__)
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ts", ".m2ts")
LAYOUTS = ("auto", "pairs", "sbs", "tb")  # auto: folders are pairs, video files sbs
BAR_LEVEL = 16.0  # a row/column whose mean grey level stays below this in every probed frame is a bar
PROBE_FRAMES = 24  # frames probed for bars
THUMB = (64, 36)
CUT_DETECTORS = {"content": 27.0, "ffmpeg": 0.1}  # each score's default threshold (PySceneDetect's; MiDaS')


@dataclass(frozen=True)
class Sampling:
    """How frames are taken from the inputs (recorded in the manifest: part of what makes a dataset).

    ``every``: every N-th video frame (or ``fps``: about that many per second); ``layout`` and
    ``half``: how a video packs its views; ``crop_bars``: crop letterbox bars; ``cut_detector``:
    the score of two consecutive frames, ``content`` or ``ffmpeg`` (:data:`CUT_DETECTORS`);
    ``cut_threshold``: the score above which they are a scene cut (``None``: the detector's
    default); ``dup_threshold``: the content score below which a sampled frame repeats the
    previous one (0 turns either test off); ``clip_length`` > 0: MiDaS' clip sampling (clips of
    that many seconds at ``fps``/``every``, one per ``clip_gap`` seconds of a shot;
    :func:`~svde.data.stereo.shots.clip_frames`).
    """

    every: int = 1
    fps: float | None = None
    layout: str = "auto"
    half: bool = False
    crop_bars: bool = True
    cut_threshold: float | None = None
    dup_threshold: float = 1.0
    cut_detector: str = "content"
    clip_length: float = 0.0
    clip_gap: float = 4.0

    def __post_init__(self) -> None:
        if self.cut_threshold is None and self.cut_detector in CUT_DETECTORS:
            object.__setattr__(self, "cut_threshold", CUT_DETECTORS[self.cut_detector])

    @property
    def scans_cuts(self) -> bool:
        """Whether the check pass scores every frame (clip sampling, or FFmpeg's score)."""
        return self.clip_length > 0 or self.cut_detector == "ffmpeg"

    def check(self) -> Sampling:
        problems = []
        if self.every < 1:
            problems.append(f"--every must be >= 1, got {self.every}")
        if self.fps is not None and not (np.isfinite(self.fps) and self.fps > 0):
            problems.append(f"--fps must be > 0, got {self.fps}")
        if self.layout not in LAYOUTS:
            problems.append(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.cut_detector not in CUT_DETECTORS:
            problems.append(f"--cut-detector must be one of {', '.join(CUT_DETECTORS)}, got {self.cut_detector!r}")
        for name in ("cut_threshold", "dup_threshold", "clip_length"):
            value = getattr(self, name)
            if value is None or not (np.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        if not (np.isfinite(self.clip_gap) and self.clip_gap > 0):
            problems.append(f"clip_gap must be > 0 s, got {self.clip_gap}")
        if problems:
            raise UserError("; ".join(problems))
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Packing:
    """How one video's frames hold the two views: ``layout`` (sbs/tb), ``half``, and the bars'
    ``crop`` (top, bottom, left, right) in pixels of each packed view."""

    layout: str
    half: bool
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(frozen=True)
class FrameRef:
    """One frame to prepare: its output ``name``, the ``source`` file or folder, and where in it.

    ``previous``: the frame index sampled before this one (for the near-duplicate test; -1: none).
    ``cut``: why the frame is dropped at a scene cut, decided by the check pass (``ffmpeg`` score).
    """

    name: str
    source: str
    kind: str  # "pairs" or "video"
    index: int  # frame index in the video, or pair index in the folder
    time_s: float | None = None
    left_path: str | None = None
    right_path: str | None = None
    packing: Packing | None = None
    previous: int = -1
    cut: str | None = None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """The images of a pair folder's view by name; two files of one name (``a.png``, ``a.jpg``) are refused."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in USER_IMAGE_EXTS:
            if p.stem in found:
                raise UserError(f"{folder}: {found[p.stem].name} and {p.name} would both be frame {p.stem!r}; "
                                f"keep one image per name")
            found[p.stem] = p
    return found


def _pair_frames(root: Path) -> list[FrameRef]:
    left_dir, right_dir = root / "left", root / "right"
    if not left_dir.is_dir() or not right_dir.is_dir():
        raise UserError(f"{root}: expected a pair folder with left/ and right/ sub-folders "
                        f"(left/<name>.png + right/<name>.png), or a 3D video file")
    rights = _images_by_stem(right_dir)
    lefts = sorted(_images_by_stem(left_dir).values())
    if not lefts:
        raise UserError(f"{left_dir}: no images ({', '.join(USER_IMAGE_EXTS)})")
    missing = [p.name for p in lefts if p.stem not in rights]
    if missing:
        raise UserError(f"{right_dir}: no right view for {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}; expected right/<name>.<ext> for every left/<name>.<ext>")
    source = str(root.resolve())  # resume must not depend on how the input was spelled
    return [FrameRef(p.stem, source, "pairs", i, None, str(p), str(rights[p.stem])) for i, p in enumerate(lefts)]


def split_views(frame: np.ndarray, packing: Packing) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) RGB views of a decoded BGR 3D-video frame: split, bars cropped, aspect restored.

    Example:
        >>> frame = np.zeros((4, 10, 3), np.uint8); frame[:, 5:] = 255
        >>> left, right = split_views(frame, Packing("sbs", half=True))
        >>> left.shape, int(left.max()), int(right.min())
        ((4, 10, 3), 0, 255)
    """
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    if packing.layout == "sbs":
        views = rgb[:, : w // 2], rgb[:, w // 2: 2 * (w // 2)]
    else:
        views = rgb[: h // 2], rgb[h // 2: 2 * (h // 2)]
    top, bottom, left, right = packing.crop
    vh, vw = views[0].shape[:2]
    views = tuple(v[top:vh - bottom, left:vw - right] for v in views)
    if packing.half:  # stretch the squeezed axis back to twice its size
        vh, vw = views[0].shape[:2]
        size = (2 * vw, vh) if packing.layout == "sbs" else (vw, 2 * vh)
        views = tuple(cv2.resize(v, size, interpolation=cv2.INTER_LINEAR) for v in views)
    return np.ascontiguousarray(views[0]), np.ascontiguousarray(views[1])


def _bars(levels: np.ndarray) -> tuple[int, int]:
    """Dark rows (or columns) at each end of ``levels`` (the brightest mean level seen per line)."""
    bright = np.flatnonzero(levels >= BAR_LEVEL)
    if bright.size == 0 or bright[-1] - bright[0] + 1 < levels.size // 2:
        return 0, 0  # a dark video, not bars: keep everything
    return int(bright[0]), int(levels.size - 1 - bright[-1])


def _cut_scorer(detector: str, layout: str, half: bool) -> Callable[[np.ndarray], float]:
    """The score of each decoded BGR frame against the previous one, for the check pass's scan."""
    if detector == "ffmpeg":
        ffmpeg = FFmpegSceneScore()
        return lambda frame: ffmpeg(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    previous: list[np.ndarray] = []

    def content(frame: np.ndarray) -> float:
        thumb = thumbnail(split_views(frame, Packing(layout, half))[0])
        score = _difference(previous[0], thumb) if previous else 0.0
        previous[:] = [thumb]
        return float(score)
    return content


def video_info(path: Path, layout: str, crop_bars: bool, scan: Sampling | None = None, needs_fps: bool = False
               ) -> tuple[int, float, Packing, dict[int, float] | None]:
    """(decodable frames, fps, the packing with its bar crop, cut scores) of a 3D video, checked
    (``needs_fps``: a video that records no frame rate is refused before its frames are read).

    With ``scan`` (a :class:`Sampling` whose :attr:`~Sampling.scans_cuts`) every frame is decoded
    and scored against the one decoded before it (``{index: score}``); otherwise scores are None.
    """
    score = _cut_scorer(scan.cut_detector, layout, scan.half) if scan is not None else None
    scores: dict[int, float] | None = {} if score is not None else None
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(f"{path}: cannot open the video (unreadable, or not a video format OpenCV can decode)")
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if needs_fps and not fps > 0:
            raise UserError(f"{path}: the video does not record its frame rate; use --every N instead of --fps "
                            f"(and no --clip-length)")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if layout == "sbs" and width % 2:
            raise UserError(f"{path}: a side-by-side video must have an even width (left half | right half), "
                            f"got {width}x{height}")
        if layout == "tb" and height % 2:
            raise UserError(f"{path}: a top-bottom video must have an even height (left on top), got {width}x{height}")
        probe = set(np.linspace(0, max(declared - 1, 0), PROBE_FRAMES).round().astype(int).tolist()) \
            if declared > 0 else set(range(0, 10 * PROBE_FRAMES, 10))
        rows, cols, count, failed = None, None, 0, []
        # A corrupt frame fails its grab() and the next grab() goes on with the frame after it
        # (OpenCV's FFmpeg reader), so up to the declared count a failure is not the end.
        while True:
            if not cap.grab():
                if count >= declared:
                    break
                failed.append(count)
            elif (crop_bars and count in probe) or score is not None:
                ok, frame = cap.retrieve()
                if ok and score is not None:
                    scores[count] = score(frame)
                if ok and crop_bars and count in probe:
                    views = split_views(frame, Packing(layout, False))
                    grey = np.maximum(*(cv2.cvtColor(v, cv2.COLOR_RGB2GRAY).astype(np.float32) for v in views))
                    r, c = grey.mean(axis=1), grey.mean(axis=0)
                    rows, cols = (r, c) if rows is None else (np.maximum(rows, r), np.maximum(cols, c))
            count += 1
    finally:
        cap.release()
    while failed and failed[-1] == count - 1:  # failures up to the end: the file stops early
        failed.pop()
        count -= 1
    if count == 0:
        raise UserError(f"{path}: no frame could be decoded (unreadable or empty video)")
    if declared > 0 and count < declared:
        raise UserError(f"{path}: truncated video: its header declares {declared} frames but only {count} decode")
    if failed:
        log.warning("%s: %d corrupt frame(s) do not decode (first: %s); those sampled are dropped with that reason",
                    path, len(failed), ", ".join(map(str, failed[:5])))
    crop = (*_bars(rows), *_bars(cols)) if rows is not None else (0, 0, 0, 0)
    if any(crop):
        log.info("%s: cropping bars (top, bottom, left, right) = %s px", path, crop)
    return count, fps, Packing(layout, False, crop), scores


def _cut_reasons(scores: dict[int, float], sampling: Sampling) -> dict[int, str]:
    """Frame index -> why it is dropped at a cut: it opens a shot (its score) or closes one (the next's)."""
    reasons: dict[int, str] = {}
    for i, value in sorted(scores.items()):
        if value > sampling.cut_threshold:
            text = (f"at a scene cut: frames {i - 1} and {i} score {value:.3f} ({sampling.cut_detector} scene score) "
                    f"> cut_threshold {sampling.cut_threshold:g}")
            reasons.setdefault(i - 1, text)
            reasons.setdefault(i, text)
    return reasons


def _video_frames(path: Path, sampling: Sampling) -> list[FrameRef]:
    layout = "sbs" if sampling.layout == "auto" else sampling.layout
    count, video_fps, packing, scores = video_info(path, layout, sampling.crop_bars,
                                                   sampling if sampling.scans_cuts else None,
                                                   needs_fps=sampling.fps is not None or sampling.clip_length > 0)
    packing = Packing(layout, sampling.half, packing.crop)
    step = sampling.every
    if sampling.fps is not None:
        step = max(1, int(round(video_fps / sampling.fps)))
    rate = video_fps if video_fps > 0 else None
    cut_reasons: dict[int, str] = {}
    if sampling.clip_length > 0:  # MiDaS' clips: every listed frame lies inside a shot
        cuts = [i for i, value in (scores or {}).items() if 0 < sampling.cut_threshold < value]
        indices = clip_frames(count, video_fps, cuts, video_fps / step, sampling.clip_length, sampling.clip_gap)
        log.info("%s: %d scene cuts (%s score > %g), %d frames in clips", path, len(cuts), sampling.cut_detector,
                 sampling.cut_threshold, len(indices))
    else:
        indices = list(range(0, count, step))
        if sampling.cut_detector == "ffmpeg" and sampling.cut_threshold > 0:
            cut_reasons = _cut_reasons(scores or {}, sampling)
    previous = [-1] + indices[:-1] if sampling.clip_length > 0 else [i - step for i in indices]
    return [FrameRef(f"{path.stem}_f{i:06d}", str(path.resolve()), "video", i, None if rate is None else round(i / rate, 6),
                     packing=packing, previous=p, cut=cut_reasons.get(i)) for i, p in zip(indices, previous)]


def list_frames(inputs: list[Path], sampling: Sampling | None = None) -> list[FrameRef]:
    """Every frame to prepare from ``inputs`` (pair folders and 3D videos), checked, in order."""
    sampling = (sampling or Sampling()).check()
    frames: list[FrameRef] = []
    given: dict[Path, Path] = {}
    for path in map(Path, inputs):
        resolved = path.resolve()
        if path.exists() and resolved in given:  # e.g. overlapping shell globs: once is enough
            log.warning("%s: given twice (also as %s); read once", path, given[resolved])
            continue
        given[resolved] = path
        if path.is_dir():
            if sampling.layout not in ("auto", "pairs"):
                raise UserError(f"{path}: a folder is read as pairs (left/, right/), not as --layout {sampling.layout}")
            frames += _pair_frames(path)
        elif path.is_file():
            if sampling.layout == "pairs":
                raise UserError(f"{path}: --layout pairs expects folders with left/ and right/, got a file")
            if path.suffix.lower() not in VIDEO_EXTS:
                raise UserError(f"{path}: not a video ({', '.join(VIDEO_EXTS)}) nor a pair folder")
            frames += _video_frames(path, sampling)
        else:
            raise UserError(f"{path}: no such file or folder")
    seen: dict[str, str] = {}
    for f in frames:
        if f.name in seen and seen[f.name] != f.source:
            raise UserError(f"frame name {f.name!r} comes from both {seen[f.name]} and {f.source}; "
                            f"rename one input so that output names are unique")
        seen[f.name] = f.source
    return frames


def _read_pair(ref: FrameRef) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    try:
        return read_image(ref.left_path), read_image(ref.right_path), None
    except DataError as exc:
        return None, None, f"unreadable image: {exc}"


def thumbnail(view: np.ndarray) -> np.ndarray:
    """The 64x36 HSV thumbnail (float32, OpenCV's H 0..179, S and V 0..255) the tests compare."""
    small = cv2.resize(view, THUMB, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2HSV).astype(np.float32)


def _difference(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    return None if a is None or b is None else float(np.mean(np.abs(a - b)))


class _VideoReader:
    """Sequential decoding of one video, keeping the thumbnails of the frames the tests need and
    the last decoded frame (the look-ahead frame is often the next one sampled)."""

    def __init__(self, path: str) -> None:
        self.path, self.cap, self.pos = path, cv2.VideoCapture(path), 0
        self.thumbs: dict[int, np.ndarray] = {}
        self.last: tuple[int, np.ndarray] | None = None

    def advance_to(self, index: int, needed: set[int], packing: Packing) -> np.ndarray | None:
        """The decoded BGR frame ``index`` (None: it does not decode), keeping thumbnails of ``needed``."""
        while self.pos <= index:
            if self.cap.grab() and (self.pos in needed or self.pos == index):
                ok, decoded = self.cap.retrieve()
                if ok and decoded is not None:
                    self.thumbs[self.pos] = thumbnail(split_views(decoded, packing)[0])
                    self.last = (self.pos, decoded)
            self.pos += 1
        return self.last[1] if self.last is not None and self.last[0] == index else None


def _selection_reason(ref: FrameRef, thumbs: dict[int, np.ndarray], sampling: Sampling) -> str | None:
    """Why a decoded video frame is not used (scene cut, near-duplicate), or None.

    Cuts are tested here with the content score and plain sampling only: the ``ffmpeg`` score and
    clip sampling decided them in the check pass (``ref.cut``; clips hold no cut)."""
    here = thumbs.get(ref.index)
    if ref.cut is not None:
        return ref.cut
    if sampling.cut_threshold > 0 and sampling.cut_detector == "content" and sampling.clip_length == 0:
        for a, b in ((ref.index - 1, ref.index), (ref.index, ref.index + 1)):
            diff = _difference(thumbs.get(a), thumbs.get(b))
            if diff is not None and diff > sampling.cut_threshold:
                return (f"at a scene cut: frames {a} and {b} differ by {diff:.1f} (HSV content score) "
                        f"> cut_threshold {sampling.cut_threshold:g}")
    if sampling.dup_threshold > 0 and ref.previous >= 0:
        diff = _difference(thumbs.get(ref.previous), here)
        if diff is not None and diff < sampling.dup_threshold:
            return (f"near-duplicate of frame {ref.previous}: differs by {diff:.2f} (HSV content score) "
                    f"< dup_threshold {sampling.dup_threshold:g}")
    return None


def read_frames(frames: list[FrameRef], sampling: Sampling | None = None
                ) -> Iterator[tuple[FrameRef, np.ndarray | None, np.ndarray | None, str | None]]:
    """``(ref, left, right, reason)`` for each of ``frames`` in order; ``reason`` is set (and the
    views ``None``) when a frame is not used. Videos are decoded sequentially, once."""
    sampling = sampling or Sampling()
    reader: _VideoReader | None = None
    try:
        for ref in frames:
            if ref.kind == "pairs":
                yield (ref, *_read_pair(ref))
                continue
            if reader is None or reader.path != ref.source:  # frames come grouped by video: one open at a time
                if reader is not None:
                    reader.cap.release()
                reader = _VideoReader(ref.source)
            needed = {ref.previous, ref.index - 1, ref.index, ref.index + 1}
            frame = reader.advance_to(ref.index, needed, ref.packing)
            if frame is None:
                yield ref, None, None, "the frame could not be decoded (corrupt frame)"
                continue
            reader.advance_to(ref.index + 1, needed, ref.packing)  # one frame of look-ahead for a cut
            reason = _selection_reason(ref, reader.thumbs, sampling)
            reader.thumbs = {i: t for i, t in reader.thumbs.items() if i > ref.index - 2}
            if reason is not None:
                yield ref, None, None, reason
            else:
                yield (ref, *split_views(frame, ref.packing), None)
    finally:
        if reader is not None:
            reader.cap.release()
