#!/usr/bin/env python
"""Predict depth for an image or a folder of images (searched recursively).

For every input ``DIR/sub/name.jpg`` it writes, under ``--out``:

* ``sub/name.<domain>.npy`` (float32) or ``sub/name.<domain>.png`` (16-bit, normalised to the
  map's min..max, with ``sub/name.<domain>.json`` holding min/max: value = min + png / 65535 *
  (max - min));
* ``sub/name.vis.png``: a colourised visualisation (near = bright, 2nd..98th percentile);
* with ``--ply``: ``sub/name.ply``, a coloured point cloud from the predicted depth and
  ``--fov`` or ``--intrinsics`` (depth is up to scale for UTS models).

Examples:
    python scripts/predict.py --checkpoint runs/quickstart/best.pt --input photos/ --out preds/
    python scripts/predict.py --official weights/b5_lrn4.pth --model b5_lrn4 --input img.jpg \\
        --out preds/ --domain depth --format png --ply --fov 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from svde.cli.common import run_main
from svde.data.base import DataError
from svde.data.io import read_image
from svde.errors import RunFailed
from svde.inference import (
    DOMAINS,
    add_debug_argument,
    add_model_arguments,
    backproject,
    check_camera,
    check_device,
    check_model_arguments,
    check_output_folder,
    colorize,
    convert_domain,
    intrinsics_from_fov,
    list_images,
    load_depth_model,
    output_stems,
    predict,
    save_png16,
    write_npy,
    write_ply,
    write_rgb,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (every value is checked here, before any work)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, random_weights="random weights for --model (only to try the pipeline; predictions are meaningless)")
    p.add_argument("--input", type=Path, required=True, help="an image file or a folder (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--domain", choices=DOMAINS, default="log_disparity",
                   help="output domain; depth/disparity are up to scale for UTS models (default: %(default)s)")
    p.add_argument("--format", choices=("npy", "png"), default="npy",
                   help="npy: float32; png: 16-bit, min..max normalised, with a .json sidecar (default: %(default)s)")
    p.add_argument("--short-side", type=int, default=384,
                   help="rescale so the shorter side has this length (then to multiples of 32); "
                        "0 keeps the native size (default: %(default)s, as in the paper)")
    p.add_argument("--no-vis", action="store_true", help="do not write the colourised .vis.png")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud (needs --fov or --intrinsics)")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--fov", type=float, help="horizontal field of view in degrees, for --ply")
    cam.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                     help="pinhole intrinsics in pixels of the input image, for --ply")
    p.add_argument("--ply-ascii", action="store_true", help="write ASCII PLY instead of binary")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    add_debug_argument(p)
    args = p.parse_args(argv)
    check_model_arguments(p, args)
    if args.ply and args.fov is None and args.intrinsics is None:
        p.error("--ply needs --fov DEG or --intrinsics FX FY CX CY")
    check_camera(fov=args.fov, intrinsics=args.intrinsics)
    if args.short_side < 0:
        p.error(f"--short-side must be >= 0, got {args.short_side}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Predict every image; returns 0, or 1 when some images could not be read (the rest are written)."""
    args = parse_args(argv)
    device = check_device(args.device)
    images, skipped = list_images(args.input)
    if not images:
        raise DataError(f"--input {args.input}: no images there (extensions: png, jpg, ...)")
    for path in skipped:
        print(f"note: skipping {path} (not an image)", file=sys.stderr)
    check_output_folder(args.out)
    model = load_depth_model(args.checkpoint, args.official, args.model, device)
    root = args.input if args.input.is_dir() else args.input.parent
    failed: list[Path] = []
    for path, stem in zip(images, output_stems(images, root)):
        try:
            rgb = read_image(path)
        except DataError as exc:  # names the file and what is wrong with it; go on with the others
            print(f"warning: {exc}", file=sys.stderr)
            failed.append(path)
            continue
        write_prediction(args, model, rgb, path, args.out / stem)
        print(f"{path} -> {args.out / stem}.*")
    if failed:
        raise RunFailed(f"{len(failed)} of {len(images)} images could not be read (the others were written): "
                        + ", ".join(str(p) for p in failed))
    return 0


def write_prediction(args: argparse.Namespace, model: torch.nn.Module, rgb: np.ndarray, source: Path, base: Path) -> None:
    """Predict one image and write the requested files (each atomically) under ``base``."""
    log_disp = predict(model, rgb, short_side=args.short_side or None)
    values = convert_domain(log_disp, args.domain)
    if args.format == "npy":
        write_npy(f"{base}.{args.domain}.npy", values)
    else:
        save_png16(f"{base}.{args.domain}.png", values, domain=args.domain, source=str(source))
    if not args.no_vis:
        # Log-disparity shows near and far structure evenly, with near = bright.
        write_rgb(f"{base}.vis.png", colorize(log_disp))
    if args.ply:
        height, width = log_disp.shape
        intrinsics = args.intrinsics or intrinsics_from_fov(width, height, args.fov)
        points, colors = backproject(convert_domain(log_disp, "depth"), intrinsics, rgb)
        write_ply(f"{base}.ply", points, colors, binary=not args.ply_ascii)


if __name__ == "__main__":
    sys.exit(run_main(main))
