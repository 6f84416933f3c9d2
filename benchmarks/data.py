"""Data-loading throughput, one process, one thread: samples/s of the synthetic set (render only,
and with the full training augmentation) and of an ``rgbd_folder`` of real-format files
(8-bit PNG RGB + 16-bit PNG depth in millimetres, 480x640 like NYU/Kinect, written to a
temporary folder), with the training augmentation of svde 0.2 (``legacy``: albumentations, one
resampling per step) and the current one (one warp, uint8 until normalisation) side by side, and
the pure decode of the folder's files (``cv2.imdecode`` of both PNGs) as the floor.

samples/s (cpu) is per core: one thread, this process's CPU time. The rows are measured in
interleaved rounds (every row once per round) and the median round is reported, so that old and
new see the same machine load; the load average is printed with them.

Usage:
    python benchmarks/data.py [--samples 60] [--rounds 5] [--height 384] [--width 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from svde.atomic import write_bytes  # noqa: E402
from svde.data import RGBDFolderDataset, SyntheticDataset, build_train_transform  # noqa: E402


def throughput(item: Callable[[int], object], count: int, samples: int) -> tuple[float, float]:
    """(samples/s wall clock, samples/s of this process's CPU time) of ``item(i)`` over ``samples`` items."""
    item(0)  # warm-up: imports, first allocations
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(samples):
        item((i + 1) % count)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return samples / wall, samples / max(cpu, 1e-9)


def dataset_item(dataset) -> Callable[[int], object]:
    def item(i: int) -> object:
        sample = dataset[i]
        assert torch.isfinite(sample["target"]).all()
        return sample
    return item


def decode_item(root: Path) -> tuple[Callable[[int], object], int]:
    """The pure decode of a folder's files: ``cv2.imdecode`` of the RGB and depth PNGs of a sample."""
    pairs = [(rgb, root / "depth" / rgb.name) for rgb in sorted((root / "rgb").glob("*.png"))]

    def item(i: int) -> object:
        rgb, depth = pairs[i]
        return (cv2.imdecode(np.fromfile(rgb, np.uint8), cv2.IMREAD_UNCHANGED),
                cv2.imdecode(np.fromfile(depth, np.uint8), cv2.IMREAD_UNCHANGED))
    return item, len(pairs)


def write_folder(root: Path, count: int, height: int, width: int) -> None:
    """A folder in the rgbd_folder layout, with synthetic content so files compress realistically."""
    source = SyntheticDataset(split="bench", length=count, height=height, width=width)
    for i in range(count):
        raw = source.read(i)
        for sub, array in (("rgb", raw["image"][:, :, ::-1]), ("depth", np.round(raw["target"] * 1000).astype(np.uint16))):
            ok, buf = cv2.imencode(".png", array)  # cv2.imwrite's default PNG settings
            assert ok
            write_bytes(root / sub / f"{i:04d}.png", buf.tobytes())


def rows_for(tmp: Path, h: int, w: int) -> list[tuple[str, Callable[[int], object], int]]:
    """(name, item function, item count) of every measured row."""
    old, new = build_train_transform(h, w, legacy=True), build_train_transform(h, w)
    synth = {k: SyntheticDataset(length=1000, height=h, width=w, transform=t)
             for k, t in (("none", None), ("old", old), ("new", new))}
    folder_h, folder_w = 480, 640  # NYU/Kinect-like files
    write_folder(tmp, 20, folder_h, folder_w)
    rgbd = {k: RGBDFolderDataset(tmp, depth_scale=1000.0, transform=t) for k, t in (("none", None), ("old", old), ("new", new))}
    decode, count = decode_item(tmp)
    f = f"rgbd_folder PNG {folder_h}x{folder_w}"
    return [
        (f"synthetic {h}x{w}, no augmentation", dataset_item(synth["none"]), 1000),
        (f"synthetic {h}x{w}, full augmentation, old", dataset_item(synth["old"]), 1000),
        (f"synthetic {h}x{w}, full augmentation, new", dataset_item(synth["new"]), 1000),
        (f"{f}, decode only (cv2.imdecode x2)", decode, count),
        (f"{f}, no augmentation", dataset_item(rgbd["none"]), count),
        (f"{f}, full augmentation, old", dataset_item(rgbd["old"]), count),
        (f"{f}, full augmentation, new", dataset_item(rgbd["new"]), count),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    h, w = args.height, args.width
    with tempfile.TemporaryDirectory() as tmp:
        rows = rows_for(Path(tmp), h, w)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in rows}
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for name, item, count in rows:
                results[name].append(throughput(item, count, args.samples))
            load.append(os.getloadavg()[0])
    print(f"one process, one thread; crop {h}x{w}; {args.samples} samples x {args.rounds} interleaved rounds "
          f"(median); load average (1 min) {min(load):.2f}..{max(load):.2f} on {os.cpu_count()} cores")
    print(f"{'dataset':58s} {'samples/s (wall)':>17s} {'samples/s/core':>15s} {'ms/sample (cpu)':>16s}")
    cpu = {}
    for name, values in results.items():
        wall, cpu[name] = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        print(f"{name:58s} {wall:17.1f} {cpu[name]:15.1f} {1000 / cpu[name]:16.2f}")
    for prefix in ("synthetic", "rgbd_folder"):
        old, new = (next(v for k, v in cpu.items() if k.startswith(prefix) and k.endswith(s)) for s in (", old", ", new"))
        print(f"{prefix}: full augmentation new / old = {new / old:.2f}x samples/s/core")
    decode, new = (next(v for k, v in cpu.items() if k.startswith("rgbd") and s in k) for s in ("decode only", ", new"))
    print(f"rgbd_folder: new time per sample / pure decode = {decode / new:.2f}x")


if __name__ == "__main__":
    main()
