"""Predict depth for an image or the photos of a folder (``--recursive``: and of its subfolders).

With ``--model NAME`` alone it uses the authors' released weights of NAME (downloaded once
into torch.hub's cache, verified; ``SVDE_WEIGHTS_URL`` points at a mirror); ``--checkpoint``
uses a model trained here, ``--official FILE --model NAME`` a released file on disk.

For every input ``DIR/sub/name.jpg`` it writes, under ``--out`` (default ``predictions/``):

* ``sub/name.<domain>.npy`` (float32) or ``sub/name.<domain>.png`` (16-bit, normalised to the
  map's min..max, with ``sub/name.<domain>.json`` holding min/max: value = min + png / 65535 *
  (max - min));
* ``sub/name.vis.png``: a colourised visualisation (near = bright, 2nd..98th percentile);
* with ``--ply``: ``sub/name.ply``, a coloured point cloud, and with ``--mesh``:
  ``sub/name.mesh.ply``, a coloured triangle mesh that does not join across depth jumps
  (svde.geometry.depth_to_mesh); both from the predicted depth and ``--fov`` or
  ``--intrinsics`` (depth is up to scale for UTS models).

A folder's photos are its image files (png, jpg, ...), less what is not a photo, each kind
counted in one ``note:`` line: the files ``svde predict`` writes (``*.vis.png``,
``*.<domain>.npy``, ``*.<domain>.png`` with its ``.json``, ``*.ply``), so that ``--out`` may be
the input folder or inside it and a second run predicts each photo once; the output folder
itself (never searched); and images that are not photos, told from the header where possible:
1-bit images and single-channel images of more than 8 bits (16-bit depth PNGs, float TIFFs),
and greyscale or palette images with at most two values (masks). Subfolders are searched only
with ``--recursive`` (their outputs keep the layout: ``--out``/sub/name.*). A file named on the
command line is predicted whatever it holds.

Examples:
    svde predict --model b5_lrn4 photo.jpg                       # released weights -> predictions/
    python scripts/predict.py --model b5_lrn4 --input photo.jpg --out preds/
    svde predict --model b5_lrn4 photos/ --domain depth --format png --mesh --fov 60
    svde predict --model b5_lrn4 photos/ --recursive --out photos/depth    # subfolders too; outputs never re-read
    svde predict --checkpoint runs/quickstart/best.pt --input photos/ --out preds/
    svde predict --official weights/b5_lrn4.pth --model b5_lrn4 img.jpg --ply --fov 60
    svde predict --model b5_lrn4 clip.mp4 --side-by-side         # a video -> predictions/clip.depth.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from svde.api import DOMAINS, convert_domain, predict
from svde.cli.common import (
    add_debug_argument,
    add_model_arguments,
    check_camera,
    add_threads_argument,
    apply_threads,
    check_model_arguments,
    check_output_folder,
    command_parser,
    load_network,
    output_stems,
)
from svde.cli.video import add_video_arguments, check_video_arguments, is_video, main_video
from svde.data.base import DataError
from svde.data.io import read_image, save_png16, write_mesh_ply, write_npy, write_ply, write_rgb
from svde.data.layout import SKIP_NOT_IMAGE, SKIP_NOT_PHOTO, SKIP_OUTPUT, USER_IMAGE_EXTS, ImageScan, scan_images
from svde.device import resolve_device
from svde.errors import RunFailed, UserError
from svde.geometry import depth_to_mesh, intrinsics_from_fov, point_cloud
from svde.models.precision import PRECISIONS, RUNTIMES, precision_problem, require_openvino, runtime_model
from svde.models.prediction import NonFiniteOutput
from svde.preprocess import EVAL_SHORT_SIDE
from svde.viz import colorize


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse and check the arguments (every value is checked here, before any work)."""
    p = command_parser(__doc__, prog)
    add_model_arguments(p, random_weights="random weights for --model (only to try the pipeline; predictions "
                                          "are meaningless)", released=True)
    p.add_argument("image", nargs="?", type=Path, metavar="INPUT", help="an image file or a folder (as --input)")
    p.add_argument("--input", type=Path, help="an image file or a folder (its photos; see above)")
    p.add_argument("--recursive", action="store_true",
                   help="also predict the photos in the folder's subfolders (default: the folder's own photos only)")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: %(default)s)")
    p.add_argument("--domain", choices=DOMAINS, default="log_disparity",
                   help="output domain; depth/disparity are up to scale for UTS models (default: %(default)s)")
    p.add_argument("--format", choices=("npy", "png"), default="npy",
                   help="npy: float32; png: 16-bit, min..max normalised, with a .json sidecar (default: %(default)s)")
    p.add_argument("--short-side", type=int, default=EVAL_SHORT_SIDE,
                   help="rescale so the shorter side has this length (then to multiples of 32); "
                        "0 keeps the native size (default: %(default)s, as in the paper)")
    p.add_argument("--no-vis", action="store_true", help="do not write the colourised .vis.png")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud (needs --fov or --intrinsics)")
    p.add_argument("--mesh", action="store_true",
                   help="also write a coloured triangle mesh, <name>.mesh.ply (needs --fov or --intrinsics)")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--fov", type=float, help="horizontal field of view in degrees, for --ply/--mesh")
    cam.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                     help="pinhole intrinsics in pixels of the input image, for --ply/--mesh")
    p.add_argument("--ply-ascii", action="store_true", help="write the point cloud as ASCII PLY instead of binary")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto, cuda if available)")
    add_precision_arguments(p)
    add_threads_argument(p)
    add_video_arguments(p)  # a video INPUT: svde.cli.video
    add_debug_argument(p)
    args = p.parse_args(argv)
    check_model_arguments(p, args, released=True)
    if args.image is not None and args.input is not None and args.image != args.input:
        p.error(f"two inputs given ({args.image} and --input {args.input}); give one image or folder")
    args.input = args.input if args.input is not None else args.image
    if args.input is None:
        p.error("give an image or a folder: svde predict [options] INPUT (or --input INPUT)")
    check_video_arguments(p, args)
    if (args.ply or args.mesh) and args.fov is None and args.intrinsics is None:
        p.error(f"{'--ply' if args.ply else '--mesh'} needs --fov DEG or --intrinsics FX FY CX CY")
    check_camera(fov=args.fov, intrinsics=args.intrinsics)
    check_precision_arguments(p, args)
    if args.short_side < 0:
        p.error(f"--short-side must be >= 0, got {args.short_side}")
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Predict every image; returns 0 (:class:`RunFailed` when some images could not be read; the rest are written)."""
    args = parse_args(argv, prog)
    apply_threads(args.threads)
    device = resolve_device(args.device)
    if is_video(args.input):  # <out>/<name>.depth.mp4 (svde.cli.video)
        return main_video(args, device)
    scan = scan_images(args.input, recursive=args.recursive, exclude=[args.out] if args.input.is_dir() else [])
    for line in scan_notes(scan, args.input, args.out):
        print(line, file=sys.stderr)
    images = scan.images
    if not images:
        n = len(scan.subfolders)
        hint = f"; {n} subfolder{'' if n == 1 else 's'} not searched: add --recursive" if n else ""
        raise DataError(f"--input {args.input}: no images to predict there (photos with the extensions "
                        f"{', '.join(USER_IMAGE_EXTS)}){hint}")
    check_output_folder(args.out)
    model = with_precision(args, load_network(args, device))
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


def scan_notes(scan: ImageScan, folder: Path, out: Path) -> list[str]:
    """One ``note:`` line per kind of file passed over, with its count (not one line per file)."""
    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    notes = []
    if folder.is_dir() and out.resolve() != folder.resolve() and out.resolve().is_relative_to(folder.resolve()):
        notes.append(f"note: not searching the output folder {out}")
    outputs, not_photos, not_images = (len(scan.skipped.get(k, [])) for k in (SKIP_OUTPUT, SKIP_NOT_PHOTO, SKIP_NOT_IMAGE))
    if outputs:
        notes.append(f"note: skipping {count(outputs, 'file', 'files')} svde predict writes "
                     f"(*.vis.png, *.<domain>.npy/.png/.json, *.ply)")
    if not_photos:
        notes.append(f"note: skipping {count(not_photos, 'image that is not a photo', 'images that are not photos')} "
                     f"(1-bit or 2-valued masks, 16-bit or float single-channel depth maps)")
    if not_images:
        notes.append(f"note: skipping {count(not_images, 'file that is not an image', 'files that are not images')} "
                     f"(extensions: {', '.join(USER_IMAGE_EXTS)})")
    if scan.subfolders:
        notes.append(f"note: {count(len(scan.subfolders), 'subfolder', 'subfolders')} not searched "
                     f"(--recursive searches them)")
    return notes


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
    if args.ply or args.mesh:
        height, width = log_disp.shape
        intrinsics = args.intrinsics or intrinsics_from_fov(width, height, args.fov)
        try:
            depth = convert_domain(log_disp, "depth")
        except NonFiniteOutput:  # its advice (a log domain) does not apply: 3D points need depth
            raise NonFiniteOutput(f"{'--ply' if args.ply else '--mesh'}: {source}: the predicted depth overflows float32 "
                                  f"(log-disparity {float(log_disp.min()):.3g} to {float(log_disp.max()):.3g}): too "
                                  f"far for 3D points; the model's output is probably broken") from None
        if args.ply:
            points, colors = point_cloud(depth, intrinsics, rgb)
            write_ply(f"{base}.ply", points, colors, binary=not args.ply_ascii)
        if args.mesh:
            mesh = depth_to_mesh(depth, intrinsics, rgb)
            write_mesh_ply(f"{base}.mesh.ply", mesh.vertices, mesh.faces, mesh.colors)


# ---- --precision: bf16 (OpenVINO) and int8 (ONNX Runtime) on the CPU (svde.models.precision) ----
def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    """``--precision`` and its ``--calibration`` folder."""
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32: PyTorch (default); bf16: OpenVINO (pip install 'svde[openvino]'), only on a CPU with "
                        "bf16 units; int8: ONNX Runtime, static quantization calibrated on --calibration photos "
                        "(synthetic rooms by default). Both run on the CPU; docs/benchmarks.md has their speed "
                        "and accuracy change")
    p.add_argument("--calibration", type=Path, metavar="DIR",
                   help="--precision int8: calibrate on the photos of DIR (default: synthetic rooms)")


def check_precision_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what cannot pay before any work: bf16 without OpenVINO or without bf16 units, a GPU."""
    if args.precision == "fp32":
        if args.calibration is not None:
            p.error("--calibration is for --precision int8")
        return
    if args.device not in ("auto", "cpu"):
        p.error(f"--precision {args.precision} runs on the CPU; got --device {args.device}")
    if args.calibration is not None and (args.precision != "int8" or not args.calibration.is_dir()):
        p.error(f"--calibration {args.calibration}: a folder of photos, for --precision int8")
    args.device = "cpu"
    if args.precision == "bf16":
        require_openvino()
        problem = precision_problem("bf16")
        if problem:
            raise UserError(f"--precision bf16: {problem}; use fp32 (the default) or int8")


def with_precision(args: argparse.Namespace, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` itself for fp32, else it run by OpenVINO (bf16) or ONNX Runtime (int8)."""
    if args.precision == "fp32":
        return model
    problem = precision_problem(args.precision)
    if problem:
        print(f"warning: --precision {args.precision}: {problem}", file=sys.stderr)
    size = args.short_side or EVAL_SHORT_SIDE
    print(f"note: exporting {model.name} to ONNX for {args.precision} ({RUNTIMES[args.precision]})"
          + (f", calibrated on {args.calibration or 'synthetic rooms'}" if args.precision == "int8" else ""),
          file=sys.stderr)
    net = runtime_model(model, args.precision, height=size, width=size, calibration=args.calibration)
    timed = ", ".join(f"{r} {ms:.1f} ms" for r, ms in net.timings.items())
    print(f"note: {args.precision} runs in {net.runtime}"
          + (f", the faster here at {size}x{size} ({timed})" if timed else ""), file=sys.stderr)
    return net
