"""Data-loading throughput, one process, one thread: samples/s of the synthetic set (render only,
and with the full training augmentation) and of an ``rgbd_folder`` of real-format files
(8-bit PNG RGB + 16-bit PNG depth in millimetres, written to a temporary folder).

Usage:
    python benchmarks/data.py [--samples 60] [--height 384] [--width 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from svde.data import RGBDFolderDataset, SyntheticDataset, build_train_transform  # noqa: E402


def throughput(dataset, samples: int) -> tuple[float, float]:
    """(samples/s wall clock, samples/s of this process's CPU time) over ``samples`` items."""
    dataset[0]  # warm-up: imports, first allocations
    n = len(dataset)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(samples):
        sample = dataset[(i + 1) % n]
        assert torch.isfinite(sample["target"]).all()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return samples / wall, samples / cpu


def write_folder(root: Path, count: int, height: int, width: int) -> None:
    """A folder in the rgbd_folder layout, with synthetic content so files compress realistically."""
    source = SyntheticDataset(split="bench", length=count, height=height, width=width)
    (root / "rgb").mkdir()
    (root / "depth").mkdir()
    for i in range(count):
        raw = source.read(i)
        cv2.imwrite(str(root / "rgb" / f"{i:04d}.png"), raw["image"][:, :, ::-1])
        cv2.imwrite(str(root / "depth" / f"{i:04d}.png"), np.round(raw["target"] * 1000).astype(np.uint16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    h, w = args.height, args.width
    transform = build_train_transform(h, w)
    print(f"one process, one thread; crop {h}x{w}; {args.samples} samples each")
    print(f"{'dataset':48s} {'samples/s (wall)':>17s} {'samples/s (cpu)':>16s}")
    rows = [
        (f"synthetic {h}x{w}, no augmentation", SyntheticDataset(length=1000, height=h, width=w)),
        (f"synthetic {h}x{w}, full augmentation", SyntheticDataset(length=1000, height=h, width=w, transform=transform)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder_h, folder_w = 480, 640  # NYU/Kinect-like files
        write_folder(Path(tmp), 20, folder_h, folder_w)
        rows += [
            (f"rgbd_folder PNG {folder_h}x{folder_w}, no augmentation", RGBDFolderDataset(tmp, depth_scale=1000.0)),
            (f"rgbd_folder PNG {folder_h}x{folder_w}, full augmentation",
             RGBDFolderDataset(tmp, depth_scale=1000.0, transform=transform)),
        ]
        for name, ds in rows:
            wall, cpu = throughput(ds, args.samples)
            print(f"{name:48s} {wall:17.1f} {cpu:16.1f}")


if __name__ == "__main__":
    main()
