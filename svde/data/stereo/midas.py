"""MiDaS' 3D-movie acquisition, step by step: the ``midas`` frame filter and ``--preset midas``.

The paper (§4.3.3) "reproduced the original data acquisition approach yet used RAFT" instead of
PWC-Net; the original is MiDaS' (Ranftl et al., TPAMI 2020, arXiv:1907.01341), published as
lasinger/3DVideos2Stereo (read at commit 9608654). Each step below names the file of that
repository it follows.

1. Flow both ways (``README.md``, "Flow Computation": backward and forward flow of each
   ``image_left``/``image_right`` pair, at full resolution). ``raft``: torchvision's RAFT
   left->right (forward) and right->left (backward), :func:`raft_flows`. ``sgbm``: SGBM's
   disparities of both views as horizontal flows, ``u_fw = -d_left``, ``u_bw = +d_right``
   (:func:`sgbm_flows`); SGBM has no vertical flow (see 2).
2. Vertical check (``get_disp_and_uncertainty.py``, ``--v_threshold 2 --max_v_fail 0.1``): the
   frame is dropped when ``|v| > 2`` px on at least 10 % of the pixels, of the forward or of the
   backward flow (``v_fail >= max_v_fail``). ``raft``: RAFT's own vertical flows, every pixel.
   ``sgbm`` searches along rows only, so the vertical flow is measured with OpenCV's DIS optical
   flow (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016;
   ``cv2.DISOpticalFlow``, preset medium) from the left view to the right view shifted by the
   pair's median disparity, over the pixels that pass the forward-backward check (DIS errs where
   SGBM finds no match: occlusions, large disparities), :func:`dis_vertical`.
3. Range check (same file, ``--range_threshold 10``): dropped when ``max - min`` of the
   horizontal flow is ``<= 10`` px, forward or backward. ``raft``: every pixel, as the original.
   ``sgbm``: the disparities that pass the forward-backward check (SGBM's unchecked output holds
   isolated mismatches that would decide a max - min).
4. Forward-backward check (same file, ``--fbc_threshold 2 --min_fbc_pass 0.7``): the uncertainty
   ``|u_fw - (-u_bw)(x + u_fw, y)|``, the backward flow sampled bilinearly with the border
   replicated (``cv2.remap``, :func:`fb_uncertainty`); a pixel passes when it is ``< 2`` px and
   the frame is dropped when at most 70 % of all pixels pass (``fbc_pass <= min_fbc_pass``).
   Passing pixels are the stored mask (the original stores the uncertainty itself, in 0.1 px
   steps, and leaves the masking to its loader).
5. Disparity ``-u_fw`` (same file: ``disp = -u_fw``), stored at half resolution (same file:
   ``downscaling = 0.5``, ``cv2.resize`` bilinear, values times 0.5), :func:`rescale`.
6. Sky (``README.md``, "Sky Computation": a segmentation network, Mapillary's Inplace ABN, Vistas
   class 27; the repository has no code that uses the masks: sky set to the image's minimum
   disparity and kept valid is MiDaS' paper's rule, as issue 21 quotes it), :func:`apply_sky`,
   given masks (no segmentation model can be had here: docs/stereo.md).

The checks run in the original's order (vertical, range, forward-backward) and the frame's
record names the first that fails. Sampling (``genTraining_recurr.py``) and cuts
(``run_extractFrames.sh``) are :mod:`svde.data.stereo.shots`; :data:`PRESETS` lists every default
``--preset midas`` sets, with its source.
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from svde.data.stereo import raft
from svde.data.stereo.matching import StereoSettings, sgbm_maps, texture
from svde.errors import UserError

# --preset NAME: defaults that flags given explicitly override. Keys are the command line's argparse
# dests, which are also field names of PrepareOptions, StereoSettings or Sampling (pipeline.preset_options).
PRESETS: dict[str, dict[str, Any]] = {
    "midas": {
        "matcher": "raft",            # the paper §4.3.3 (RAFT instead of MiDaS' PWC-Net)
        "frame_filter": "midas",      # get_disp_and_uncertainty.py --filter
        "max_vertical": 2.0,          # --v_threshold 2
        "max_vertical_share": 0.1,    # --max_v_fail 0.1
        "lr_tolerance": 2.0,          # --fbc_threshold 2
        "min_kept": 0.7,              # --min_fbc_pass 0.7
        "min_range": 10.0,            # --range_threshold 10
        "min_texture": 0.0,           # no texture rule in the original
        "scale": 0.5,                 # downscaling = 0.5
        "fps": 4.0,                   # README.md, genTraining_recurr.py --fpsSingle 4
        "clip_length": 1.0,           # --numRecurrent 24 --fpsRecurrent 24: 1 s clips
        "clip_gap": 4.0,              # genTraining_recurr.py: jump = min(seqLength, origFramerate * 4)
        "cut_detector": "ffmpeg",     # run_extractFrames.sh: select=gt(scene\,0.1)
        "cut_threshold": 0.1,
        "dup_threshold": 0.0,         # no near-duplicate test in the original
    },
}
# A preset's value also yields to these options given explicitly: its fps to --every, its
# threshold (of its own cut detector) to another --cut-detector, which then has its own default.
PRESET_EXCLUDES = {"fps": ("every",), "cut_threshold": ("cut_detector",)}


def preset_values(name: str, given: set[str] | dict[str, Any]) -> dict[str, Any]:
    """Preset ``name``'s values for the settings not ``given``: a given setting wins, and so does one
    a preset value yields to (``every`` over the preset's ``fps``, ``cut_detector`` over its
    ``cut_threshold``). The one merge rule of the command line and :func:`~svde.data.stereo.pipeline.preset_options`.

    Example:
        >>> "fps" in preset_values("midas", set()), "fps" in preset_values("midas", {"every"})
        (True, False)
    """
    return {k: v for k, v in PRESETS[name].items()
            if k not in given and not any(other in given for other in PRESET_EXCLUDES.get(k, ()))}


@dataclass(frozen=True)
class MidasRules:
    """The thresholds of ``get_disp_and_uncertainty.py`` (its option names), plus svde's texture rule (0: off)."""

    v_threshold: float = 2.0
    max_v_fail: float = 0.1
    fbc_threshold: float = 2.0
    min_fbc_pass: float = 0.7
    range_threshold: float = 10.0
    min_texture: float = 0.0


@dataclass
class FrameResult:
    """A frame through the filter: ``reason`` set when it is dropped; else the left view's
    disparity (px, 0 where invalid) and mask at the matching resolution; ``stats`` for its record."""

    reason: str | None
    disparity: np.ndarray | None = None
    valid: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def fb_uncertainty(u_fw: np.ndarray, u_bw: np.ndarray) -> np.ndarray:
    """``|u_fw - (-u_bw)(x + u_fw, y)|`` per left pixel (float32; NaN where either flow is missing).

    As ``get_disp_and_uncertainty.py``: the negated backward flow is sampled at ``x + u_fw`` on the
    same row by ``cv2.remap`` (bilinear, ``BORDER_REPLICATE``: a pixel that maps outside the right
    view meets its edge column).

    Example:
        >>> u_fw = np.full((1, 6), -2.0, np.float32)  # every left pixel 2 px left in the right view
        >>> fb_uncertainty(u_fw, -u_fw).tolist()
        [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
        >>> u_bw = -u_fw; u_bw[0, 1] = 5.0  # the right pixel 1 disagrees: left pixel 3 maps there
        >>> float(fb_uncertainty(u_fw, u_bw)[0, 3])
        3.0
    """
    height, width = u_fw.shape
    fw_ok, bw_ok = np.isfinite(u_fw), np.isfinite(u_bw)
    map_x = (np.arange(width, dtype=np.float32)[None, :] + np.where(fw_ok, u_fw, 0)).astype(np.float32)
    map_y = np.repeat(np.arange(height, dtype=np.float32)[:, None], width, axis=1)
    sample = lambda a: cv2.remap(a.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,  # noqa: E731
                                 borderMode=cv2.BORDER_REPLICATE)
    warped = sample(np.where(bw_ok, -u_bw, 0))
    holes = sample((~bw_ok).astype(np.float32))
    uncertainty = np.abs(u_fw - warped).astype(np.float32)
    uncertainty[~fw_ok | (holes > 0)] = np.nan
    return uncertainty


def _share_above(values: np.ndarray, threshold: float) -> float:
    """The share of ``values`` not within ``threshold`` of 0 (NaN counts as above; empty: 0)."""
    return float(np.mean(~(np.abs(values) <= threshold))) if values.size else 0.0


def raft_flows(left: np.ndarray, right: np.ndarray, settings: StereoSettings, device: str = "cpu"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(u_fw, v_fw, u_bw, v_bw)``: RAFT's flows left->right and right->left (:func:`raft.run_flow`)."""
    forward, backward = raft.run_flow(raft.network(settings, device), left, right, settings.raft_iters, str(device))
    return forward[0], forward[1], backward[0], backward[1]


def sgbm_flows(left: np.ndarray, right: np.ndarray, settings: StereoSettings) -> tuple[np.ndarray, np.ndarray]:
    """``(u_fw, u_bw)``: SGBM's disparities of both views as horizontal flows (NaN = no match)."""
    d_left, d_right = sgbm_maps(left, right, settings)
    return -d_left, d_right


def dis_vertical(left: np.ndarray, right: np.ndarray, shift: int) -> np.ndarray:
    """The vertical component of DIS optical flow from ``left`` to ``right`` moved ``shift`` px right.

    The shift (the pair's median disparity) leaves DIS only the depth-dependent part of the
    horizontal motion, which it tracks far better than the whole disparity; it moves no row.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img = cv2.resize(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), (160, 160))
        >>> v = dis_vertical(img, np.roll(img, 3, axis=0), 0)  # right view 3 px lower
        >>> round(float(np.median(v)))
        3
    """
    gl = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
    gr = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
    if shift:
        move = np.float32([[1, 0, shift], [0, 1, 0]])
        gr = cv2.warpAffine(gr, move, (gr.shape[1], gr.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(gl, gr, None)
    return flow[..., 1]


def midas_frame(left: np.ndarray, right: np.ndarray, matcher: str, settings: StereoSettings, rules: MidasRules,
                device: str = "cpu") -> FrameResult:
    """One rectified pair through steps 1-5 of the module (at the views' resolution; no rescaling)."""
    # step 1 (README.md, "Flow Computation"), step 4's uncertainty (get_disp_and_uncertainty.py)
    if matcher == "raft":
        u_fw, v_fw, u_bw, v_bw = raft_flows(left, right, settings, device)
        uncertainty = fb_uncertainty(u_fw, u_bw)
        passed = uncertainty < rules.fbc_threshold
        vertical = {"left->right": _share_above(v_fw, rules.v_threshold),
                    "right->left": _share_above(v_bw, rules.v_threshold)}
        spans = {"left->right": u_fw, "right->left": u_bw}
        what = "of the pixels have |vertical flow|"
    elif matcher == "sgbm":
        u_fw, u_bw = sgbm_flows(left, right, settings)
        uncertainty = fb_uncertainty(u_fw, u_bw)
        passed = uncertainty < rules.fbc_threshold
        shift = int(round(float(np.median(-u_fw[passed])))) if passed.any() else 0
        vertical = {"left->right": _share_above(dis_vertical(left, right, shift)[passed], rules.v_threshold)}
        spans = {"left->right": u_fw[passed] if passed.any() else u_fw}
        what = "of the pixels that pass the forward-backward check have |vertical DIS flow|"
    else:
        raise ValueError(f"the midas frame filter knows the matchers raft and sgbm, not {matcher!r}")
    fb_pass = float(passed.mean())
    direction, share = max(vertical.items(), key=lambda kv: kv[1])
    stats: dict[str, Any] = {"vertical_share": round(share, 4), "fb_pass": round(fb_pass, 4)}
    if share >= rules.max_v_fail:  # step 2, get_disp_and_uncertainty.py: v_fail >= max_v_fail
        return FrameResult(f"vertical: {share:.1%} {what} > {rules.v_threshold:g} px ({direction}) >= "
                           f"max_vertical_share {rules.max_v_fail:.0%} (views not rectified, or no reliable match)",
                           stats=stats)
    ranges = {k: (float(np.nanmax(u) - np.nanmin(u)) if np.isfinite(u).any() else 0.0) for k, u in spans.items()}
    direction, span = min(ranges.items(), key=lambda kv: kv[1])
    stats["range_px"] = round(span, 3)
    disparity = -u_fw  # step 5, same file: disp = -u_fw
    if passed.any():
        stats["disparity_range"] = [round(float(disparity[passed].min()), 3), round(float(disparity[passed].max()), 3)]
    if span <= rules.range_threshold:  # step 3, same file: range_fw/range_bw <= range_threshold
        return FrameResult(f"disparity range {span:.2f} px (max - min, {direction}) <= min_range "
                           f"{rules.range_threshold:g} px (no depth to learn from)", stats=stats)
    if fb_pass <= rules.min_fbc_pass:  # step 4, same file: fbc_pass <= min_fbc_pass
        return FrameResult(f"forward-backward check: {fb_pass:.1%} of the pixels agree within "
                           f"{rules.fbc_threshold:g} px <= min_kept {rules.min_fbc_pass:.0%}", stats=stats)
    valid = passed
    if rules.min_texture > 0:
        window = raft.TEXTURE_WINDOW if matcher == "raft" else settings.block_size
        valid = valid & (texture(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), window) >= rules.min_texture)
    return FrameResult(None, np.where(valid, disparity, 0.0).astype(np.float32), valid, stats)


def rescale(left: np.ndarray, disparity: np.ndarray, valid: np.ndarray, scale: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The left view, disparity and mask at ``scale`` times the size (disparity values times ``scale``).

    The disparity is resized bilinearly as ``get_disp_and_uncertainty.py`` resizes it, normalised
    by the resized mask so that invalid pixels (0) never blend in; a pixel is valid when every
    pixel under it was (at 0.5: its 2x2 block). The view is resized with ``INTER_AREA``.

    Example:
        >>> d = np.array([[4.0, 4.0, 8.0, 0.0], [4.0, 4.0, 8.0, 8.0]], np.float32)
        >>> view, disp, ok = rescale(np.zeros((2, 4, 3), np.uint8), d, d > 0, 0.5)
        >>> view.shape, disp.tolist(), ok.tolist()
        ((1, 2, 3), [[2.0, 0.0]], [[True, False]])
    """
    if scale == 1:
        return left, disparity, valid
    height, width = disparity.shape
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    weight = valid.astype(np.float32)
    total = cv2.resize(np.where(valid, disparity, 0).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    share = cv2.resize(weight, size, interpolation=cv2.INTER_LINEAR)
    small_valid = cv2.resize(weight, size, interpolation=cv2.INTER_AREA) >= 1 - 1e-5
    small = np.where(small_valid, total / np.maximum(share, 1e-6) * scale, 0.0).astype(np.float32)
    return cv2.resize(left, size, interpolation=cv2.INTER_AREA), small, small_valid


def read_sky(path: str, size: tuple[int, int]) -> np.ndarray | None:
    """The sky mask at ``path`` (an image, non-zero = sky) resized (nearest) to ``size`` (W, H); None if
    absent; a file OpenCV cannot decode is a :class:`~svde.errors.UserError` naming it."""
    if not os.path.isfile(path):
        return None
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise UserError(f"{path}: cannot decode this sky mask (an image, non-zero = sky, expected)")
    return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST) > 0


def check_sky_masks(folder: Path, names: list[str]) -> None:
    """Before any frame is matched: a :class:`~svde.errors.UserError` when none of the frames
    ``names`` has a mask ``folder/<name>.png``, or when one that exists is not an image OpenCV
    reads (its header: ``cv2.haveImageReader``). A missing mask only leaves its frame's sky as
    matched (:func:`read_sky`).

    Example:
        >>> check_sky_masks(Path("/no/masks"), ["a"])
        Traceback (most recent call last):
        svde.errors.UserError: --sky-masks /no/masks: none of the 1 frames has a mask (e.g. a.png); masks are named after the output's frames
    """
    masks = [folder / f"{name}.png" for name in names]
    present = [mask for mask in masks if mask.is_file()]
    if names and not present:
        raise UserError(f"--sky-masks {folder}: none of the {len(names)} frames has a mask (e.g. {masks[0].name}); "
                        "masks are named after the output's frames")
    unreadable = [mask for mask in present if not cv2.haveImageReader(str(mask))]
    if unreadable:
        raise UserError(f"{unreadable[0]}: not an image OpenCV reads ({len(unreadable)} sky mask(s) like it); "
                        "a sky mask is an image, non-zero = sky")


def apply_sky(disparity: np.ndarray, valid: np.ndarray, sky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky pixels set to the image's minimum valid non-sky disparity and marked valid (MiDaS).

    Unchanged when no non-sky pixel is valid (no minimum to take).

    Example:
        >>> d = np.array([[5.0, 2.0, 0.0, 9.0]], np.float32); ok = d > 0
        >>> out, ok2 = apply_sky(d, ok, np.array([[False, False, True, True]]))
        >>> out.tolist(), ok2.tolist()
        ([[5.0, 2.0, 2.0, 2.0]], [[True, True, True, True]])
    """
    ground = valid & ~sky
    if not ground.any():
        return disparity, valid
    low = disparity[ground].min()
    return np.where(sky, low, disparity).astype(np.float32), valid | sky
