"""Export a depth network to ONNX or TorchScript, checked against PyTorch as part of the export.

The exported graph has one input, ``image``: float32 (B, 3, H, W), RGB scaled to [0, 1] then
ImageNet-normalised (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225), H and W multiples of
32 (resize the image so, e.g. shorter side 384 as in the paper); and one output,
``log_disparity``: float32 (B, 1, H, W), log inverse depth (up to scale for these models:
depth ~ exp(-log_disparity)). The file is written only if its output matches
PyTorch's to ``--atol`` (onnxruntime for ONNX, a reloaded module for TorchScript); with
``--dynamic`` batch, height and width are free and parity is also checked at a second size.

``--model NAME`` alone exports the authors' released weights of NAME (as ``svde predict``).

``--precision int8`` (ONNX only) writes the file an edge or mobile user ships: the fp32 export
above, checked, then quantized statically with ONNX Runtime (QDQ: int8 weights per output
channel, uint8 activations; the first and last convolutions and the upsampling stay fp32), calibrated on
``--calibration-count`` photos of ``--calibration DIR`` (spread over its sorted photos, each
resized to --height x --width) or, by default, on as many synthetic rooms (svde.data.synthetic:
works offline; calibrate on photos like the ones the model will see when you can). The int8
file is then run in ONNX Runtime on 4 held-out synthetic rooms and compared with PyTorch's fp32
output: delta1 (%) and abs-rel are printed and stored in its metadata (``svde_int8_delta1``,
``svde_int8_abs_rel``). It pays on CPUs with int8 dot-product units (VNNI); a note says so when
this CPU has none (the file is for the CPU it will run on). bf16 is no file format: it is a
setting of the runtime (``svde predict --precision bf16`` runs the fp32 file in OpenVINO at bf16).

Examples:
    svde export --model mn_lrn4 --format onnx --out mn.onnx --dynamic       # released weights
    svde export --checkpoint runs/quickstart/best.pt --format onnx --out mn.onnx --dynamic
    python scripts/export.py --checkpoint runs/quickstart/best.pt --format onnx --out mn.onnx --dynamic
    svde export --official weights/b0_lrn4.pth --model b0_lrn4 --format torchscript \\
        --out b0.pt --height 384 --width 512
    svde export --checkpoint runs/quickstart/best.pt --precision int8 --calibration photos/ --out mn.int8.onnx
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

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
from svde.models.precision import CALIBRATION_COUNT, PRECISIONS, export_int8, precision_problem


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
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or int8: an ONNX file quantized statically, calibrated on images (see above); "
                        "bf16 is a runtime setting, not a file (default: %(default)s)")
    p.add_argument("--calibration", type=Path, metavar="DIR",
                   help="int8: calibrate on the photos of DIR (subfolders too; default: synthetic rooms)")
    p.add_argument("--calibration-count", type=int, default=CALIBRATION_COUNT, metavar="N",
                   help="int8: calibrate on N images (default: %(default)s)")
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
    check_positive("--calibration-count", args.calibration_count)
    if args.precision == "bf16":
        raise UserError("--precision bf16 is a setting of the runtime, not of the file: export fp32 and run it in "
                        "OpenVINO with INFERENCE_PRECISION_HINT=bf16 (svde predict --precision bf16 does)")
    if args.precision == "int8" and args.format != "onnx":
        raise UserError(f"--precision int8 writes an ONNX file (ONNX Runtime's static quantization); "
                        f"got --format {args.format}")
    if args.calibration is not None and args.precision != "int8":
        raise UserError("--calibration is for --precision int8")
    if args.calibration is not None and not args.calibration.is_dir():
        raise UserError(f"--calibration {args.calibration}: not a folder of photos")
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
    if args.precision == "int8":
        return main_int8(args, model, options)
    diff = export_model(model, args.out, args.format, **options)  # ExportError: exit 1, nothing written
    print(f"wrote {args.out} ({args.format}, {model.name}, {'dynamic' if args.dynamic else f'{args.height}x{args.width}'}); "
          f"max abs difference to PyTorch {diff:.2e} <= {args.atol:g}")
    return 0


def main_int8(args: argparse.Namespace, model: torch.nn.Module, options: dict) -> int:
    """``--precision int8``: export, quantize, check against fp32 and print the agreement."""
    result = export_int8(model, args.out, calibration=args.calibration, count=args.calibration_count, **options)
    print(f"wrote {args.out} (onnx int8, {model.name}, "
          f"{'dynamic' if args.dynamic else f'{args.height}x{args.width}'}; calibrated on {result['calibration']}); "
          f"fp32 export max abs difference to PyTorch {result['fp32_max_abs_diff']:.2e}; int8 against fp32 on "
          f"{result['images']} held-out synthetic rooms: delta1 {result['delta1']:.2f} %, "
          f"abs-rel {result['abs_rel']:.4f}")
    problem = precision_problem("int8")
    if problem:
        print(f"note: {problem} (the file is for the CPU it will run on)", file=sys.stderr)
    return 0
