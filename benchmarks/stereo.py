"""Disparity estimation on real rectified pairs with ground truth, and on the synthetic rooms.

For each pair: the share of ground-truth pixels the matcher keeps (valid after its checks),
KITTI's D1 (error > 3 px and > 5 % of the true disparity; KITTI 2015 stereo devkit) and
Middlebury's bad-2.0 (error > 2 px; vision.middlebury.edu/stereo/eval3) among the kept pixels,
and seconds per megapixel (one process, ``--threads`` OpenCV threads, median of ``--repeat``).

Real pairs (``../shared/data/real/stereo``; formats in ``../shared/data/real/README.md``):

* Middlebury 2014 Motorcycle (quarter size, 741x497): ``im0.png``/``im1.png``, ``disp0GT.pfm``
  (inf = unknown); all known pixels are scored, and the non-occluded ones (``mask0nocc.png``
  == 255) separately;
* Scene Flow (FlyingThings3D, 960x540): ``left.png``/``right.png``, ``disp_left.pfm``;
  ``occlusion_left.png`` non-zero = occluded.

Synthetic: ``--synthetic N`` rooms (:func:`svde.data.stereo.synthetic.synthetic_pair`) at 96x128,
baseline 0.1 m, fine random-tile textures, scored against their exact disparity; and the same
rooms as a film (one shot of 6 moving frames per room, MJPG side-by-side ``.avi``) through the
whole tool (:func:`svde.data.stereo.pipeline.prepare`, every 2nd frame): kept frames, their
scores, and frames per second of the tool end to end.

``--matcher raft`` scores torchvision's RAFT (``--raft-model``, ``--raft-iters``, weights from
torchvision's cache or ``--raft-weights FILE``) instead. Where the weights are absent,
``--untrained`` still times RAFT with randomly initialised weights (its cost does not depend on
the weights) and prints no accuracy.

Usage:
    python benchmarks/stereo.py [--root ../shared/data/real/stereo] [--threads 1] [--synthetic 20]
        [--block-size 5] [--uniqueness-ratio 10]
    python benchmarks/stereo.py --matcher raft [--raft-model large|small] [--raft-iters 12]
        [--raft-weights FILE | --untrained] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from svde.data.io import read_depth_any, read_gray, read_image, read_pfm
from svde.data.stereo import StereoSettings, estimate_disparity
from svde.data.stereo import raft
from svde.data.stereo.matching import RAFT_MODELS
from svde.data.stereo.pipeline import PrepareOptions, prepare
from svde.data.stereo.sources import Sampling
from svde.data.stereo.synthetic import synthetic_pair
from svde.errors import SvdeError

REPO = Path(__file__).resolve().parents[1]


def score(disp: np.ndarray, valid: np.ndarray, gt: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """Kept share of ``region`` (ground truth known), D1 and bad-2.0 among the kept pixels there."""
    known = region & np.isfinite(gt) & (gt > 0)
    kept = valid & known
    err = np.abs(disp - np.where(known, gt, 0))[kept]
    g = gt[kept]
    return {"kept": kept.sum() / max(known.sum(), 1), "d1": float(np.mean((err > 3) & (err > 0.05 * g))),
            "bad2": float(np.mean(err > 2))}


def real_pairs(root: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """(name, left, right, gt disparity, {region name: mask}) for each pair found under ``root``."""
    out = []
    mb = root / "middlebury2014_motorcycle"
    if mb.is_dir():
        gt = read_pfm(mb / "disp0GT.pfm")
        out.append(("Middlebury 2014 Motorcycle", read_image(mb / "im0.png"), read_image(mb / "im1.png"), gt,
                    {"all": np.ones(gt.shape, bool), "nocc": read_gray(mb / "mask0nocc.png") == 255}))
    sf = root / "sceneflow"
    if sf.is_dir():
        gt = read_pfm(sf / "disp_left.pfm")
        out.append(("Scene Flow (FlyingThings3D)", read_image(sf / "left.png"), read_image(sf / "right.png"), gt,
                    {"all": np.ones(gt.shape, bool), "nocc": read_gray(sf / "occlusion_left.png") == 0}))
    return out


def timed(left: np.ndarray, right: np.ndarray, settings: StereoSettings, repeat: int, matcher: str = "sgbm",
          device: str = "cpu") -> tuple[np.ndarray, np.ndarray, float]:
    """The matcher's output on one pair and its median seconds per megapixel over ``repeat`` runs."""
    if matcher == "raft":  # load the network once, outside the timing
        estimate_disparity(left[:128], right[:128], matcher, settings, device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        disp, valid = estimate_disparity(left, right, matcher, settings, device)
        times.append(time.perf_counter() - t)
    return disp, valid, float(np.median(times)) / (left.shape[0] * left.shape[1] / 1e6)


def film(rooms: int, settings: StereoSettings) -> str:
    """The synthetic rooms as a film through ``svde prepare-stereo``: one table row."""
    truth = [synthetic_pair(r, move=0.02 * t) for r in range(rooms) for t in range(6)]
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "film.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (2 * 128, 96))
        for p in truth:
            writer.write(cv2.cvtColor(np.concatenate([p["left"], p["right"]], axis=1), cv2.COLOR_RGB2BGR))
        writer.release()
        t = time.perf_counter()
        prepare([video], Path(tmp) / "out", PrepareOptions(stereo=settings, sampling=Sampling(every=2)))
        seconds = time.perf_counter() - t
        frames = json.loads((Path(tmp) / "out/manifest.json").read_text())["frames"]
        rows = []
        for rec in (f for f in frames if f["status"] == "kept"):
            disp = read_depth_any(Path(tmp) / "out/disparity" / f"{rec['name']}.npy")
            valid = read_gray(Path(tmp) / "out/mask" / f"{rec['name']}.png") > 0
            rows.append(list(score(disp, valid, truth[rec["frame_index"]]["disparity"], np.ones(valid.shape, bool)).values()))
    kept, d1, bad2 = np.mean(rows, axis=0)
    return (f"| synthetic film, {len(truth)} frames, {len(frames)} sampled, {len(rows)} kept (SBS MJPG, tool end to end) "
            f"| all | {kept:.1%} | {d1:.1%} | {bad2:.1%} | {len(frames) / seconds:.1f} frames/s |")


def untrained_weights(model: str, folder: Path) -> str:
    """A file of randomly initialised ``raft_<model>`` weights: RAFT's cost without its real weights."""
    torch.manual_seed(0)
    path = folder / f"raft_{model}_untrained.pth"
    torch.save(raft.build_raft(model).state_dict(), path)
    return str(path)


def raft_rows(args: argparse.Namespace, folder: Path) -> None:
    """The RAFT table: accuracy with real weights, or (``--untrained``) timing only."""
    weights = untrained_weights(args.raft_model, folder) if args.untrained else args.raft_weights
    settings = StereoSettings(raft_model=args.raft_model, raft_iters=args.raft_iters, raft_weights=weights).check()
    try:
        raft.weights_file(settings)
    except SvdeError as e:  # the weights are not here: one clear line, before any work
        sys.exit(f"error: {e}\n(--untrained times RAFT without them)")
    print(f"raft settings: {settings.as_dict()} on {args.device}" + (" (UNTRAINED weights: timing only)" if args.untrained else ""))
    print("| pair | size | region | kept | D1 | bad-2.0 | s/MP | s/pair |")
    print("|---|---|---|---|---|---|---|---|")
    pairs = real_pairs(args.root)
    for i in range(min(args.synthetic, 3)):  # RAFT is slow on a CPU: three rooms
        room = synthetic_pair(i)
        pairs.append((f"synthetic room {i}", room["left"], room["right"], room["disparity"], {"all": np.ones((96, 128), bool)}))
    for name, left, right, gt, regions in pairs:
        disp, valid, s_mp = timed(left, right, settings, args.repeat, "raft", args.device)
        size = f"{left.shape[1]}x{left.shape[0]}"
        s_pair = s_mp * left.shape[0] * left.shape[1] / 1e6
        for region, mask in regions.items():
            r = score(disp, valid, gt, mask)
            cells = "n/a | n/a | n/a" if args.untrained else f"{r['kept']:.1%} | {r['d1']:.1%} | {r['bad2']:.1%}"
            print(f"| {name} | {size} | {region} | {cells} | {s_mp:.2f} | {s_pair:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=REPO.parent / "shared/data/real/stereo")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--synthetic", type=int, default=20, help="synthetic rooms to score (0: none)")
    p.add_argument("--block-size", type=int, default=StereoSettings.block_size, help="SGBM block (odd)")
    p.add_argument("--uniqueness-ratio", type=int, default=StereoSettings.uniqueness_ratio, help="SGBM uniqueness, %%")
    p.add_argument("--matcher", choices=("sgbm", "raft"), default="sgbm")
    p.add_argument("--raft-model", choices=RAFT_MODELS, default=StereoSettings.raft_model)
    p.add_argument("--raft-iters", type=int, default=StereoSettings.raft_iters)
    p.add_argument("--raft-weights", default="", help="local RAFT weights (default: torchvision's cache)")
    p.add_argument("--untrained", action="store_true", help="time RAFT with random weights (no accuracy)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    if args.matcher == "raft":
        with tempfile.TemporaryDirectory() as tmp:
            raft_rows(args, Path(tmp))
        return
    settings = StereoSettings(block_size=args.block_size, uniqueness_ratio=args.uniqueness_ratio).check()
    print(f"sgbm settings: {settings.as_dict()}")
    print("| pair | region | kept | D1 | bad-2.0 | s/MP |")
    print("|---|---|---|---|---|---|")
    for name, left, right, gt, regions in real_pairs(args.root):
        disp, valid, s_mp = timed(left, right, settings, args.repeat)
        for region, mask in regions.items():
            r = score(disp, valid, gt, mask)
            print(f"| {name} | {region} | {r['kept']:.1%} | {r['d1']:.1%} | {r['bad2']:.1%} | {s_mp:.2f} |")
    if args.synthetic:
        rows = []
        for i in range(args.synthetic):
            pair = synthetic_pair(i)
            disp, valid, s_mp = timed(pair["left"], pair["right"], settings, 1)
            rows.append((*score(disp, valid, pair["disparity"], np.ones(valid.shape, bool)).values(), s_mp))
        kept, d1, bad2, s_mp = np.mean(rows, axis=0)
        print(f"| synthetic rooms x{args.synthetic} (96x128, mean) | all | {kept:.1%} | {d1:.1%} | {bad2:.1%} | {s_mp:.2f} |")
        print(film(args.synthetic, settings))


if __name__ == "__main__":
    main()
