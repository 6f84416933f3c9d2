"""Reduced precision per model: CPU latency and the accuracy change against fp32 on real frames.

For each checkpoint (trained weights: speed does not depend on them, accuracy does):

* **speed**: :func:`svde.models.profile.benchmark_precisions` at ``--size`` (384x384), batch 1:
  PyTorch fp32 (svde's default path, the reference), ONNX Runtime fp32 and int8, OpenVINO fp32,
  bf16 and int8 (when installed), timed round-robin in one process;
* **accuracy change**: the frames of ``--frames`` (the real RGB(-D) frames of
  ``../shared/data/real``: KITTI, NYUv2, TUM, Middlebury, Scene Flow) predicted at the paper's
  size (shorter side 384, :func:`svde.models.predict`) in fp32 (PyTorch) and at each reduced
  precision (:func:`svde.models.precision.runtime_model`: bf16 in OpenVINO, int8 in ONNX Runtime
  and in OpenVINO, calibrated on 8 synthetic rooms, never on these frames), then compared pixel by pixel
  (:func:`svde.models.precision.agreement`: delta1 % and abs-rel of the reduced depth against
  the fp32 depth, pooled over all pixels of all frames). Where a frame has ground-truth depth
  (NYUv2, KITTI, TUM) the script also gives delta1 against it for fp32 and the reduced precision
  (each prediction median-scaled to the ground truth, as for UTS models), and their difference in
  points.

Usage:
    python benchmarks/precision.py --threads 1 --repeats 20 \\
        --checkpoints runs/mn/best.pt runs/lite0/best.pt runs/b0/best.pt runs/b5/best.pt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from svde import load
from svde.data.io import read_image, read_png16
from svde.models import predict
from svde.models.precision import (
    cpu_features,
    cpu_name,
    pooled_agreement,
    precision_problem,
    runtime_model,
)
from svde.models.profile import benchmark_precisions, precision_table

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
# (image, ground-truth depth or None, value -> metres divisor); README.md of the real frames.
FRAMES = [
    *[(f"kitti/rgb/{n}.png", f"kitti/depth/{n}.png", 256.0) for n in ("0000000005", "0000000050", "0000000100")],
    *[(f"nyuv2/rgb/rgb_{n}.jpg", f"nyuv2/depth/sync_depth_{n}.png", 1000.0) for n in ("00000", "00050", "00100")],
    ("tum/fr2/1.png", "tum/fr2/1_depth.png", 5000.0),
    ("tum/fr2/2.png", "tum/fr2/2_depth.png", 5000.0),
    ("tum/fr3_office/TUM_color.png", "tum/fr3_office/TUM_depth.png", 5000.0),
    ("middlebury2014/im0.png", None, None),
    ("stereo/sceneflow/left.png", None, None),
]


def gt_delta1(log_disp: np.ndarray, depth: np.ndarray) -> tuple[float, int]:
    """delta1 (%) of exp(-log_disp), median-scaled to ``depth`` on its valid pixels, and their count."""
    valid = depth > 0
    pred = np.exp(-log_disp.astype(np.float64))[valid]
    gt = depth[valid].astype(np.float64)
    pred *= np.median(gt / pred)
    return float(np.mean(np.maximum(pred / gt, gt / pred) < 1.25) * 100.0), int(valid.sum())


def accuracy(model: torch.nn.Module, frames: list, precisions: list[str]) -> dict[tuple[str, str], dict[str, float]]:
    """Agreement with fp32 and delta1 against ground truth, per reduced precision and runtime."""
    fp32 = [predict(model, rgb) for rgb, _ in frames]
    out = {}
    runs = [("bf16", "openvino")] * ("bf16" in precisions) + [("int8", "onnxruntime"), ("int8", "openvino")] * (
        "int8" in precisions)
    for precision, runtime in runs:
        start = time.perf_counter()
        net = runtime_model(model, precision, height=384, width=384, runtime=runtime if precision == "int8" else None)
        setup = time.perf_counter() - start
        reduced = [predict(net, rgb) for rgb, _ in frames]
        row = pooled_agreement(list(zip(fp32, reduced)))
        d_ref = d_red = n = 0.0
        for (rgb, depth), a, b in zip(frames, fp32, reduced):
            if depth is not None:
                (da, count), (db, _) = gt_delta1(a, depth), gt_delta1(b, depth)
                d_ref, d_red, n = d_ref + da * count, d_red + db * count, n + count
        row.update(gt_delta1_fp32=d_ref / n, gt_delta1_reduced=d_red / n, setup_s=setup)
        out[(precision, runtime)] = row
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", type=Path, required=True, help="trained checkpoints (svde.load)")
    parser.add_argument("--frames", type=Path, default=REAL, help="the real frames (default: %(default)s)")
    parser.add_argument("--size", type=int, default=384, help="timing input, size x size (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "int8"], choices=["bf16", "int8"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    features = cpu_features()
    for p in args.precisions:
        if precision_problem(p, features):
            print(f"warning: {p}: {precision_problem(p, features)}", file=sys.stderr)
    frames = [(read_image(args.frames / rgb), None if gt is None else read_png16(args.frames / gt) / scale)
              for rgb, gt, scale in FRAMES]
    rows, acc = [], {}
    for path in args.checkpoints:
        model = load(path).eval()
        load_before = os.getloadavg()[0]
        rows.extend(benchmark_precisions(model.name, ["fp32", *args.precisions], args.size, args.size,
                                         warmup=args.warmup, repeats=args.repeats, model=model))
        print(f"{model.name}: timed (load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})", file=sys.stderr)
        acc[model.name] = accuracy(model, frames, args.precisions)
        print(f"{model.name}: {acc[model.name]}", file=sys.stderr, flush=True)
    print(f"CPU: {cpu_name()}; units: {features.describe()}; {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(precision_table(rows))
    print(f"\nAccuracy change against fp32 (PyTorch) on {len(frames)} real frames at shorter side 384; "
          f"ground truth: the {sum(gt is not None for _, gt in frames)} RGB-D frames\n")
    print("| model | precision | runtime | delta1 vs fp32 (%) | abs-rel vs fp32 | delta1 vs GT fp32 (%) | "
          "delta1 vs GT reduced (%) | change (points) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, per in acc.items():
        for (p, runtime), r in per.items():
            change = r["gt_delta1_reduced"] - r["gt_delta1_fp32"]
            print(f"| {name} | {p} | {runtime} | {r['delta1']:.2f} | {r['abs_rel']:.4f} | "
                  f"{r['gt_delta1_fp32']:.2f} | {r['gt_delta1_reduced']:.2f} | {change:+.2f} |")


if __name__ == "__main__":
    main()
