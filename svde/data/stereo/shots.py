"""Scene cuts over a whole video, and MiDaS' clip sampling between them (the ``midas`` preset).

Two cut scores, each a function of two consecutive decoded frames:

* ``content`` (the default of :mod:`svde.data.stereo.sources`): PySceneDetect's content score
  (Breakthrough/PySceneDetect, ``website/pages/api.md``, "Content-Aware Detector"), the mean
  absolute HSV difference on 64x36 thumbnails of the left view; a cut above 27.
* ``ffmpeg``: FFmpeg's ``scene`` score of the ``select`` filter, which the MiDaS 3D-movie pipeline
  thresholds at 0.1 (lasinger/3DVideos2Stereo, ``run_extractFrames.sh``:
  ``ffprobe ... select=gt(scene\\,0.1)``, written to ``shots.txt``). FFmpeg computes it in
  ``get_scene_score`` (FFmpeg/FFmpeg, ``libavfilter/f_select.c``) on the whole RGB24 frame: ``mafd``
  is the mean absolute difference of the frame and the previous one over every sample (0..255),
  and the score is ``min(mafd, |mafd - previous mafd|) / 100`` clipped to [0, 1] (0 for the first
  frame). :class:`FFmpegSceneScore` computes the same on the decoded packed frame (both views,
  bars included, as ``ffprobe -f lavfi movie=...`` sees it), as a float mean (FFmpeg sums 8x8 blocks
  that skip the last partial block row and column, and older versions divided as integers).

A frame whose score against the frame before it exceeds the threshold opens a new shot: it is a
*cut* (its index is in the cut list, as its ``pkt_pts_time`` is in ``shots.txt``).

:func:`clip_frames` is MiDaS' sampling (lasinger/3DVideos2Stereo, ``genTraining_recurr.py``,
``processChapter_cutlist``, run as the repository's README says for the training set:
``--numRecurrent 24 --fpsRecurrent 24 --fpsSingle 4``): one clip per ``gap`` seconds of a shot
(``jump = min(frames to the next cut, origFramerate * 4)``), started at the shot's first frame that
is not a cut; a clip is used only when ``clip_length`` seconds plus two lead frames fit before the
next cut (``seqLength < numRecurrent * stepRecurrent`` is skipped), and from it every
``round(fps_video / fps)``-th frame after the two lead frames is taken: at 24 fps, 4 fps and 1 s,
frames ``n + 3, n + 9, n + 15, n + 21`` of a clip started at frame ``n``.

Example:
    >>> clip_frames(200, 24.0, cuts=[100], fps=4, clip_length=1.0, gap=4.0)
    [4, 10, 16, 22, 104, 110, 116, 122]
"""

from __future__ import annotations

import bisect

import cv2
import numpy as np

LEAD_FRAMES = 2  # genTraining_recurr.py: numRecurrent + stepRecurrent * 2, "extra frames in case of flow estimation"


class FFmpegSceneScore:
    """FFmpeg's ``select`` scene score of each frame against the previous one (see the module)."""

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None
        self.previous_mafd = 0.0

    def __call__(self, frame: np.ndarray) -> float:
        """The score of ``frame`` (uint8 (H, W, 3)); 0 for the first frame or a change of size.

        Example:
            >>> score = FFmpegSceneScore()
            >>> black, grey = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 30, np.uint8)
            >>> score(black), score(grey), score(grey)  # mafd 30 then 0: min(30, 30) / 100, min(0, 30) / 100
            (0.0, 0.3, 0.0)
        """
        score = 0.0
        if self.previous is not None and self.previous.shape == frame.shape:
            mafd = float(cv2.absdiff(frame, self.previous).mean())
            score = float(np.clip(min(mafd, abs(mafd - self.previous_mafd)) / 100.0, 0.0, 1.0))
            self.previous_mafd = mafd
        self.previous = frame
        return score


def clip_frames(count: int, rate: float, cuts: list[int], fps: float, clip_length: float = 1.0,
                gap: float = 4.0) -> list[int]:
    """The frame indices MiDaS' clip sampling takes from a video of ``count`` frames at ``rate`` fps.

    ``cuts``: the indices of the first frames of shots (sorted or not); the end of the video closes
    the last shot. ``fps``: frames taken per second inside a clip; ``clip_length``: a clip's length
    in seconds (plus :data:`LEAD_FRAMES`); ``gap``: seconds between the starts of a shot's clips.
    Frame 0 starts no clip (``pts_time <= chapter start`` is skipped in the original).
    """
    cut_list = sorted(set(int(c) for c in cuts if 0 <= c < count))
    cut_set = set(cut_list)
    window = int(round(clip_length * rate)) + LEAD_FRAMES
    step = max(1, int(round(rate / fps)))
    jump_max = int(round(gap * rate))
    frames: list[int] = []
    next_start = 0
    for n in range(1, count):
        if n in cut_set or n < next_start:
            continue
        after = bisect.bisect_right(cut_list, n)
        next_cut = cut_list[after] if after < len(cut_list) else count
        length = next_cut - n
        next_start = n + min(length, jump_max)
        if length < window:
            continue
        frames += [n + 1 + ri for ri in range(LEAD_FRAMES, window) if (ri - LEAD_FRAMES) % step == 0]
    return frames
