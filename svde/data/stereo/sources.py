"""Where stereo frames come from: folders of rectified pairs and side-by-side (SBS) videos.

* A pair folder holds ``left/<name>.<ext>`` and ``right/<name>.<ext>`` (any image extension of
  :data:`svde.data.layout.USER_IMAGE_EXTS`), paired by file stem, as in the ``stereo_folder``
  layout this tool writes.
* An SBS video holds the left view in its left half and the right view in its right half (the
  "full side-by-side" layout of 3D films and stereo cameras), so its width must be even.

Every input is checked before any work (:func:`list_frames`): a folder without pairs, an
unreadable video, a truncated one (fewer decodable frames than its header declares), an SBS video
of odd width. Frames are then read one by one (:func:`read_frames`); an unreadable image becomes a
frame with a ``reason`` instead of pixels, and is skipped with that reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from svde.data.base import DataError
from svde.data.io import read_image
from svde.data.layout import USER_IMAGE_EXTS
from svde.errors import UserError

log = logging.getLogger(__name__)
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class FrameRef:
    """One frame to prepare: its output ``name``, the ``source`` file or folder, and where in it."""

    name: str
    source: str
    kind: str  # "pairs" or "sbs_video"
    index: int  # frame index in the video, or pair index in the folder
    time_s: float | None = None
    left_path: str | None = None
    right_path: str | None = None


def _pair_frames(root: Path) -> list[FrameRef]:
    left_dir, right_dir = root / "left", root / "right"
    if not left_dir.is_dir() or not right_dir.is_dir():
        raise UserError(f"{root}: expected a pair folder with left/ and right/ sub-folders "
                        f"(left/<name>.png + right/<name>.png), or a side-by-side video file")
    rights = {p.stem: p for p in right_dir.iterdir() if p.is_file() and p.suffix.lower() in USER_IMAGE_EXTS}
    lefts = sorted(p for p in left_dir.iterdir() if p.is_file() and p.suffix.lower() in USER_IMAGE_EXTS)
    if not lefts:
        raise UserError(f"{left_dir}: no images ({', '.join(USER_IMAGE_EXTS)})")
    missing = [p.name for p in lefts if p.stem not in rights]
    if missing:
        raise UserError(f"{right_dir}: no right view for {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}; expected right/<name>.<ext> for every left/<name>.<ext>")
    return [FrameRef(p.stem, str(root), "pairs", i, None, str(p), str(rights[p.stem])) for i, p in enumerate(lefts)]


def video_info(path: Path) -> tuple[int, float, int, int]:
    """(decodable frames, fps, width, height) of a video, checked: readable, not truncated, even width."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(f"{path}: cannot open the video (unreadable, or not a video format OpenCV can decode)")
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise UserError(f"{path}: no frame could be decoded (unreadable or empty video)")
    if declared > 0 and count < declared:
        raise UserError(f"{path}: truncated video: its header declares {declared} frames but only {count} decode")
    if width % 2:
        raise UserError(f"{path}: a side-by-side video must have an even width (left half | right half), "
                        f"got {width}x{height}")
    return count, fps, width, height


def _video_frames(path: Path, every: int, fps: float | None) -> list[FrameRef]:
    count, video_fps, _, _ = video_info(path)
    step = every
    if fps is not None:
        if not video_fps > 0:
            raise UserError(f"{path}: the video does not record its frame rate; use --every N instead of --fps")
        step = max(1, int(round(video_fps / fps)))
    rate = video_fps if video_fps > 0 else None
    return [FrameRef(f"{path.stem}_f{i:06d}", str(path), "sbs_video", i, None if rate is None else i / rate)
            for i in range(0, count, step)]


def list_frames(inputs: list[Path], every: int = 1, fps: float | None = None) -> list[FrameRef]:
    """Every frame to prepare from ``inputs`` (pair folders and SBS videos), checked, in order.

    Videos are sampled every ``every`` frames, or at about ``fps`` frames per second.
    """
    frames: list[FrameRef] = []
    for path in inputs:
        if path.is_dir():
            frames += _pair_frames(path)
        elif path.is_file():
            if path.suffix.lower() not in VIDEO_EXTS:
                raise UserError(f"{path}: not a video ({', '.join(VIDEO_EXTS)}) nor a pair folder")
            frames += _video_frames(path, every, fps)
        else:
            raise UserError(f"{path}: no such file or folder")
    seen: dict[str, str] = {}
    for f in frames:
        if f.name in seen and seen[f.name] != f.source:
            raise UserError(f"frame name {f.name!r} comes from both {seen[f.name]} and {f.source}; "
                            f"rename one input so that output names are unique")
        seen[f.name] = f.source
    return frames


def split_sbs(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) halves of a decoded BGR side-by-side frame, as RGB."""
    half = frame.shape[1] // 2
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb[:, :half]), np.ascontiguousarray(rgb[:, half:2 * half])


def _read_pair(ref: FrameRef) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    try:
        return read_image(ref.left_path), read_image(ref.right_path), None
    except DataError as exc:
        return None, None, f"unreadable image: {exc}"


def read_frames(frames: list[FrameRef]) -> Iterator[tuple[FrameRef, np.ndarray | None, np.ndarray | None, str | None]]:
    """``(ref, left, right, reason)`` for each of ``frames`` in order; ``reason`` is set (and the
    views ``None``) when a frame cannot be read. Videos are decoded sequentially, once."""
    caps: dict[str, tuple[cv2.VideoCapture, list[int]]] = {}
    try:
        for ref in frames:
            if ref.kind == "pairs":
                yield (ref, *_read_pair(ref))
                continue
            if ref.source not in caps:
                caps[ref.source] = (cv2.VideoCapture(ref.source), [0])
            cap, pos = caps[ref.source]
            while pos[0] < ref.index:  # skip unsampled frames without converting them
                cap.grab()
                pos[0] += 1
            ok, frame = cap.read()
            pos[0] += 1
            if not ok or frame is None:
                yield ref, None, None, "the frame could not be decoded (corrupt frame)"
            else:
                yield (ref, *split_sbs(frame), None)
    finally:
        for cap, _ in caps.values():
            cap.release()
