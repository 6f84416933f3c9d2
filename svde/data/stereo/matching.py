"""Disparity from a rectified stereo pair, with the pixels that can be trusted.

:func:`sgbm_disparity` (the ``sgbm`` matcher of :func:`svde.data.stereo.estimate_disparity`) runs OpenCV's semi-global matcher (``cv2.StereoSGBM``; Hirschmuller,
"Stereo Processing by Semiglobal Matching and Mutual Information", TPAMI 2008) from the left view
and, on the mirrored pair, from the right view, then keeps a left pixel only when

* both views agree (left-right consistency: ``|d_L(x) - d_R(x - d_L(x))| <= lr_tolerance`` px),
* the matcher found a unique minimum (SGBM's ``uniquenessRatio``; speckles are removed by its
  ``speckleWindowSize``/``speckleRange``),
* and the left image has texture there (grey-level standard deviation over the matching window
  ``>= min_texture``, when > 0).

Any disparity in the search range is kept, zero and negative ones included (converged footage: 3D
films put content behind the screen); there is no minimum-disparity rule.

Disparity is in pixels of the left image, larger = closer (``x_right = x_left - d``), as in the
Middlebury 2014 and Scene Flow ground truth (vision.middlebury.edu/stereo/data/scenes2014,
lmb.informatik.uni-freiburg.de/resources/datasets/SceneFlowDatasets.en.html).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> right = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    >>> left = np.roll(right, 8, axis=1)  # every pixel 8 px further right in the left view
    >>> disp, valid = sgbm_disparity(left, right, StereoSettings(num_disparities=16))
    >>> float(np.median(disp[valid]))
    8.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from svde.errors import UserError

MIN_SIDE = 16  # smaller views break OpenCV's feature pyramid (1 px) and hold nothing to learn from
RAFT_MODELS = ("large", "small")  # torchvision.models.optical_flow.raft_large / raft_small
SGBM_MODES = {"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
              "hh": cv2.STEREO_SGBM_MODE_HH}


@dataclass(frozen=True)
class StereoSettings:
    """The matcher and filter settings (recorded in the manifest; a changed one is a different dataset).

    ``lr_tolerance`` ``inf`` turns the left-right check off. The SGBM search range is
    ``[min_disparity, min_disparity + num_disparities)``; ``num_disparities`` 0 (the default)
    chooses it per pair from its sparse feature matches (:func:`search_range`), which also
    finds the negative disparities of converged footage (3D films: content behind the screen).
    """

    num_disparities: int = 0  # sgbm only (up to mode)
    min_disparity: int = 0
    block_size: int = 5
    uniqueness_ratio: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    mode: str = "3way"
    lr_tolerance: float = 1.0  # both matchers
    min_texture: float = 1.0
    max_vertical: float = 1.0
    raft_model: str = "large"  # raft only
    raft_iters: int = 12
    raft_weights: str = ""

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty: fine)."""
        out = []
        if self.num_disparities < 0 or self.num_disparities % 16:
            out.append(f"num_disparities must be 0 (auto) or a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            out.append(f"block_size must be an odd number >= 1, got {self.block_size}")
        if self.mode not in SGBM_MODES:
            out.append(f"mode must be one of {', '.join(SGBM_MODES)}, got {self.mode!r}")
        for name in ("uniqueness_ratio", "speckle_window", "speckle_range"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr_tolerance >= 0:
            out.append(f"lr_tolerance must be >= 0 (inf: no left-right check), got {self.lr_tolerance}")
        if self.raft_model not in RAFT_MODELS:
            out.append(f"raft_model must be one of {', '.join(RAFT_MODELS)}, got {self.raft_model!r}")
        if self.raft_iters < 1:
            out.append(f"raft_iters must be >= 1, got {self.raft_iters}")
        for name in ("min_texture", "max_vertical"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                out.append(f"{name} must be a finite number >= 0, got {value}")
        return out

    def check(self) -> StereoSettings:
        """``self``, or a :class:`~svde.errors.UserError` listing every problem."""
        problems = self.problems()
        if problems:
            raise UserError("stereo settings: " + "; ".join(problems))
        return self

    def as_dict(self, matcher: str | None = None) -> dict[str, Any]:
        """The settings as JSON values (``inf``, "no left-right check", as the string ``"inf"``);
        with ``matcher``, only those it reads.

        >>> sorted(StereoSettings().as_dict("raft"))
        ['lr_tolerance', 'max_vertical', 'min_texture', 'raft_iters', 'raft_model', 'raft_weights']
        """
        return {k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items() if k not in UNREAD_BY.get(matcher, ())}


_RAFT_ONLY = ("raft_model", "raft_iters", "raft_weights")
UNREAD_BY = {  # the settings a matcher never reads (left out of its manifest: they cannot shape the data)
    "sgbm": _RAFT_ONLY,
    "raft": tuple(f.name for f in dataclasses.fields(StereoSettings) if f.name not in
                  _RAFT_ONLY + ("lr_tolerance", "min_texture", "max_vertical")),
}


def _sgbm(settings: StereoSettings, min_disparity: int, num_disparities: int) -> cv2.StereoSGBM:
    bs = settings.block_size
    return cv2.StereoSGBM_create(
        minDisparity=min_disparity, numDisparities=num_disparities, blockSize=bs,
        P1=8 * 3 * bs * bs, P2=32 * 3 * bs * bs, disp12MaxDiff=-1,  # our own check, on both full maps
        uniquenessRatio=settings.uniqueness_ratio, speckleWindowSize=settings.speckle_window,
        speckleRange=settings.speckle_range, mode=SGBM_MODES[settings.mode])


def _match(matcher: cv2.StereoSGBM, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """SGBM disparity of ``left`` (float32 px, NaN = no match).

    SGBM leaves the first ``min_disparity + num_disparities`` columns (and with a negative
    ``min_disparity`` the last ``-min_disparity``) without a result; padding both images by that
    much (edge replicated) gives those columns a search range.
    """
    lo = max(matcher.getMinDisparity() + matcher.getNumDisparities(), 0)
    hi = max(-matcher.getMinDisparity(), 0)
    lp = cv2.copyMakeBorder(left, 0, 0, lo, hi, cv2.BORDER_REPLICATE)
    rp = cv2.copyMakeBorder(right, 0, 0, lo, hi, cv2.BORDER_REPLICATE)
    raw = matcher.compute(lp, rp)[:, lo:lo + left.shape[1]]
    disp = raw.astype(np.float32) / 16.0  # SGBM returns fixed point with 4 fractional bits
    disp[raw < (matcher.getMinDisparity() * 16)] = np.nan
    return disp


def texture(gray: np.ndarray, block_size: int) -> np.ndarray:
    """Grey-level standard deviation over a ``block_size`` square window (float32, 0..255 scale)."""
    g = gray.astype(np.float32)
    k = (block_size, block_size)
    mean = cv2.blur(g, k)
    var = cv2.blur(g * g, k) - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def check_pair(left: np.ndarray, right: np.ndarray, what: str = "stereo pair") -> None:
    """Both views must be uint8 (H, W, 3) of one size, at least :data:`MIN_SIDE` px a side."""
    for name, img in (("left", left), ("right", right)):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise UserError(f"{what}: the {name} view must be uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
    if left.shape != right.shape:
        raise UserError(f"{what}: left is {left.shape[1]}x{left.shape[0]} but right is "
                        f"{right.shape[1]}x{right.shape[0]} (WxH); expected one size")
    if min(left.shape[:2]) < MIN_SIDE:
        raise UserError(f"{what}: the views are {left.shape[1]}x{left.shape[0]} (WxH); expected at least "
                        f"{MIN_SIDE} px a side")


def left_right_consistent(d_left: np.ndarray, d_right: np.ndarray, tolerance: float) -> np.ndarray:
    """Where the left view's disparity is confirmed by the right view's (bool, (H, W)).

    ``d_left[y, x]`` maps the left pixel x to ``x - d_left`` in the right view, whose own
    disparity ``d_right`` (same sign convention, in right-view pixels) must agree within
    ``tolerance`` px there; NaN in either map is never consistent, nor is a pixel that maps
    outside the right view. ``tolerance`` ``inf``: every finite ``d_left``.

    Example:
        >>> d = np.full((1, 6), 2.0, np.float32)
        >>> left_right_consistent(d, d, 1.0).astype(int).tolist()
        [[0, 0, 1, 1, 1, 1]]
    """
    height, width = d_left.shape
    if not np.isfinite(tolerance):
        return np.isfinite(d_left)
    cols = np.arange(width, dtype=np.float32)[None, :]
    with np.errstate(invalid="ignore"):
        target = np.rint(cols - d_left)
        inside = (target >= 0) & (target < width)
        rows = np.broadcast_to(np.arange(height)[:, None], (height, width))
        back = np.full((height, width), np.nan, np.float32)
        back[inside] = d_right[rows[inside], target[inside].astype(np.intp)]
        return inside & (np.abs(d_left - back) <= tolerance)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, settings: StereoSettings,
                   device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The ``sgbm`` matcher: left-view disparity (float32 px, 0 where invalid) and validity (bool).

    ``left``/``right``: rectified uint8 (H, W, 3) RGB views of one size (checked by the caller,
    :func:`svde.data.stereo.estimate_disparity`); ``device`` is unused (OpenCV runs on the CPU).
    """
    d_left, d_right = sgbm_maps(left, right, settings)
    valid = left_right_consistent(d_left, d_right, settings.lr_tolerance)
    if settings.min_texture > 0:
        valid &= texture(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), settings.block_size) >= settings.min_texture
    return np.where(valid, d_left, 0.0).astype(np.float32), valid


def sgbm_maps(left: np.ndarray, right: np.ndarray, settings: StereoSettings) -> tuple[np.ndarray, np.ndarray]:
    """SGBM's unchecked disparities of both views (float32 px, NaN = no match): ``d_left`` with
    ``x_right = x_left - d_left``, ``d_right`` with ``x_left = x_right + d_right``."""
    matcher = _sgbm(settings, *search_range(left, right, settings))
    gl, gr = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
    d_left = _match(matcher, gl, gr)
    # The right view's disparity: match the mirrored pair (the mirrored right view is then the
    # "left" one), and mirror the result back.
    d_right = _match(matcher, np.ascontiguousarray(gr[:, ::-1]), np.ascontiguousarray(gl[:, ::-1]))[:, ::-1]
    return d_left, np.ascontiguousarray(d_right)


def feature_matches(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d, dy)`` of the views' ORB feature matches: disparity ``x_left - x_right`` and vertical
    offset ``y_right - y_left`` in px (float32 arrays; empty when nothing matches).

    ORB (Rublee et al., ICCV 2011; ``cv2.ORB_create``, 1000 features) with cross-checked Hamming
    matches: sparse, but found at any disparity, positive or negative.
    """
    orb = cv2.ORB_create(nfeatures=1000)
    kl, dl = orb.detectAndCompute(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), None)
    kr, dr = orb.detectAndCompute(cv2.cvtColor(right, cv2.COLOR_RGB2GRAY), None)
    if dl is None or dr is None:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(dl, dr)
    pl = np.array([kl[m.queryIdx].pt for m in matches], np.float32).reshape(-1, 2)
    pr = np.array([kr[m.trainIdx].pt for m in matches], np.float32).reshape(-1, 2)
    return pl[:, 0] - pr[:, 0], pr[:, 1] - pl[:, 1]


MIN_MATCHES = 30  # fewer feature matches tell nothing about a pair


def search_range(left: np.ndarray, right: np.ndarray, settings: StereoSettings) -> tuple[int, int]:
    """SGBM's ``(min_disparity, num_disparities)`` for this pair.

    Explicit settings (``num_disparities`` > 0) are used as they are. Otherwise the range spans the
    1st..99th percentile of the disparities of the pair's row-aligned feature matches
    (:func:`feature_matches`, ``|dy| <= 2`` px) widened by a quarter of that span and at least
    8 px at each end, ``num_disparities`` rounded up to a multiple of 16; with fewer than
    :data:`MIN_MATCHES` matches, ``[min_disparity, min_disparity + width / 6)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> right = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (320, 240))
        >>> low, count = search_range(np.roll(right, -20, axis=1), right, StereoSettings())  # disparity -20
        >>> low < -20 < low + count, count % 16
        (True, 0)
    """
    width = left.shape[1]
    if settings.num_disparities:
        return settings.min_disparity, settings.num_disparities
    d, dy = feature_matches(left, right)
    d = d[np.abs(dy) <= 2]
    if d.size < MIN_MATCHES:
        return settings.min_disparity, max(16, int(np.ceil(width / 6 / 16)) * 16)
    lo, hi = np.percentile(d, [1, 99])
    margin = max(8.0, 0.25 * float(hi - lo))
    low = int(np.floor(lo - margin))
    return low, max(16, int(np.ceil((hi + margin - low) / 16)) * 16)


def vertical_offset(left: np.ndarray, right: np.ndarray) -> float | None:
    """The views' median vertical offset in px, from ORB feature matches (None: too few to tell).

    A rectified pair has every match on the same row; footage whose views are shifted, rotated or
    scaled vertically (a badly rectified rig, a film converted with an error) does not, and no
    horizontal matcher can use it. The median is robust to the few false matches.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (320, 240))
        >>> round(vertical_offset(img, np.roll(img, 3, axis=0)), 1)
        3.0
    """
    dy = feature_matches(left, right)[1]
    return float(np.median(dy)) if dy.size >= MIN_MATCHES else None


RECTIFY_SIDE = 288  # views with a shorter side are enlarged to it for the rectification check's features
RECTIFY_TOLERANCE = 2.0  # px: how far a feature match may lie from the fitted vertical alignment and agree
MIN_AGREEING_SHARE = 0.5  # of the feature matches that must agree for the check to have run


@dataclass(frozen=True)
class Rectification:
    """What the views' point correspondences say about their rectification (:func:`rectification`).

    ``matches``: ORB feature matches and Lucas-Kanade tracks; ``agreeing``: those within
    :data:`RECTIFY_TOLERANCE` px of the fitted vertical alignment ``dy = a + b x + c y`` (a shift,
    a rotation, a vertical scale); ``median``: their median vertical offset; ``low``/``high``: the
    fitted offset's extremes over the frame (at its corners), px. Without enough agreeing matches
    (:attr:`checked` false) the offsets are ``None``: the check could not run.
    """

    matches: int
    agreeing: int
    median: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def checked(self) -> bool:
        """Whether the check ran: at least :data:`MIN_MATCHES` matches agree, and :data:`MIN_AGREEING_SHARE` of them."""
        return self.median is not None

    def problem(self, max_vertical: float) -> str | None:
        """Why the views are not rectified within ``max_vertical`` px (None: they are, or the check did not run)."""
        if not self.checked:
            return None
        if abs(self.median) > max_vertical:
            return (f"views not rectified: median vertical offset {self.median:+.1f} px of feature matches "
                    f"> max_vertical {max_vertical:g} px")
        if max(abs(self.low), abs(self.high)) > max_vertical:
            return (f"views not rectified: vertical offset from {self.low:+.1f} to {self.high:+.1f} px across the "
                    f"frame (rotated or scaled views; median {self.median:+.1f} px) > max_vertical {max_vertical:g} px")
        return None

    def unchecked_reason(self) -> str:
        """The drop reason of a frame whose rectification could not be checked."""
        return (f"rectification not checked: {self.agreeing} of {self.matches} point matches agree on one vertical "
                f"alignment (needs {MIN_MATCHES} and {MIN_AGREEING_SHARE:.0%}): too little texture, or the views "
                f"show different scenes (mono footage passed as stereo?)")


def _working_views(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Grey views for the rectification check, enlarged so that the shorter side is at least
    :data:`RECTIFY_SIDE` (corner detectors and ORB's 31 px patches find little on small views), and the factor."""
    height, width = left.shape[:2]
    up = max(1.0, RECTIFY_SIDE / min(height, width))
    grey = [cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) for v in (left, right)]
    if up > 1:
        size = (int(round(width * up)), int(round(height * up)))
        grey = [cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in grey]
    return grey[0], grey[1], up


def _to_view(points: np.ndarray, up: float) -> np.ndarray:
    """(N, 2) points of the enlarged views in the views' pixels (pixel centres kept)."""
    return (np.asarray(points, np.float64).reshape(-1, 2) + 0.5) / up - 0.5


def _orb_points(gl: np.ndarray, gr: np.ndarray, up: float) -> tuple[np.ndarray, np.ndarray]:
    """ORB feature matches (as :func:`feature_matches`): any disparity, but few on blurred views."""
    orb = cv2.ORB_create(nfeatures=1000)
    kl, dl = orb.detectAndCompute(gl, None)
    kr, dr = orb.detectAndCompute(gr, None)
    if dl is None or dr is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(dl, dr)
    return (_to_view([kl[m.queryIdx].pt for m in matches], up), _to_view([kr[m.trainIdx].pt for m in matches], up))


_LK = {"winSize": (21, 21), "maxLevel": 5, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)}


def _tracked_points(gl: np.ndarray, gr: np.ndarray, up: float) -> tuple[np.ndarray, np.ndarray]:
    """Shi-Tomasi corners of the left view tracked into the right one by pyramidal Lucas-Kanade
    (``cv2.calcOpticalFlowPyrLK``, 6 levels: motions of a few hundred px), kept when tracking back
    returns within 0.5 px: sub-pixel, and found on smooth or blurred views where ORB finds nothing."""
    corners = cv2.goodFeaturesToTrack(gl, maxCorners=500, qualityLevel=0.01, minDistance=7, blockSize=7)
    if corners is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(gl, gr, corners, None, **_LK)
    back, returned, _ = cv2.calcOpticalFlowPyrLK(gr, gl, ahead, None, **_LK)
    ok = (found[:, 0] == 1) & (returned[:, 0] == 1) & (np.linalg.norm((back - corners)[:, 0], axis=1) < 0.5 * up)
    return _to_view(corners[ok, 0], up), _to_view(ahead[ok, 0], up)


def rectification(left: np.ndarray, right: np.ndarray) -> Rectification:
    """Check that the views are rectified: their feature matches on the same rows everywhere.

    The vertical offsets ``dy = y_right - y_left`` of the views' point correspondences, ORB
    feature matches and Lucas-Kanade tracks of corners (:func:`_orb_points`,
    :func:`_tracked_points`; views enlarged to :data:`RECTIFY_SIDE`), are fitted robustly with
    ``dy = a + b x + c y`` (least squares on
    the matches within :data:`RECTIFY_TOLERANCE` px of the fit, from the median, five rounds):
    a vertical shift moves every match alike, a rotation or a vertical scale makes the offset
    grow across the frame, where a median alone would not see it. The check runs when at least
    :data:`MIN_MATCHES` matches and :data:`MIN_AGREEING_SHARE` of them agree with the fit; views
    of different scenes (a mono frame split as side by side) or without texture have too few.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (320, 240))
        >>> r = rectification(img, np.roll(img, 3, axis=0))
        >>> r.checked, round(r.median, 1), r.problem(1.0)
        (True, 3.0, 'views not rectified: median vertical offset +3.0 px of feature matches > max_vertical 1 px')
        >>> rectification(img, np.fliplr(img)).checked  # another scene: no vertical alignment to check
        False
    """
    height, width = left.shape[:2]
    gl, gr, up = _working_views(left, right)
    (ol, orr), (tl, tr) = _orb_points(gl, gr, up), _tracked_points(gl, gr, up)
    pl, pr = np.concatenate([ol, tl]), np.concatenate([orr, tr])
    dy = pr[:, 1] - pl[:, 1]
    if dy.size == 0:
        return Rectification(0, 0)
    design = np.column_stack([np.ones_like(dy), pl[:, 0] - (width - 1) / 2, pl[:, 1] - (height - 1) / 2])
    agree = np.abs(dy - np.median(dy)) <= RECTIFY_TOLERANCE
    coef = np.array([float(np.median(dy)), 0.0, 0.0])
    for _ in range(5):
        if agree.sum() < 3:
            break
        coef = np.linalg.lstsq(design[agree], dy[agree], rcond=None)[0]
        agree = np.abs(design @ coef - dy) <= RECTIFY_TOLERANCE
    count = int(agree.sum())
    if count < MIN_MATCHES or count < MIN_AGREEING_SHARE * dy.size:
        return Rectification(int(dy.size), count)
    half_w, half_h = (width - 1) / 2, (height - 1) / 2
    corners = [coef[0] + sx * half_w * coef[1] + sy * half_h * coef[2] for sx in (-1, 1) for sy in (-1, 1)]
    return Rectification(int(dy.size), count, float(np.median(dy[agree])), float(min(corners)), float(max(corners)))
