"""Prepare stereo footage as UTSS training data: the ``stereo_folder`` layout with a manifest.

INPUT is a folder of rectified pairs (``left/<name>.png`` + ``right/<name>.png``) or a 3D video:
side by side (``--layout sbs``, the default for videos: left half | right half) or top-bottom
(``--layout tb``: left on top), full or ``--half`` (each view squeezed to half width/height, as
broadcast; stretched back). Videos are sampled (``--every N`` or ``--fps F``), their letterbox bars
cropped, frames at scene cuts and near-duplicates skipped. Each frame's left-view disparity comes
from ``--matcher sgbm`` (OpenCV's semi-global matcher with a left-right check and a texture rule,
offline) or ``--matcher raft`` (torchvision's RAFT both ways, as the paper; its weights are an
opt-in download, ``--download-weights``, or ``--raft-weights FILE``). Frames with identical views
(mono footage), unrectified (shifted, rotated or scaled) views, views whose rectification cannot be
checked, too few valid pixels or too small a disparity range are dropped with the reason in the
manifest (and the most common reasons in the summary line). The output folder holds ``left/``,
``disparity/`` (float32 .npy, pixels), ``mask/`` and ``manifest.json`` and loads with
``build_dataset("stereo_folder", OUT)`` as it is (docs/stereo.md). To look at before training:
``preview/<name>.jpg`` per kept frame (left view | disparity in colour | mask), per dropped frame
that decoded ``preview/dropped/<name>.jpg`` (left | right, with guide lines), and
``preview/contact_sheet.jpg``, the first kept and dropped frames with the reasons (``--no-preview``:
none of them).

``--preset midas`` follows MiDaS' 3D-movie acquisition (lasinger/3DVideos2Stereo) step by step,
as the paper reproduced it (§4.3.3): RAFT both ways, its vertical, range and forward-backward
checks, 1 s clips at 4 fps inside shots (FFmpeg's scene score), half-size storage. A preset only
sets defaults: any flag given explicitly wins (``--matcher sgbm`` runs it offline); the manifest
records the preset and every effective setting. Use it for feature films; keep the defaults for
other footage (docs/stereo.md says when to use which).

A rerun skips the frames already done; a folder prepared with other settings is refused, naming
them. ``--shard K/N`` (0 <= K < N) prepares frames K, K+N, ... (one job of an array; shards may
share --out, and frames another sharding of the same --out already did are not redone).

Examples:
    svde prepare-stereo film_sbs.mp4 --out data/3d_movies --fps 1 --workers 8
    svde prepare-stereo film_sbs.mp4 --out data/midas --preset midas --download-weights --device cuda
    svde prepare-stereo film_sbs.mp4 --out data/midas_sgbm --preset midas --matcher sgbm
    svde prepare-stereo broadcast.ts --layout tb --half --out data/tv --every 48
    svde prepare-stereo pairs/ --out data/my_stereo --num-disparities 128
    svde prepare-stereo film_sbs.mp4 --out data/3d_movies --every 24 --shard 3/16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2


from svde.cli.common import add_debug_argument, add_threads_argument, apply_threads, command_parser
from svde.device import resolve_device
from svde.data.stereo.estimate import MATCHERS
from svde.data.stereo.matching import RAFT_MODELS, SGBM_MODES, StereoSettings
from svde.data.stereo.midas import PRESETS, preset_values
from svde.data.stereo.pipeline import FRAME_FILTERS, PrepareOptions, prepare
from svde.data.stereo.preview import write_contact_sheet
from svde.errors import RunFailed
from svde.data.stereo.sources import CUT_DETECTORS, LAYOUTS, Sampling


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/4), got {text!r}") from None


def _given(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The dests of the options on the command line: a second parse with every default suppressed."""
    saved = {action: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved.items():
            action.default = default


def apply_preset(args: argparse.Namespace, given: set[str]) -> argparse.Namespace:
    """``args`` with the defaults of ``args.preset`` (:data:`~svde.data.stereo.midas.PRESETS`) for
    every option not ``given``; a preset value also yields to an option it excludes
    (``--every`` to the preset's ``--fps``, ``--cut-detector`` to its ``--cut-threshold``)."""
    for dest, value in preset_values(args.preset, given).items():
        setattr(args, dest, value)
    return args


def _mark_presets(parser: argparse.ArgumentParser) -> None:
    """Append each preset's value to the help of the options it sets."""
    for action in parser._actions:
        values = [f"{name}: {preset[action.dest]:g}" if isinstance(preset[action.dest], float)
                  else f"{name}: {preset[action.dest]}" for name, preset in PRESETS.items() if action.dest in preset]
        if values and action.help:
            action.help += f" [--preset {'; '.join(values)}]"


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse the arguments, a preset's defaults applied (values are checked by
    :meth:`PrepareOptions.check` before any work)."""
    d, ds, do = StereoSettings(), Sampling(), PrepareOptions()
    p = command_parser(__doc__, prog)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="pair folders and/or 3D videos")
    p.add_argument("--out", type=Path, required=True, help="output folder (the stereo_folder layout)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="defaults of a published pipeline; flags given explicitly win. midas: MiDaS' 3D-movie "
                        "acquisition (docs/stereo.md)")
    p.add_argument("--layout", choices=LAYOUTS, default=ds.layout,
                   help="how inputs hold the views; auto: folders are pairs, videos side by side (default: %(default)s)")
    p.add_argument("--half", action="store_true", help="videos: half-SBS/half-TB, each view squeezed to half size")
    p.add_argument("--no-crop", action="store_true", help="videos: keep letterbox bars")
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--every", type=int, default=ds.every, help="videos: take every N-th frame (default: %(default)s)")
    sample.add_argument("--fps", type=float, help="videos: take about this many frames per second")
    p.add_argument("--cut-detector", choices=list(CUT_DETECTORS), default=ds.cut_detector,
                   help="videos: scene cut score, content (PySceneDetect's HSV difference) or ffmpeg (FFmpeg's "
                        "select scene score, MiDaS') (default: %(default)s)")
    p.add_argument("--cut-threshold", type=float, default=None,
                   help="videos: score above which two frames are a scene cut; 0: off (default: "
                        f"{', '.join(f'{v:g} for {k}' for k, v in CUT_DETECTORS.items())})")
    p.add_argument("--dup-threshold", type=float, default=ds.dup_threshold,
                   help="videos: below this difference a frame repeats the previous one; 0: off (default: %(default)s)")
    p.add_argument("--clip-length", type=float, default=ds.clip_length,
                   help="videos: MiDaS' clip sampling, clips of S seconds at --fps/--every that fit inside a shot; "
                        "0: off (default: %(default)s)")
    p.add_argument("--clip-gap", type=float, default=ds.clip_gap,
                   help="videos, with --clip-length: seconds between the starts of a shot's clips (default: %(default)s)")
    p.add_argument("--matcher", choices=sorted(MATCHERS), default="sgbm", help="disparity estimator (default: %(default)s)")
    p.add_argument("--num-disparities", type=int, default=d.num_disparities,
                   help="sgbm: search range in px, a multiple of 16; 0: chosen per frame from its feature "
                        "matches, negative disparities included (default: %(default)s)")
    p.add_argument("--min-disparity", type=int, default=d.min_disparity,
                   help="sgbm: smallest disparity searched, with --num-disparities N (negative: converged "
                        "footage, content behind the screen) (default: %(default)s)")
    p.add_argument("--block-size", type=int, default=d.block_size, help="matching window, odd (default: %(default)s)")
    p.add_argument("--uniqueness-ratio", type=int, default=d.uniqueness_ratio, help="SGBM uniqueness, %% (default: %(default)s)")
    p.add_argument("--mode", choices=list(SGBM_MODES), default=d.mode, help="SGBM variant (default: %(default)s)")
    p.add_argument("--lr-tolerance", type=float, default=d.lr_tolerance,
                   help="left-right consistency tolerance in px (default: %(default)s)")
    p.add_argument("--min-texture", type=float, default=d.min_texture,
                   help="minimal grey-level std over the window, 0..255 (default: %(default)s)")
    p.add_argument("--max-vertical", type=float, default=d.max_vertical,
                   help="largest vertical offset in px: of the views' point matches (their median, and fitted across the "
                        "frame: shift, rotation, scale; svde filter) or of a pixel's flow (midas filter; raft: per "
                        "pixel) (default: %(default)s)")
    p.add_argument("--frame-filter", choices=FRAME_FILTERS, default=do.frame_filter,
                   help="which frames and pixels are kept: svde's checks or MiDaS' (docs/stereo.md) (default: %(default)s)")
    p.add_argument("--max-vertical-share", type=float, default=do.max_vertical_share,
                   help="midas filter: drop a frame when this share of pixels exceeds --max-vertical (default: %(default)s)")
    p.add_argument("--raft-model", choices=RAFT_MODELS, default=d.raft_model, help="raft: model size (default: %(default)s)")
    p.add_argument("--raft-iters", type=int, default=d.raft_iters, help="raft: flow updates (default: %(default)s)")
    p.add_argument("--raft-weights", default=d.raft_weights,
                   help="raft: a local weights file (default: torchvision's, from the torch hub cache)")
    p.add_argument("--download-weights", action="store_true",
                   help="raft: download torchvision's weights into the torch hub cache if missing (opt-in)")
    p.add_argument("--device", default="cpu", help="raft: where it runs, e.g. cuda (default: %(default)s)")
    p.add_argument("--min-kept", type=float, default=do.min_kept,
                   help="drop frames with a smaller valid fraction (midas filter: forward-backward pass rate, "
                        "dropped at or below) (default: %(default)s)")
    p.add_argument("--min-range", type=float, default=do.min_range,
                   help="drop frames whose valid disparities span fewer px, 5th..95th percentile (midas filter: "
                        "max - min, dropped at or below) (default: %(default)s)")
    p.add_argument("--scale", type=float, default=do.scale,
                   help="store kept frames at this size factor, disparity scaled alike (default: %(default)s)")
    p.add_argument("--sky-masks", default=do.sky_masks, metavar="DIR",
                   help="DIR/<frame name>.png sky masks (non-zero = sky): sky set to the frame's minimum "
                        "disparity and valid, as MiDaS (default: none, sky not segmented)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N", help="prepare frames K, K+N, ... (0 <= K < N)")
    p.add_argument("--workers", type=int, default=1, help="matching processes (default: %(default)s)")
    add_threads_argument(p, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-preview", action="store_true",
                   help="no pictures (default: preview/<name>.jpg per frame and preview/contact_sheet.jpg)")
    add_debug_argument(p)
    _mark_presets(p)
    args = p.parse_args(argv)
    return apply_preset(args, _given(p, argv)) if args.preset else args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Prepare the inputs; 0 when frames were kept, 1 when every frame was dropped, 2 for bad input."""
    args = parse_args(argv, prog)
    stereo = StereoSettings(num_disparities=args.num_disparities, min_disparity=args.min_disparity,
                            block_size=args.block_size, uniqueness_ratio=args.uniqueness_ratio, mode=args.mode,
                            lr_tolerance=args.lr_tolerance, min_texture=args.min_texture,
                            max_vertical=args.max_vertical, raft_model=args.raft_model, raft_iters=args.raft_iters,
                            raft_weights=args.raft_weights)
    sampling = Sampling(every=args.every, fps=args.fps, layout=args.layout, half=args.half, crop_bars=not args.no_crop,
                        cut_detector=args.cut_detector, cut_threshold=args.cut_threshold,
                        dup_threshold=args.dup_threshold, clip_length=args.clip_length, clip_gap=args.clip_gap)
    opts = PrepareOptions(args.matcher, stereo, sampling, min_kept=args.min_kept, min_range=args.min_range,
                          frame_filter=args.frame_filter, max_vertical_share=args.max_vertical_share,
                          scale=args.scale, sky_masks=args.sky_masks, preset=args.preset or "")
    opts.check()
    apply_threads(args.threads)
    device = str(resolve_device(args.device))
    try:
        summary = prepare(args.inputs, args.out, opts, shard=args.shard, workers=args.workers,
                          progress=not args.no_progress, device=device, download_weights=args.download_weights,
                          previews=not args.no_preview)
    except RunFailed as exc:  # every frame dropped: the contact sheet shows them with the reasons
        sheet = contact_sheet(args)
        if sheet is None:
            raise
        raise RunFailed(f"{exc}; contact sheet of the frames and the reasons: {sheet}") from None
    sheet = contact_sheet(args)
    elsewhere = f", {summary['elsewhere']} done under another --shard" if summary["elsewhere"] else ""
    reasons = f"; dropped: {summary['drop_reasons']}" if summary["drop_reasons"] else ""
    print(f"{summary['kept']} frames kept, {summary['dropped']} dropped ({summary['processed']} processed now, "
          f"{summary['frames']} in this shard{elsewhere}) -> {args.out} ({Path(summary['manifest']).name}){reasons}")
    if sheet is not None:
        print(f"previews: {sheet.parent}/ (contact sheet: {sheet})")
    return 0


def contact_sheet(args: argparse.Namespace) -> Path | None:
    """``preview/contact_sheet.jpg`` of ``--out`` unless ``--no-preview``; a warning, not an error, when
    it cannot be written (the data itself is there)."""
    if args.no_preview:
        return None
    try:
        sheet = write_contact_sheet(args.out)
    except (OSError, ValueError, cv2.error) as exc:
        print(f"warning: no contact sheet ({exc})", file=sys.stderr)
        return None
    return sheet
