"""Parameters, multiply-adds, latency and FPS of the depth networks; prints a markdown table.

Weights are random (speed does not depend on them). MAdds are per image, counted by PyTorch's
``FlopCounterMode`` (FLOPs / 2; convolutions and matrix products only). Latency is the median
of ``--repeats`` timed forward passes after ``--warmup`` untimed ones (CUDA synchronised);
FPS = batch / latency.

CPU timings depend on the threads: on a machine other processes share, use ``--threads 1``
(more busy threads than free cores make PyTorch's threads wait for each other, and timings
become several times slower and noisy); on an idle machine, the number of physical cores.
The printed header gives the thread count and the load average.

Examples:
    svde benchmark --threads 1                                   # all eight models, CPU, 384x384
    python scripts/benchmark.py --threads 1 --models mn_lrn4     # the same program
    svde benchmark --device cuda --batch 32 --amp fp16 --models mn_lrn4 b5_lrn4
    svde benchmark --threads 1 --precision fp32 bf16 int8 --models mn_lrn4   # CPU runtimes, round-robin

``--precision`` (CPU only) times the model in the runtimes that make reduced precision pay, in
turn (round-robin, so other processes' load hits each alike): PyTorch fp32 (svde's default path,
the reference of the speed-up), ONNX Runtime fp32 and int8 (static QDQ, calibrated on
``--calibration`` photos or synthetic rooms), OpenVINO fp32 and bf16 (``pip install
'svde[openvino]'``; OpenVINO also runs the int8 file). The header names the CPU and its bf16 and
int8 units; a precision this CPU has no units for is measured with a ``warning:`` line.
Accuracy is not measured here (random weights): benchmarks/precision.py measures it on real
frames with trained weights (docs/benchmarks.md, "Reduced precision").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from svde.cli.common import (
    add_debug_argument,
    add_threads_argument,
    apply_threads,
    check_network_size,
    check_positive,
    command_parser,
)
from svde.device import resolve_device
from svde.models import MODELS
from svde.errors import UserError
from svde.models.precision import PRECISIONS, cpu_features, cpu_name, precision_problem, require_openvino
from svde.models.profile import AMP_DTYPES, benchmark_model, benchmark_precisions, markdown_table, precision_table


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse and check the arguments (every value is checked here, before any work)."""
    p = command_parser(__doc__, prog)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="default: all eight")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto, cuda if available)")
    p.add_argument("--height", type=int, default=384, help="a multiple of 32 (default: %(default)s)")
    p.add_argument("--width", type=int, default=384, help="a multiple of 32 (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="default: %(default)s")
    p.add_argument("--amp", choices=list(AMP_DTYPES), help="autocast to this dtype (default: fp32)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC weights and input, the models' default (--no-channels-last: NCHW)")
    p.add_argument("--compile", action="store_true",
                   help="svde.models.optimize_for_inference(compile=True): BatchNorm folded, channels-last, "
                        "torch.compile (compilation happens in the warm-up)")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, metavar="P",
                   help=f"time these precisions ({', '.join(PRECISIONS)}) in ONNX Runtime / OpenVINO against "
                        f"PyTorch fp32, on the CPU (see above)")
    p.add_argument("--calibration", type=Path, metavar="DIR",
                   help="int8: calibrate on the photos of DIR (default: synthetic rooms)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes first (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=10, help="timed passes; the median is reported (default: %(default)s)")
    add_threads_argument(p)
    add_debug_argument(p)
    args = p.parse_args(argv)
    check_network_size(args.height, args.width)
    check_positive("--batch", args.batch)
    check_positive("--repeats", args.repeats)
    check_positive("--warmup", args.warmup, minimum=0)
    check_positive("--threads", args.threads)
    if args.precision:
        if args.device not in ("auto", "cpu"):
            raise UserError(f"--precision runs on the CPU (ONNX Runtime, OpenVINO); got --device {args.device}")
        args.device = "cpu"
        if args.amp or args.compile or not args.channels_last:
            raise UserError("--precision times the runtimes' own precisions: leave out --amp, --compile and "
                            "--no-channels-last")
        if "bf16" in args.precision:
            require_openvino()
    args.device = str(resolve_device(args.device))
    if args.calibration is not None and not args.calibration.is_dir():
        raise UserError(f"--calibration {args.calibration}: not a folder of photos")
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Benchmark each model and print the table."""
    args = parse_args(argv, prog)
    apply_threads(args.threads)
    if args.precision:
        return main_precision(args)
    rows = []
    for name in args.models:
        rows.append(benchmark_model(name, device=args.device, height=args.height, width=args.width, batch=args.batch,
                                    amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                                    warmup=args.warmup, repeats=args.repeats))
        print(f"{name}: {rows[-1]['latency_ms']:.1f} ms", file=sys.stderr, flush=True)
    # Other processes skew CPU timings: the 1-minute load average tells how busy the machine was.
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads{load}, warm-up {args.warmup}, "
          f"median of {args.repeats} repeats\n")
    print(markdown_table(rows))
    return 0


def main_precision(args: argparse.Namespace) -> int:
    """``--precision``: each model at each precision and runtime, timed round-robin."""
    features = cpu_features()
    for precision in args.precision:
        problem = precision_problem(precision, features)
        if problem:
            print(f"warning: {precision}: {problem}; measuring anyway", file=sys.stderr)
    rows = []
    for name in args.models:
        rows.extend(benchmark_precisions(name, args.precision, height=args.height, width=args.width,
                                         batch=args.batch, warmup=args.warmup, repeats=args.repeats,
                                         calibration=args.calibration))
        print(f"{name}: " + ", ".join(f"{r['precision']} {r['runtime']} {r['latency_ms']:.1f} ms" for r in rows
                                      if r["model"] == name), file=sys.stderr, flush=True)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"CPU: {cpu_name()}; units: {features.describe()}")
    print(f"{runtime_versions()}, {torch.get_num_threads()} CPU threads{load}, warm-up {args.warmup}, "
          f"median of {args.repeats} round-robin rounds\n")
    print(precision_table(rows))
    return 0


def runtime_versions() -> str:
    """``torch X, onnxruntime Y, openvino Z`` (what is installed)."""
    import onnxruntime

    versions = [f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}"]
    try:
        import openvino

        versions.append(f"openvino {openvino.__version__}")
    except ImportError:
        versions.append("openvino not installed")
    return ", ".join(versions)
