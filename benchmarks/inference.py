"""Inference latency of one model: a straightforward implementation against the project's paths.

Rows (same weights, same input, same process):

* ``straightforward``: the network as usually written: NCHW tensors, ``F.max_pool2d(x, 5, 1, 2)``
  in the CRP blocks, BatchNorm as separate layers (the reference of issue 9; it lives here only);
* ``channels-last``: ``build_model(name).eval()`` itself: its plain ``forward`` (channels-last
  weights, the index-free separable max-pool), BatchNorm as separate layers;
* ``default``: what the API, ``svde predict``/``eval``/``benchmark`` and the evaluator run:
  :func:`svde.models.for_inference` of the model (a frozen, BatchNorm-folded snapshot);
* ``compiled``: :func:`svde.models.optimize_for_inference` with ``compile=True`` (and
  ``cuda_graphs=True`` on CUDA).

Variants are timed round-robin (one call each per round) so that load from other processes
hits all of them alike; the table gives median and minimum over the rounds and the speed-up
of the median over ``straightforward``. Every variant's output is checked against the
straightforward one first.

Usage:
    python benchmarks/inference.py --model mn_lrn4 --size 384 --threads 2 --repeats 30
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from svde.models import MODELS, DepthModel, build_model, for_inference, optimize_for_inference
from svde.models.decoder import CRPBlock


def _straightforward_crp(block: CRPBlock, x: torch.Tensor) -> torch.Tensor:
    x = block.adapt(x)
    total = top = x
    for stage in block.stages:
        top = stage(F.max_pool2d(top, kernel_size=5, stride=1, padding=2))
        total = total + top
    return total / (len(block.stages) + 1)


class Straightforward(nn.Module):
    """``model``'s network written plainly, on an NCHW copy of its weights (BatchNorm unfused)."""

    def __init__(self, model: DepthModel) -> None:
        super().__init__()
        self.net = copy.deepcopy(model).to(memory_format=torch.contiguous_format)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        net = self.net
        deep_first = list(reversed(net.encoder(image)))
        x = _straightforward_crp(net.decoder.crp[0], deep_first[0])
        for fusion, crp, skip in zip(net.decoder.fusion, net.decoder.crp[1:], deep_first[1:]):
            deep = F.interpolate(fusion.conv(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = _straightforward_crp(crp, deep + skip)
        return F.interpolate(net.head.conv(x), size=image.shape[-2:], mode="bilinear", align_corners=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_call(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mn_lrn4", choices=list(MODELS))
    parser.add_argument("--size", type=int, nargs="+", default=[384], help="H [W], multiples of 32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds after the first call")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled path")
    args = parser.parse_args(argv)
    height, width = (args.size * 2)[:2]
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model).to(device).eval()
    # Random but non-trivial BatchNorm statistics, so that folding has real work to do.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    image = torch.randn(args.batch, 3, height, width, device=device)

    straightforward = Straightforward(model).eval()
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "straightforward": straightforward,
        "channels-last": model,
        "default": lambda x: for_inference(model)(x),  # the snapshot is made on the first call, then cached
    }
    first_call: dict[str, float] = {}
    if not args.no_compile:
        variants["compiled"] = optimize_for_inference(model, compile=True, cuda_graphs=device.type == "cuda")

    with torch.no_grad():
        reference = straightforward(image)
        for name, run in variants.items():
            first_call[name] = _time_call(lambda: run(image), device)  # includes folding / compiling
            error = (run(image) - reference).abs().max().item()
            print(f"{name:>15}: max |output - straightforward| = {error:.2e}, first call {first_call[name]:.0f} ms")
            if not error <= 1e-4 * max(1.0, reference.abs().max().item()):
                raise SystemExit(f"{name} does not compute the same function (difference {error:.3g})")
        for _ in range(args.warmup):
            for run in variants.values():
                run(image)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, run in variants.items():
                times[name].append(_time_call(lambda: run(image), device))

    base, base_min = statistics.median(times["straightforward"]), min(times["straightforward"])
    print(f"\n{args.model}, batch {args.batch}, {height}x{width}, {device}, {args.threads} threads, "
          f"torch {torch.__version__}, {args.repeats} round-robin rounds")
    # On a shared machine the minimum is the better estimate of the uncontended time.
    print(f"| {'path':<15} | median ms | min ms | FPS   | speed-up (median) | speed-up (min) |")
    print(f"|{'-' * 17}|-----------|--------|-------|-------------------|----------------|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name:<15} | {median:9.1f} | {min(values):6.1f} | {args.batch * 1000 / median:5.1f} | "
              f"{base / median:16.2f}x | {base_min / min(values):13.2f}x |")


if __name__ == "__main__":
    main()
