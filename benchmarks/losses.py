"""Time si_loss / ssi_loss forward+backward against one torch.sort of the same values.

The issue's goal: on a (8, 1, 384, 512) batch with 90% valid pixels, each loss's
forward+backward takes at most 3x one ``torch.sort`` of the (8, 384*512) residuals.

Usage:
    python benchmarks/losses.py --device cpu --repeats 10
    python benchmarks/losses.py --device cuda --repeats 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from svde.losses import mixture_loss, si_loss, ssi_loss


def timed_rounds(fns: list[Callable[[], object]], device: torch.device, repeats: int,
                 warmup: int = 2) -> list[list[float]]:
    """ms per call of each ``fn``, run in turn within each round (so load drifts on a shared
    machine hit all rows alike); returns one list of ``repeats`` times per fn."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            sync()
            out.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (each runs every row once)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--valid", type=float, default=0.9, help="fraction of valid pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args()
    if args.repeats < 1 or not 0.0 < args.valid <= 1.0:
        parser.error("--repeats must be >= 1 and --valid in (0, 1]")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 1, args.height, args.width)
    logdisp = torch.randn(shape, generator=g).to(device)
    depth = (torch.rand(shape, generator=g) * 20 + 0.5).to(device)
    mask = (torch.rand(shape, generator=g) < args.valid).to(device)
    target_log = -depth.log()
    # The values the SI loss sorts: the residuals, masked entries pushed to the end.
    residuals = torch.where(mask, logdisp - target_log, 4.0).reshape(args.batch, -1)
    pred = logdisp.clone().requires_grad_(True)
    disp = torch.where(mask, 1 / depth, 0.0)
    types = ["uts", "utss"] * (args.batch // 2) + ["uts"] * (args.batch % 2)

    def fwd_bwd(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            pred.grad = None
            loss_fn().backward()
        return run

    rows = [
        ("torch.sort (B, H*W)", lambda: torch.sort(residuals, dim=1)),
        ("si_loss fwd+bwd", fwd_bwd(lambda: si_loss(pred, target_log, mask))),
        ("ssi_loss fwd+bwd", fwd_bwd(lambda: ssi_loss(pred.exp(), disp, mask))),
        ("mixture_loss fwd+bwd", fwd_bwd(lambda: mixture_loss(pred, depth, mask, types)["loss"])),
    ]
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    print(f"device: {name}; batch {shape}, {args.valid:.0%} valid, {args.repeats} rounds; torch {torch.__version__}")
    print(f"{'op':<24}{'median ms':>11}{'min ms':>9}{'x sort':>8}")
    times = timed_rounds([fn for _, fn in rows], device, args.repeats)
    for (label, _), t in zip(rows, times):
        # Ratio: median over rounds of (this op / the sort in the same round).
        ratio = statistics.median(a / b for a, b in zip(t, times[0]))
        print(f"{label:<24}{statistics.median(t):>11.2f}{min(t):>9.2f}{ratio:>8.2f}")
    print("(mixture_loss sorts twice: SI on the uts half, SSI on all; goal: si/ssi <= 3x sort)")


if __name__ == "__main__":
    main()
