"""Export a depth network to ONNX or TorchScript, checked against PyTorch as part of the export.

The exported graph has one input, ``image``: float32 (B, 3, H, W), RGB scaled to [0, 1] then
ImageNet-normalised (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225), H and W multiples of
32 (resize the image so, e.g. shorter side 384 as in the paper); and one output,
``log_disparity``: float32 (B, 1, H, W), log inverse depth (up to scale for these models:
depth ~ exp(-log_disparity)). The file is written only if its output matches
PyTorch's to ``--atol`` (onnxruntime for ONNX, a reloaded module for TorchScript); with
``--dynamic`` batch, height and width are free and parity is also checked at a second size.

``--model NAME`` alone exports the authors' released weights of NAME (as ``svde predict``).

Examples:
    svde export --model mn_lrn4 --format onnx --out mn.onnx --dynamic       # released weights
    svde export --checkpoint runs/quickstart/best.pt --format onnx --out mn.onnx --dynamic
    python scripts/export.py --checkpoint runs/quickstart/best.pt --format onnx --out mn.onnx --dynamic
    svde export --official weights/b0_lrn4.pth --model b0_lrn4 --format torchscript \\
        --out b0.pt --height 384 --width 512
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from svde.cli.common import (
    add_debug_argument,
    add_model_arguments,
    add_threads_argument,
    apply_threads,
    check_model_arguments,
    check_network_size,
    check_output_folder,
    check_positive,
    command_parser,
    load_network,
)
from svde.errors import UserError
from svde.models.export import EXPORTERS, export_model


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse and check the arguments (every value is checked here, before any work)."""
    p = command_parser(__doc__, prog)
    add_model_arguments(p, random_weights="random weights for --model (only to try the export path)", released=True)
    p.add_argument("--format", choices=list(EXPORTERS), default="onnx", help="default: %(default)s")
    p.add_argument("--out", type=Path, required=True, help="the file to write")
    p.add_argument("--height", type=int, default=384, help="export/check height, a multiple of 32 (default: %(default)s)")
    p.add_argument("--width", type=int, default=384, help="export/check width, a multiple of 32 (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="export/check batch size (default: %(default)s)")
    p.add_argument("--dynamic", action="store_true", help="free batch, height and width")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default: %(default)s)")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed (default: %(default)s)")
    add_threads_argument(p)
    add_debug_argument(p)
    args = p.parse_args(argv)
    check_model_arguments(p, args, released=True)
    check_network_size(args.height, args.width)
    check_positive("--batch", args.batch)
    check_positive("--opset", args.opset, minimum=17)
    check_positive("--threads", args.threads)
    if not (math.isfinite(args.atol) and args.atol >= 0):
        raise UserError(f"--atol must be a finite number >= 0, got {args.atol:g}")
    if args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder; expected the file to write (e.g. {args.out / 'model.onnx'})")
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Export and check; the file is written only when its output matches PyTorch's."""
    args = parse_args(argv, prog)
    apply_threads(args.threads)
    check_output_folder(args.out.parent, option="the folder of --out")
    model = load_network(args, "cpu")
    options = {"height": args.height, "width": args.width, "dynamic": args.dynamic, "batch": args.batch, "atol": args.atol}
    if args.format == "onnx":
        options["opset"] = args.opset
    diff = export_model(model, args.out, args.format, **options)  # ExportError: exit 1, nothing written
    print(f"wrote {args.out} ({args.format}, {model.name}, {'dynamic' if args.dynamic else f'{args.height}x{args.width}'}); "
          f"max abs difference to PyTorch {diff:.2e} <= {args.atol:g}")
    return 0
