"""PNG decode time per file: ``cv2.imdecode`` (svde 0.2's decoder) against svde's
(:func:`svde.data.png.decode_png`: imagecodecs where its pixels are OpenCV's, else OpenCV), one
thread, per sub-folder of ``ROOT`` (default ``../shared/data/real``), with a check that both give
the same pixels.

Each file is read into memory once; each decoder decodes every file of a group ``--passes``
times, and the median pass is reported, in the process's CPU time.

Usage:
    python benchmarks/png.py [ROOT] [--passes 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from svde.data.png import decode_png

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def svde_decode(buf: np.ndarray) -> np.ndarray:
    """What svde's readers decode a PNG with: the fast path for its kinds, OpenCV otherwise."""
    for rgb in (True, False):
        out = decode_png(buf, rgb)
        if out is not None:
            return out
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def per_file_ms(decode: Callable[[np.ndarray], object], files: list[np.ndarray], passes: int) -> float:
    times = []
    for _ in range(passes):
        start = time.process_time()
        for buf in files:
            decode(buf)
        times.append((time.process_time() - start) / len(files))
    return 1000 * statistics.median(times)


def same_pixels(buf: np.ndarray) -> bool:
    """Whether svde's decode of ``buf`` is OpenCV's (BGR turned to RGB where it returns RGB)."""
    for rgb in (True, False):
        out = decode_png(buf, rgb)
        if out is not None:
            ref = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            return out.dtype == ref.dtype and np.array_equal(out, ref[..., ::-1] if rgb else ref)
    return True  # OpenCV decodes it on both sides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=str(DEFAULT_ROOT))
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args(argv)
    root = Path(args.root)
    paths = sorted(root.rglob("*.png"))
    if not paths:
        print(f"error: no PNG files under {root}", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    groups: dict[str, list[np.ndarray]] = {}
    for path in paths:
        parts = path.relative_to(root).parts
        groups.setdefault("/".join(parts[:2] if parts[0] == "stereo" else parts[:1]), []).append(
            np.fromfile(path, np.uint8))
    print(f"one thread, median of {args.passes} passes; load average (1 min) {os.getloadavg()[0]:.2f}")
    print(f"{'group':40s} {'files':>5s} {'cv2 ms':>8s} {'svde ms':>8s} {'less time':>9s} {'same pixels':>11s}")
    totals = [0.0, 0.0]
    for name, files in groups.items():
        a, b = per_file_ms(lambda buf: cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), files, args.passes), \
            per_file_ms(svde_decode, files, args.passes)
        totals = [totals[0] + a * len(files), totals[1] + b * len(files)]
        same = all(same_pixels(buf) for buf in files)
        print(f"{name:40s} {len(files):5d} {a:8.2f} {b:8.2f} {100 * (1 - b / a):8.0f}% {str(same):>11s}")
    n = len(paths)
    print(f"{'all':40s} {n:5d} {totals[0] / n:8.2f} {totals[1] / n:8.2f} {100 * (1 - totals[1] / totals[0]):8.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
