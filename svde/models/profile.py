"""Speed and size of a network: parameters, multiply-adds, latency and a benchmark row.

Latencies are wall-clock and depend on the machine and its load: on a shared CPU use one
thread (``torch.set_num_threads(1)``); results belong in ``docs/benchmarks.md``, never in tests.

Example:
    >>> from svde.models import build_model
    >>> count_parameters(build_model("mn_lrn4"))
    2419081
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from svde.device import AMP_DTYPES, resolve_device  # AMP_DTYPES: re-exported (svde benchmark --amp)
from svde.errors import UserError, unknown_name
from svde.models.export import example_input, export_onnx
from svde.models.fast import for_inference, optimize_for_inference
from svde.models import precision as reduced
from svde.models.registry import build_model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (BatchNorm statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, height: int = 384, width: int = 384) -> int:
    """Multiply-adds of one (1, 3, H, W) forward pass: FLOPs from ``FlopCounterMode`` / 2.

    Only the operators PyTorch's counter knows (convolutions and matrix products) are counted;
    pooling, normalisation, activations and interpolation are not.

    Example:
        >>> count_macs(build_model("mn_lrn4").eval(), 64, 64) > 0
        True
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width, device=device))
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_latency(model: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10,
                    amp_dtype: torch.dtype | None = None) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` forward passes after ``warmup`` untimed ones.

    Each pass is timed on its own, with CUDA synchronised before and after, so the median is
    robust to the odd slow run (other processes, clock changes).
    """
    if repeats < 1 or warmup < 0:
        raise UserError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    device = x.device
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    times = []
    with autocast:
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return times


def benchmark_model(name: str, device: str = "cpu", height: int = 384, width: int = 384, batch: int = 1,
                    amp: str | None = None, channels_last: bool = True, compile: bool = False,
                    warmup: int = 3, repeats: int = 10, model: nn.Module | None = None) -> dict[str, Any]:
    """Params, MAdds (per image) and median latency / FPS of one model; a row for :func:`markdown_table`.

    Args:
        name: a model name (random weights are built unless ``model`` is given: speed does not
            depend on the weights).
        amp: ``None``, ``"fp16"`` or ``"bf16"`` (autocast).
        channels_last: ``True`` (default) measures what users get, :func:`svde.models.fast.for_inference`'s
            BatchNorm-folded channels-last snapshot; ``False`` the plain module in NCHW.
        compile: run :func:`svde.models.optimize_for_inference` with ``compile=True``
            (BatchNorm folded, channels-last, ``torch.compile``; warm-up includes compiling).

    Example:
        >>> row = benchmark_model("mn_lrn4", height=64, width=64, warmup=0, repeats=1)
        >>> sorted(row)[:3]
        ['amp', 'batch', 'channels_last']
    """
    if amp is not None and amp not in AMP_DTYPES:
        raise unknown_name("AMP dtype", amp, AMP_DTYPES)
    dev = resolve_device(device)
    net = (model if model is not None else build_model(name)).to(dev).eval()
    params = count_parameters(net)
    macs = count_macs(net, height, width)
    # DepthModel is channels-last by default; the option makes the layout explicit either way.
    layout = torch.channels_last if channels_last or compile else torch.contiguous_format
    net = net.to(memory_format=layout)
    x = example_input(batch, height, width).to(dev).contiguous(memory_format=layout)
    if compile:
        # The opt-in path: BatchNorm folded, channels-last, torch.compile'd.
        net = optimize_for_inference(net, compile=True)
    elif channels_last:
        # What the API, the evaluator and the scripts run: the folded snapshot (for_inference).
        net = for_inference(net)
    # else: the plain module in NCHW, the straightforward form
    times = measure_latency(net, x, warmup=warmup, repeats=repeats, amp_dtype=AMP_DTYPES.get(amp) if amp else None)
    median = statistics.median(times)
    return {"model": name, "device": str(dev), "input": f"{height}x{width}", "batch": batch,
            "amp": amp or "fp32", "channels_last": layout == torch.channels_last, "compile": compile,
            "params_m": params / 1e6, "gmacs": macs / 1e9, "latency_ms": median,
            "latency_min_ms": min(times), "fps": batch * 1000.0 / median, "repeats": repeats}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Benchmark rows as a markdown table (Params in millions, MAdds in G per image)."""
    head = "| model | device | input | batch | precision | channels-last | compile | Params (M) | MAdds (G) | latency median (ms) | latency min (ms) | FPS |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['input']} | {r['batch']} | {r['amp']} | "
                     f"{'yes' if r['channels_last'] else 'no'} | {'yes' if r['compile'] else 'no'} | "
                     f"{r['params_m']:.2f} | {r['gmacs']:.2f} | {r['latency_ms']:.1f} | {r['latency_min_ms']:.1f} | "
                     f"{r['fps']:.1f} |")
    return "\n".join(lines)


# ---- reduced precision (svde benchmark --precision) --------------------------------------------
def time_round_robin(calls: dict[str, Callable[[], Any]], warmup: int = 3, repeats: int = 10) -> dict[str, list[float]]:
    """Milliseconds of each call, timed in turn (one call of each per round), so that load from
    other processes hits all of them alike; ``warmup`` untimed rounds first.

    Example:
        >>> sorted(time_round_robin({"a": lambda: None, "b": lambda: None}, 0, 2))
        ['a', 'b']
    """
    if repeats < 1 or warmup < 0:
        raise UserError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def precision_variants(net: nn.Module, precisions: Sequence[str], folder: str | os.PathLike, height: int, width: int,
                       batch: int = 1, calibration: str | os.PathLike | None = None,
                       count: int = reduced.CALIBRATION_COUNT) -> dict[tuple[str, str], Callable[[np.ndarray], Any]]:
    """The runners timed for ``precisions``, keyed ``(precision, runtime)``; files are written to ``folder``.

    Always ``("fp32", "pytorch")`` (svde's default path, the reference); with int8 also ONNX
    Runtime's fp32 (the int8 runtime's own baseline) and, when OpenVINO is installed, its int8;
    with bf16 also OpenVINO's fp32. bf16 without OpenVINO is a :class:`~svde.models.runtimes.MissingRuntime`.
    """
    for p in precisions:
        reduced.check_precision_name(p)
    if "bf16" in precisions:
        reduced.require_openvino()
    openvino = reduced.openvino_installed()
    folded = for_inference(net)
    variants: dict[tuple[str, str], Callable[[np.ndarray], Any]] = {
        ("fp32", "pytorch"): lambda x: folded(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))}
    fp32 = Path(folder) / "fp32.onnx"
    export_onnx(net, fp32, height=height, width=width, batch=batch)
    if "int8" in precisions or "fp32" in precisions:
        variants[("fp32", "onnxruntime")] = reduced.onnx_runner(fp32, "onnxruntime")
    if openvino and ("bf16" in precisions or "fp32" in precisions):
        variants[("fp32", "openvino")] = reduced.onnx_runner(fp32, "openvino", "fp32")
    if "bf16" in precisions:
        variants[("bf16", "openvino")] = reduced.onnx_runner(fp32, "openvino", "bf16")
    if "int8" in precisions:
        int8 = Path(folder) / "int8.onnx"
        inputs = reduced.calibration_inputs(calibration, count, height, width)
        reduced.quantize_int8(fp32, int8, [np.repeat(x, batch, axis=0) for x in inputs])
        variants[("int8", "onnxruntime")] = reduced.onnx_runner(int8, "onnxruntime")
        if openvino:
            variants[("int8", "openvino")] = reduced.onnx_runner(int8, "openvino", "fp32")
    return variants


@torch.no_grad()
def benchmark_precisions(name: str, precisions: Sequence[str], height: int = 384, width: int = 384, batch: int = 1,
                         warmup: int = 3, repeats: int = 10, model: nn.Module | None = None,
                         calibration: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """CPU latency of ``name`` at each precision and runtime (:func:`precision_variants`), timed
    round-robin; rows for :func:`precision_table`, each with its speed-up over PyTorch fp32 and
    over the fastest fp32 runtime, and its max abs difference to PyTorch fp32 on the timed input.

    Weights are random unless ``model`` is given (speed does not depend on them; accuracy does:
    benchmarks/precision.py measures it on real frames with trained weights).

    Example:
        >>> rows = benchmark_precisions("mn_lrn4", ["int8"], 64, 64, warmup=0, repeats=1)  # doctest: +SKIP
    """
    net = (model if model is not None else build_model(name)).cpu().float().eval()
    x = example_input(batch, height, width).numpy()
    with tempfile.TemporaryDirectory(prefix="svde-benchmark-") as folder:
        variants = precision_variants(net, precisions, folder, height, width, batch, calibration)
        reference = np.asarray(variants[("fp32", "pytorch")](x))
        diffs = {key: float(np.abs(np.asarray(run(x)) - reference).max()) for key, run in variants.items()}
        times = time_round_robin({f"{p} {r}": (lambda run=run: run(x)) for (p, r), run in variants.items()},
                                 warmup, repeats)
    medians = {key: statistics.median(times[f"{key[0]} {key[1]}"]) for key in variants}
    minima = {key: min(times[f"{key[0]} {key[1]}"]) for key in variants}
    base, base_min = medians[("fp32", "pytorch")], minima[("fp32", "pytorch")]
    best_fp32 = min(v for (p, _), v in medians.items() if p == "fp32")
    rows = []
    for (p, runtime), median in medians.items():
        rows.append({"model": name, "precision": p, "runtime": runtime, "input": f"{height}x{width}", "batch": batch,
                     "latency_ms": median, "latency_min_ms": minima[(p, runtime)], "fps": batch * 1000.0 / median,
                     "speedup": base / median, "speedup_min": base_min / minima[(p, runtime)],
                     "speedup_best_fp32": best_fp32 / median, "max_abs_diff": diffs[(p, runtime)],
                     "repeats": repeats})
    return rows


def precision_table(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`benchmark_precisions` rows as a markdown table."""
    head = ("| model | precision | runtime | input | batch | latency median (ms) | latency min (ms) | FPS | "
            "speed-up vs PyTorch fp32 (median) | (min) | speed-up vs fastest fp32 (median) | "
            "max abs diff to PyTorch fp32 (timed input) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['runtime']} | {r['input']} | {r['batch']} | "
                     f"{r['latency_ms']:.1f} | {r['latency_min_ms']:.1f} | {r['fps']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['speedup_min']:.2f}x | {r['speedup_best_fp32']:.2f}x | {r['max_abs_diff']:.2g} |")
    return "\n".join(lines)
