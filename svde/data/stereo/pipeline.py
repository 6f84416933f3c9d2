"""Stereo footage -> the ``stereo_folder`` layout (UTSS training data), resumable and shardable.

For every frame of the inputs (:mod:`svde.data.stereo.sources`) it estimates the left view's
disparity (:func:`svde.data.stereo.estimate_disparity`) and writes, under ``out``::

    left/<name>.png        the left view (RGB)
    disparity/<name>.npy   float32 disparity in pixels (0 where invalid)
    mask/<name>.png        255 = valid (passed the consistency and texture checks), 0 = not
    manifest.json          the settings, and per frame: source, frame index/time, kept or
                           dropped with the reason, kept fraction, disparity range

which :class:`svde.data.folder.StereoFolderDataset` (``build_dataset("stereo_folder", out)``)
reads as UTSS with its default options. Frames with disparities below 1 px (converged footage: 3D
films put the content behind the screen at negative disparity) are stored shifted by their
record's ``stored_offset`` (an integer) so that every valid value is >= 1: the loader takes 0 and
below as invalid, and UTSS is shift-invariant. The offset is robust to a few wrong matches: valid
pixels far below the rest (:func:`low_outliers`) are marked invalid first (their count is the
record's ``low_outliers``).

A frame is dropped, with its reason in the manifest, when it cannot be read, sits at a scene cut
or repeats the previous sampled frame (:mod:`~svde.data.stereo.sources`), when its views are
identical (mono footage passed as stereo: no disparity), and then by the frame filter:

* ``svde`` (the default): when the views are not rectified (the vertical offset of their feature
  matches, fitted as a shift, rotation and vertical scale, above ``max_vertical`` anywhere in the
  frame: :func:`~svde.data.stereo.matching.rectification`), when none or fewer than ``min_kept``
  of its pixels are valid, when its rectification could not be checked (too few feature matches
  agree: a textureless frame, or a mono frame split as side by side), or when its valid
  disparities span less than ``min_range`` pixels (5th..95th percentile);
* ``midas``: MiDaS' vertical, range and forward-backward checks (:mod:`svde.data.stereo.midas`),
  with ``max_vertical``/``max_vertical_share``, ``min_range`` and ``lr_tolerance``/``min_kept``.

Kept frames are stored at ``scale`` times their size (MiDaS: 0.5), with the sky of
``sky_masks/<name>.png`` (when given) set to the frame's minimum disparity and valid.
:func:`preset_options` gives the options of a preset (``--preset midas``: MiDaS' 3D-movie
acquisition, :mod:`svde.data.stereo.midas`). Each file is written atomically and ``left/`` last,
and the manifest is written before the first frame, so an interrupted (even killed) run leaves
only whole frames; a rerun skips the frames its manifest records. With ``shard=(k, n)`` only
frames ``k, k + n, ...`` are prepared and the manifest is ``manifest.shard-<k>-of-<n>.json``:
shards may share one folder, and a frame that another manifest of the folder records as done
(a run with another sharding) is neither redone nor recorded twice.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import multiprocessing
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch

from svde.atomic import TMP_SUFFIX, check_writable, write_bytes, write_json
from svde.data.io import write_npy, write_rgb
from svde.errors import RunFailed, UserError
from svde.data.stereo import midas, preview, raft
from svde.data.stereo.estimate import estimate_disparity, matcher_function
from svde.data.stereo.matching import StereoSettings, check_pair, rectification
from svde.data.stereo.offsets import OUTLIER_PERCENTILE, low_outliers, stored_offset  # noqa: F401 (public here too)
from svde.data.stereo.sources import FrameRef, Sampling, list_frames, read_frames

log = logging.getLogger(__name__)
MANIFEST_FORMAT = "svde-stereo/1"
# Manifest settings written for people, not compared with an existing folder's: the preset's values
# are in the other settings already, and the sky text follows from sky.masks.
RECORDED_ONLY = ("preset", "sky.handling")
SAVE_EVERY = 20  # frames between manifest saves
FRAME_FILTERS = ("svde", "midas")
SKY_NONE = ("not segmented: sky pixels pass or fail the same checks as any other pixel (a flat sky usually "
            "fails the texture rule, min_texture; without it, as in the midas preset, it keeps the disparity "
            "the matcher interpolated there)")
SKY_MASKS = "sky_masks/<name>.png (non-zero = sky) set to the frame's minimum valid disparity and marked valid (MiDaS)"


@dataclass(frozen=True)
class PrepareOptions:
    """What makes two outputs the same dataset (compared with an existing folder's manifest)."""

    matcher: str = "sgbm"
    stereo: StereoSettings = StereoSettings()
    sampling: Sampling = Sampling()
    min_kept: float = 0.2
    min_range: float = 1.0
    frame_filter: str = "svde"
    max_vertical_share: float = 0.1  # the midas filter only
    scale: float = 1.0
    sky_masks: str = ""
    preset: str = ""  # recorded only: the preset's values are already in the fields above

    def settings(self, videos: bool = True) -> dict[str, Any]:
        """The settings that shape this run's output: the matcher's own, and sampling only with ``videos``."""
        sky = str(Path(self.sky_masks).resolve()) if self.sky_masks else None
        return {"preset": self.preset or None, "matcher": self.matcher, "stereo": self.stereo.as_dict(self.matcher),
                "frame_filter": self.frame_filter, "min_kept": self.min_kept, "min_range": self.min_range,
                **({"max_vertical_share": self.max_vertical_share} if self.frame_filter == "midas" else {}),
                "scale": self.scale, "sky": {"masks": sky, "handling": SKY_MASKS if sky else SKY_NONE},
                **({"sampling": self.sampling.as_dict()} if videos else {})}

    def rules(self) -> midas.MidasRules:
        """The midas filter's thresholds (``get_disp_and_uncertainty.py``'s names) from these options."""
        return midas.MidasRules(v_threshold=self.stereo.max_vertical, max_v_fail=self.max_vertical_share,
                                fbc_threshold=self.stereo.lr_tolerance, min_fbc_pass=self.min_kept,
                                range_threshold=self.min_range, min_texture=self.stereo.min_texture)

    def check(self) -> PrepareOptions:
        matcher_function(self.matcher)
        self.stereo.check()
        self.sampling.check()
        if not 0 <= self.min_kept <= 1:
            raise UserError(f"--min-kept must be in [0, 1], got {self.min_kept}")
        if not (np.isfinite(self.min_range) and self.min_range >= 0):
            raise UserError(f"--min-range must be >= 0 px, got {self.min_range}")
        if self.frame_filter not in FRAME_FILTERS:
            raise UserError(f"--frame-filter must be one of {', '.join(FRAME_FILTERS)}, got {self.frame_filter!r}")
        if not 0 < self.max_vertical_share <= 1:
            raise UserError(f"--max-vertical-share must be in (0, 1], got {self.max_vertical_share}")
        if not (np.isfinite(self.scale) and 0 < self.scale <= 1):
            raise UserError(f"--scale must be in (0, 1] (1: as matched, 0.5: MiDaS' half size), got {self.scale}")
        if self.sky_masks and not Path(self.sky_masks).is_dir():
            raise UserError(f"--sky-masks {self.sky_masks}: no such folder; expected <name>.png sky masks "
                            f"(non-zero = sky), one per frame name")
        if self.preset and self.preset not in midas.PRESETS:
            raise UserError(f"--preset must be one of {', '.join(midas.PRESETS)}, got {self.preset!r}")
        return self


def preset_options(name: str, **overrides: Any) -> PrepareOptions:
    """:class:`PrepareOptions` with the defaults of preset ``name`` (:data:`svde.data.stereo.midas.PRESETS`,
    whose keys are field names of the options, :class:`StereoSettings` or :class:`Sampling`),
    ``overrides`` (the same names) winning, as flags given on the command line do (``every``
    also replaces the preset's ``fps``, ``cut_detector`` its ``cut_threshold``).

    Example:
        >>> opts = preset_options("midas", matcher="sgbm")
        >>> opts.matcher, opts.frame_filter, opts.stereo.lr_tolerance, opts.sampling.fps, opts.preset
        ('sgbm', 'midas', 2.0, 4.0, 'midas')
    """
    if name not in midas.PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(midas.PRESETS)}")
    values = {**midas.preset_values(name, overrides), **overrides}
    groups: dict[str, dict[str, Any]] = {"stereo": {}, "sampling": {}, "options": {"preset": name}}
    owners = {"stereo": {f.name for f in dataclasses.fields(StereoSettings)},
              "sampling": {f.name for f in dataclasses.fields(Sampling)},
              "options": {f.name for f in dataclasses.fields(PrepareOptions)} - {"stereo", "sampling"}}
    for key, value in values.items():
        owner = next((group for group, names in owners.items() if key in names), None)
        if owner is None:
            raise UserError(f"preset_options: unknown setting {key!r}")
        groups[owner][key] = value
    return PrepareOptions(stereo=StereoSettings(**groups["stereo"]), sampling=Sampling(**groups["sampling"]),
                          **groups["options"])


def manifest_name(shard: tuple[int, int]) -> str:
    k, n = shard
    return "manifest.json" if n == 1 else f"manifest.shard-{k}-of-{n}.json"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _compared(settings: dict[str, Any]) -> dict[str, Any]:
    """The flattened settings that two runs into one folder must share (not :data:`RECORDED_ONLY`)."""
    return {k: v for k, v in _flatten(settings).items() if k not in RECORDED_ONLY}


def check_existing(out: Path, settings: dict[str, Any]) -> None:
    """Refuse an output folder whose manifests were made with other settings, naming them, and a
    folder that already holds data this tool did not make (frames would mix with it).

    Only settings that both runs recorded are compared (a run of pair folders records no video
    sampling; a matcher's settings differ anyway when ``matcher`` does).
    """
    mine = _compared(settings)
    manifests = sorted(out.glob("manifest*.json"))
    foreign = [d for d in ("left", "disparity", "mask") if (out / d).is_dir() and any((out / d).iterdir())]
    if foreign and not manifests:
        raise UserError(f"{out} already holds {', '.join(d + '/' for d in foreign)} but no manifest.json: not made "
                        f"by prepare-stereo; use an empty or new --out")
    for path in manifests:
        theirs = _compared(read_manifest(path)["settings"])
        diff = [f"{k}: {theirs[k]!r} there, {mine[k]!r} now" for k in sorted(set(mine) & set(theirs))
                if theirs[k] != mine[k]]
        if diff:
            raise UserError(f"{out} was prepared with other settings ({path.name}): {'; '.join(diff)}; "
                            f"use another --out or the same settings")


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest written by :func:`prepare`, checked: ``settings`` a mapping, ``frames`` a list of records."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable stereo manifest ({exc}); remove it or use another --out") from None
    frames = data.get("frames", []) if isinstance(data, dict) else None
    if not (isinstance(data, dict) and isinstance(data.get("settings", {}), dict) and isinstance(frames, list)
            and all(isinstance(r, dict) and {"name", "source", "frame_index", "status"} <= set(r) for r in frames)):
        raise UserError(f"{path}: not a stereo manifest (expected settings: {{...}} and frames: [records with name, "
                        f"source, frame_index, status]); remove it or use another --out")
    return {"settings": data.get("settings", {}), "frames": frames}


def _drop(ref: FrameRef, reason: str, **extra: Any) -> dict[str, Any]:
    return {**_base(ref), "status": "dropped", "reason": reason, **extra}


def _base(ref: FrameRef) -> dict[str, Any]:
    rec = {"name": ref.name, "source": ref.source, "kind": ref.kind, "frame_index": ref.index, "time_s": ref.time_s}
    if ref.packing is not None:
        rec["crop"] = list(ref.packing.crop)
    return rec


def _svde_filter(left: np.ndarray, right: np.ndarray, opts: PrepareOptions, device: str) -> midas.FrameResult:
    """The default frame filter (see the module): rectification, valid share, rectification checked,
    5th..95th percentile range."""
    rect = rectification(left, right)
    problem = rect.problem(opts.stereo.max_vertical)
    if problem:
        return midas.FrameResult(problem)
    disp, valid = estimate_disparity(left, right, opts.matcher, opts.stereo, device)
    if not valid.any():
        return midas.FrameResult("no valid pixel (the consistency and texture checks rejected every one)",
                                 stats={"kept_fraction": 0.0})
    kept = float(valid.mean())
    lo, hi = (float(v) for v in np.percentile(disp[valid], [5, 95]))
    stats = {"kept_fraction": round(kept, 6), "disparity_range": [round(lo, 3), round(hi, 3)]}
    if not rect.checked:  # a check that cannot run drops the frame: nothing shows it is a rectified pair
        return midas.FrameResult(rect.unchecked_reason(), stats=stats)
    stats["vertical_offset"] = round(rect.median, 2)
    stats["vertical_range"] = [round(rect.low, 2), round(rect.high, 2)]
    if kept < opts.min_kept:
        return midas.FrameResult(f"too few valid pixels: {kept:.1%} < min_kept {opts.min_kept:.0%}", stats=stats)
    if hi - lo < opts.min_range:
        hint = "; views nearly equal: mono footage passed as stereo?" if max(abs(lo), abs(hi)) < 1 else ""
        return midas.FrameResult(f"disparity range {hi - lo:.2f} px < min_range {opts.min_range:g} px "
                                 f"(no depth to learn from{hint})", stats=stats)
    return midas.FrameResult(None, disp, valid, stats)


def process_frame(task: tuple[FrameRef, np.ndarray | None, np.ndarray | None, str | None, str, PrepareOptions, str]
                  ) -> dict[str, Any]:
    """Match one frame and write its files (or only decide why it is dropped): its manifest record."""
    ref, left, right, reason, out_dir, opts, device = task
    if reason is not None:
        return _drop(ref, reason)
    try:
        check_pair(left, right, ref.name)
    except UserError as exc:
        return _drop(ref, f"bad frame: {exc}")
    if np.array_equal(left, right) or np.mean(cv2.absdiff(left, right)) < 0.5:
        return _drop(ref, "left equals right (mono footage passed as stereo?): no disparity")
    try:
        if opts.frame_filter == "midas":
            result = midas.midas_frame(left, right, opts.matcher, opts.stereo, opts.rules(), device)
        else:
            result = _svde_filter(left, right, opts, device)
    except cv2.error as exc:  # one frame OpenCV cannot match must not end a film's run
        return _drop(ref, f"the matcher failed on this frame: {' '.join(str(exc).split())[-200:]}")
    if result.reason is not None:
        return _drop(ref, result.reason, **_drop_stats(result.stats))
    return _store(ref, Path(out_dir), left, result, opts)


_VERTICAL_STATS = ("vertical_offset", "vertical_range")  # a kept frame's record ends with them


def _drop_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k not in _VERTICAL_STATS}


def _store(ref: FrameRef, out: Path, left: np.ndarray, result: midas.FrameResult, opts: PrepareOptions) -> dict[str, Any]:
    """Write a kept frame (at ``opts.scale``, low outliers invalid, sky applied, shifted by its stored
    offset): its record."""
    view, disp, valid = midas.rescale(left, result.disparity, result.valid, opts.scale)
    extra: dict[str, Any] = {}
    outliers = low_outliers(disp, valid)
    if outliers.any():
        valid = valid & ~outliers
        disp = np.where(valid, disp, 0.0).astype(np.float32)
        extra["low_outliers"] = int(outliers.sum())
    if opts.sky_masks:
        sky = midas.read_sky(str(Path(opts.sky_masks) / f"{ref.name}.png"), (disp.shape[1], disp.shape[0]))
        if sky is None:
            return _drop(ref, f"no sky mask {Path(opts.sky_masks) / ref.name}.png (--sky-masks: one per kept frame)",
                         **_drop_stats(result.stats))
        disp, valid = midas.apply_sky(disp, valid, sky)
        extra["sky_fraction"] = round(float(sky.mean()), 6)
    stats = dict(result.stats)
    if opts.frame_filter == "midas" or opts.scale != 1 or opts.sky_masks or "low_outliers" in extra:
        stats["kept_fraction"] = round(float(valid.mean()), 6)  # of the stored mask
    offset = stored_offset(disp, valid)
    _write(write_npy, out / "disparity" / f"{ref.name}.npy", np.where(valid, disp + offset, 0.0).astype(np.float32))
    ok, png = cv2.imencode(".png", valid.astype(np.uint8) * 255)
    if not ok:
        raise RunFailed(f"{out / 'mask' / ref.name}.png: cannot encode the mask")
    _write(write_bytes, out / "mask" / f"{ref.name}.png", png.tobytes())
    _write(write_rgb, out / "left" / f"{ref.name}.png", view)  # last: the loader indexes left/
    vertical = {k: stats.pop(k) for k in _VERTICAL_STATS if k in stats}
    return {**_base(ref), "status": "kept", **stats, **extra, "stored_offset": offset, **vertical}


def _done(out: Path, records: dict[str, dict[str, Any]], ref: FrameRef) -> bool:
    rec = records.get(ref.name)
    if rec is None or rec["source"] != ref.source or rec["frame_index"] != ref.index:
        return False
    return rec["status"] == "dropped" or (out / "left" / f"{ref.name}.png").is_file()


def _done_elsewhere(out: Path, own: str) -> dict[str, dict[str, Any]]:
    """The records of the folder's other manifests (other shardings of the same settings) by frame name."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("manifest*.json")):
        if path.name != own:
            records.update((r["name"], r) for r in read_manifest(path)["frames"])
    return records


def _write(writer: Any, path: Path, data: Any) -> None:
    """``writer(path, data)``; a failed write (a full disk) is one RunFailed naming the file."""
    try:
        writer(path, data)
    except OSError as exc:
        raise RunFailed(f"cannot write {path}: {exc.strerror or exc}; the frames done so far are kept: free some "
                        "space and run the same command again to continue") from None


def _save(path: Path, settings: dict[str, Any], shard: tuple[int, int], records: dict[str, dict[str, Any]]) -> None:
    frames = sorted(records.values(), key=lambda r: (r["source"], r["frame_index"]))
    kept = [r for r in frames if r["status"] == "kept"]
    _write(write_json, path, {"format": MANIFEST_FORMAT, "settings": settings, "shard": f"{shard[0]}/{shard[1]}",
                      "layout": "left/<name>.png, disparity/<name>.npy (px + the record's stored_offset), mask/<name>.png",
                      "frames_kept": len(kept), "frames_dropped": len(frames) - len(kept), "frames": frames})


def reason_summary(records: list[dict[str, Any]], examples: int = 3) -> str:
    """The drop reasons of ``records`` in one short line: each kind (its numbers aside) with a count.

    Example:
        >>> reason_summary([{"reason": "too few valid pixels: 3.1% < min_kept 20%"},
        ...                 {"reason": "too few valid pixels: 9.0% < min_kept 20%"}, {"reason": "left equals right"}])
        '2 x too few valid pixels: 3.1% < min_kept 20%; 1 x left equals right'
    """
    kinds: dict[str, list[str]] = {}
    for rec in records:
        kinds.setdefault(re.sub(r"[-+]?\d[\d.]*", "#", rec["reason"]), []).append(rec["reason"])
    ranked = sorted(kinds.values(), key=len, reverse=True)
    text = "; ".join(f"{len(r)} x {r[0]}" for r in ranked[:examples])
    return text + (f"; and {len(ranked) - examples} other kinds (manifest)" if len(ranked) > examples else "")


def _check_out(out: Path, create: bool) -> None:
    """``out`` is a folder this user can write (``create``: made and probed, :func:`svde.atomic.check_writable`;
    otherwise its nearest existing folder is checked and nothing is created)."""
    base = out
    while not create and not base.exists() and base != base.parent:
        base = base.parent
    try:
        if create:
            check_writable(out)
        elif not base.is_dir():
            raise NotADirectoryError(f"{base} exists and is not a folder")
        elif not os.access(base, os.W_OK | os.X_OK):
            raise PermissionError(f"{base} is not writable")
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write there ({exc.strerror or exc}); expected a writable folder "
                        f"(new, or made by prepare-stereo)") from None


def _remove_own_temporaries(out: Path, frames: set[str], manifest: str) -> None:
    """Remove the temporaries a killed run left for this shard's own files (other shards' are theirs)."""
    for folder in (out, out / "left", out / "disparity", out / "mask"):
        for tmp in folder.glob(f".*{TMP_SUFFIX}") if folder.is_dir() else ():
            target = tmp.name[1:-len(TMP_SUFFIX)].rsplit(".", 1)[0]  # .<file name>.<random>.tmp (svde.atomic)
            if target == manifest or (folder != out and Path(target).stem in frames):
                tmp.unlink(missing_ok=True)


def _one_thread() -> None:
    """A worker's thread budget: one OpenCV and one torch thread (the pool shares the cores)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _results(tasks: Iterator[tuple], workers: int, previews: bool = False) -> Iterator[dict[str, Any]]:
    """Records of ``tasks`` in order (``previews``: and each frame's picture, :mod:`~svde.data.stereo.preview`);
    with workers, fed a few frames at a time (``Pool.imap`` alone would decode the whole video into its queue)."""
    work = functools.partial(preview.previewed, process_frame) if previews else process_frame
    if workers <= 1:
        yield from map(work, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
        while batch := list(itertools.islice(tasks, 4 * workers)):
            yield from pool.imap(work, batch, chunksize=1)


def prepare(inputs: list[Path], out: Path, opts: PrepareOptions | None = None, shard: tuple[int, int] = (0, 1),
            workers: int = 1, progress: bool = False, device: str = "cpu",
            download_weights: bool = False, previews: bool = False) -> dict[str, Any]:
    """Prepare ``inputs`` into ``out`` (see the module docstring); returns the manifest's counts.

    Everything is checked before the first frame; a :class:`~svde.errors.RunFailed` when every
    frame was dropped (naming the reasons). ``download_weights``: fetch torchvision's RAFT
    weights into its cache for the ``raft`` matcher (after the cheap checks, before the videos).
    ``previews``: a picture of each frame under ``preview/`` (:mod:`svde.data.stereo.preview`).
    """
    opts = (opts or PrepareOptions()).check()
    inputs, out = [Path(p) for p in inputs], Path(out)
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise UserError(f"--shard K/N needs 0 <= K < N, got {k}/{n}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    settings = opts.settings(videos=any(p.is_file() for p in inputs))
    _check_out(out, create=False)  # before the (slow) pass over the videos
    check_existing(out, settings)
    if opts.matcher == "raft":
        if download_weights and not opts.stereo.raft_weights:  # opt-in; a verified cached file is kept
            raft.fetch_raft_weights(opts.stereo.raft_model, progress=progress)
        try:
            raft.network(opts.stereo, device)  # the weights exist and load, before any frame
        except raft.RaftWeightsUnavailable as exc:
            if not opts.preset:
                raise
            raise raft.RaftWeightsUnavailable(f"{exc}; or run --preset {opts.preset} offline with --matcher sgbm") from None
    frames = list_frames(inputs, opts.sampling)[k::n]
    if opts.sky_masks:  # before the output folder and its manifest exist: a fixed rerun starts clean
        midas.check_sky_masks(Path(opts.sky_masks), [f.name for f in frames])
    _check_out(out, create=True)
    manifest = out / manifest_name(shard)
    records = {r["name"]: r for r in read_manifest(manifest)["frames"]} if manifest.is_file() else {}
    elsewhere = _done_elsewhere(out, manifest.name)
    # done under another sharding (its manifest records it): neither redone nor recorded twice
    theirs = {f.name: elsewhere[f.name] for f in frames
              if not _done(out, records, f) and _done(out, elsewhere, f)}
    _remove_own_temporaries(out, {f.name for f in frames} - set(theirs), manifest.name)
    _save(manifest, settings, shard, records)  # at once: a run killed before its first save stays resumable
    todo = [f for f in frames if f.name not in theirs and not _done(out, records, f)]
    log.info("stereo: %d frames (%d done before, %d of them in other manifests), %s", len(frames),
             len(frames) - len(todo), len(theirs), out)
    tasks = ((ref, left, right, reason, str(out), opts, device)
             for ref, left, right, reason in read_frames(todo, opts.sampling))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="frame", desc="stereo")
    try:
        for i, rec in enumerate(_results(tasks, workers, previews), 1):
            records[rec["name"]] = rec
            if rec["status"] == "dropped":
                log.info("%s: dropped: %s", rec["name"], rec["reason"])
            if bar is not None:
                bar.update(1)
            if i % SAVE_EVERY == 0:
                _save(manifest, settings, shard, records)
    finally:
        if bar is not None:
            bar.close()
        _save(manifest, settings, shard, records)  # on a full disk too: then its error is the one shown
    mine = [theirs.get(f.name) or records[f.name] for f in frames if f.name in theirs or f.name in records]
    kept = sum(r["status"] == "kept" for r in mine)
    if mine and kept == 0:
        raise RunFailed(f"all {len(mine)} frames were dropped ({reason_summary(mine)}); nothing to train on in {out}")
    dropped = [r for r in mine if r["status"] == "dropped"]
    return {"frames": len(frames), "processed": len(todo), "kept": kept, "dropped": len(dropped),
            "elsewhere": len(theirs), "drop_reasons": reason_summary(dropped) if dropped else "",
            "manifest": str(manifest)}
