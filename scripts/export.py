#!/usr/bin/env python
"""Export a depth network to ONNX or TorchScript, checked against PyTorch as part of the export.

The exported graph maps ``image`` (B, 3, H, W), ImageNet-normalised RGB with H and W multiples
of 32, to ``log_disparity`` (B, 1, H, W). The file is written only if its output matches
PyTorch's to ``--atol`` (onnxruntime for ONNX, a reloaded module for TorchScript); with
``--dynamic`` batch, height and width are free and parity is also checked at a second size.

Examples:
    python scripts/export.py --checkpoint runs/quickstart/best.pt --format onnx --out mn.onnx --dynamic
    python scripts/export.py --official weights/b0_lrn4.pth --model b0_lrn4 --format torchscript \\
        --out b0.pt --height 384 --width 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from svde.inference import EXPORTERS, ExportError, add_model_arguments, check_model_arguments, export_model, load_depth_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, random_weights="random weights for --model (only to try the export path)")
    p.add_argument("--format", choices=list(EXPORTERS), default="onnx", help="default: %(default)s")
    p.add_argument("--out", type=Path, required=True, help="the file to write")
    p.add_argument("--height", type=int, default=384, help="export/check height, a multiple of 32 (default: %(default)s)")
    p.add_argument("--width", type=int, default=384, help="export/check width, a multiple of 32 (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="export/check batch size (default: %(default)s)")
    p.add_argument("--dynamic", action="store_true", help="free batch, height and width")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default: %(default)s)")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed (default: %(default)s)")
    args = p.parse_args(argv)
    check_model_arguments(p, args)
    for name in ("height", "width"):
        value = getattr(args, name)
        if value <= 0 or value % 32:
            p.error(f"--{name} must be a positive multiple of 32, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_depth_model(args.checkpoint, args.official, args.model, "cpu")
    options = {"height": args.height, "width": args.width, "dynamic": args.dynamic, "batch": args.batch, "atol": args.atol}
    if args.format == "onnx":
        options["opset"] = args.opset
    try:
        diff = export_model(model, args.out, args.format, **options)
    except ExportError as exc:
        print(f"error: {exc}; nothing written", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.format}, {model.name}, {'dynamic' if args.dynamic else f'{args.height}x{args.width}'}); "
          f"max abs difference to PyTorch {diff:.2e} <= {args.atol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
