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
"""

from __future__ import annotations

import argparse
import os
import sys

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
from svde.models.profile import AMP_DTYPES, benchmark_model, markdown_table


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
    args.device = str(resolve_device(args.device))
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Benchmark each model and print the table."""
    args = parse_args(argv, prog)
    apply_threads(args.threads)
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
