"""Data-loading throughput, one process, one thread: samples/s of the synthetic set (render only,
and with the full training augmentation) and of an ``rgbd_folder`` of real-format files
(8-bit PNG RGB + 16-bit PNG depth in millimetres, 480x640 like NYU/Kinect, written to a
temporary folder), side by side:

* ``svde 0.2``: the whole dataset path of svde 0.2.0 (commit ``SVDE_02``, the tree issue 25 measured),
  extracted with ``git archive`` and run in a child process on the same files (``--old-ref``);
  where the clone has no history the rows are left out and a ``note:`` says so;
* ``albumentations (legacy=True)``: svde 0.2's augmentation on today's reading and normalisation;
* ``new``: :class:`~svde.data.transforms.TrainAugment` (one warp, uint8), colour jitter and
  normalisation in the worker (``data.colour_on: workers``, the CPU default);
* ``new, colour on device: worker part``: what a DataLoader worker does with ``data.colour_on:
  device`` (the CUDA default): decode, warp, uint8 out; and the batch part it leaves
  (:func:`svde.data.colour.apply_colour`), timed here on the CPU per sample;
* ``new, colour and warp on device: worker part`` (``data.warp_on: device``, the CUDA default):
  decode, draw, send the arrays as decoded; and the batch part it leaves
  (:func:`svde.data.colour.finish_batch`: resampling, depth scaling, colour), per sample on the CPU;
* the pure decode of the folder's files: ``cv2.imdecode`` of both PNGs (svde 0.2's decoder), and
  svde's readers (:func:`svde.data.io.read_image`, :func:`~svde.data.io.read_png16`: imagecodecs'
  libpng where it gives OpenCV's pixels, :mod:`svde.data.png`): the floor.

samples/s/core is one thread's rate in the process's CPU time. The rows are measured in
interleaved rounds (every row once per round, the svde 0.2 process included) and each row's median
over the rounds is reported, so that old and new see the same machine load; the load average is
printed with them. A crop under 1/2.5 of the files' pixels sends the folder's samples down the
worker's own warp (:data:`svde.data.warp.MAX_SOURCE_RATIO`): the script says so.

Usage:
    python benchmarks/data.py [--samples 60] [--rounds 5] [--height 384] [--width 512] [--old-ref REF|none]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable
from unittest import mock

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from svde.atomic import write_bytes  # noqa: E402
from svde.data import RGBDFolderDataset, SyntheticDataset, build_train_transform  # noqa: E402
from svde.data.colour import apply_colour, finish_batch  # noqa: E402
from svde.data.io import read_image, read_png16  # noqa: E402
from svde.data import warp as warp_module  # noqa: E402
from svde.data.warp import MAX_SOURCE_RATIO  # noqa: E402
from svde.data.mixing import collate  # noqa: E402

SVDE_02 = "0b11508"  # svde 0.2.0, the tree issue 25 measured


def throughput(item: Callable[[int], object], count: int, samples: int, per_item: int = 1) -> tuple[float, float]:
    """(samples/s wall clock, samples/s of this process's CPU time) of ``item(i)``, each call
    ``per_item`` samples, over about ``samples`` samples."""
    item(0)  # warm-up: imports, first allocations
    calls = max(1, samples // per_item)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        item((i + 1) % count)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return calls * per_item / wall, calls * per_item / max(cpu, 1e-9)


def dataset_item(dataset) -> Callable[[int], object]:
    def item(i: int) -> object:
        sample = dataset[i]
        assert torch.isfinite(sample["target"]).all()
        return sample
    return item


def decode_items(root: Path) -> tuple[Callable[[int], object], Callable[[int], object], int]:
    """The pure decode of a folder's RGB and depth PNGs, per sample: with ``cv2.imdecode`` (svde
    0.2's decoder), with svde's readers (imagecodecs for these PNGs), and the sample count."""
    pairs = [(rgb, root / "depth" / rgb.name) for rgb in sorted((root / "rgb").glob("*.png"))]

    def opencv(i: int) -> object:
        return tuple(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED) for path in pairs[i])
    return opencv, lambda i: (read_image(pairs[i][0]), read_png16(pairs[i][1])), len(pairs)


def write_folder(root: Path, count: int, height: int, width: int) -> None:
    """A folder in the rgbd_folder layout, with synthetic content so files compress realistically."""
    source = SyntheticDataset(split="bench", length=count, height=height, width=width)
    for i in range(count):
        raw = source.read(i)
        for sub, array in (("rgb", raw["image"][:, :, ::-1]), ("depth", np.round(raw["target"] * 1000).astype(np.uint16))):
            ok, buf = cv2.imencode(".png", array)  # cv2.imwrite's default PNG settings
            assert ok
            write_bytes(root / sub / f"{i:04d}.png", buf.tobytes())


# The svde 0.2 side runs in its own process from `git archive` of the commit that released it,
# fed the same files, one round at a time between this process's rounds.
OLD_SERVER = r"""
import json, os, sys, time
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import cv2, torch
import svde
from svde.data import RGBDFolderDataset, SyntheticDataset, build_train_transform, collate
folder, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1); cv2.setNumThreads(1); torch.manual_seed(0)
rows = {"synthetic": SyntheticDataset(length=1000, height=h, width=w, transform=build_train_transform(h, w)),
        "rgbd_folder": RGBDFolderDataset(folder, depth_scale=1000.0, transform=build_train_transform(h, w))}
print(json.dumps({"version": svde.__version__, "file": svde.__file__}), flush=True)
def shared(value):
    if torch.is_tensor(value):
        value.share_memory_()
    for v in (value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()):
        shared(v)
for line in sys.stdin:
    samples, out = int(line), {}
    for name, ds in rows.items():
        ds[0]
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(samples):
            assert torch.isfinite(ds[(i + 1) % len(ds)]["target"]).all()
        out[name] = (samples / (time.perf_counter() - wall), samples / max(time.process_time() - cpu, 1e-9))
    ds, wall, cpu = rows["rgbd_folder"], time.perf_counter(), time.process_time()
    for i in range(max(1, samples // 8)):  # the worker's whole part: items, collate, into shared memory
        shared(collate([ds[(i * 8 + k) % len(ds)] for k in range(8)]))
    n = max(1, samples // 8) * 8
    out["rgbd_folder+handover"] = (n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9))
    print(json.dumps(out), flush=True)
"""


class OldSvde:
    """svde 0.2's dataset path (``ref``), measured in a child process on request. Where that cannot
    run (no git history, an import error, a crash or a hang) its rows are left out, with the
    reason in ``self.reason``; the rest of the benchmark goes on."""

    def __init__(self, ref: str, folder: Path, scratch: Path, h: int, w: int) -> None:
        self.ref, self.reason, self.proc = ref, "", None
        self.stderr = scratch / "old-svde.stderr"
        if ref.startswith("-"):
            self.reason = f"--old-ref {ref!r} is not a commit"
            return
        repo = Path(__file__).resolve().parents[1]
        try:
            tar = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref, "svde"],
                                 capture_output=True, check=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            self.reason = f"git archive {ref} failed: {detail.decode() if isinstance(detail, bytes) else detail}".strip()
            return
        root = scratch / "old"
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            try:
                archive.extractall(root, filter="data")
            except TypeError:  # Python releases before extraction filters: our own repository's archive
                archive.extractall(root)
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", OLD_SERVER, str(folder), str(h), str(w)], cwd=root,
                                         env={**os.environ, "PYTHONPATH": str(root)}, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        hello = self._reply(120.0)
        if hello is None:
            return
        if not str(hello.get("file", "")).startswith(str(root)):
            self._fail(f"the child process imported svde from {hello.get('file')}, not from {ref}")

    def _reply(self, timeout: float) -> dict | None:
        """The child's next JSON line, or None (and the child stopped, the reason kept)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self._fail("no answer within the time limit" if not ready else "it stopped")
            return None

    def _fail(self, why: str) -> None:
        self.close()
        last = [line for line in self.stderr.read_text(errors="replace").splitlines() if line.strip()][-1:]
        self.reason = f"svde {self.ref} in a child process: {why}" + (f" ({last[0].strip()})" if last else "")

    def round(self, samples: int) -> dict[str, tuple[float, float]]:
        """One round's (wall, cpu) samples/s per dataset; empty once the child has failed."""
        if self.proc is None:
            return {}
        try:
            self.proc.stdin.write(f"{samples}\n")
            self.proc.stdin.flush()
        except OSError:
            self._fail("it stopped")
            return {}
        return self._reply(600.0) or {}

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def device_colour_item(h: int, w: int, batch: int = 8) -> Callable[[int], object]:
    """The deferred colour jitter + normalisation of one sample, as :func:`finish_batch` runs it on
    a batch of ``batch`` (here on the CPU: on a GPU this is a few kernels per batch)."""
    ds = SyntheticDataset(length=batch, height=h, width=w, transform=build_train_transform(h, w, colour_on_device=True))
    images = torch.stack([ds[i]["image"] for i in range(batch)])
    colour = torch.stack([ds[i]["colour"] for i in range(batch)])
    return lambda i: apply_colour(images, colour)


def device_warp_item(dataset, batch: int = 8) -> Callable[[int], object]:
    """The deferred warp, depth scaling, colour jitter and normalisation of one sample, as
    :func:`finish_batch` runs it on a batch of ``batch`` (here on the CPU)."""
    samples = collate([dataset[i % len(dataset)] for i in range(batch)])
    return lambda i: finish_batch(samples, "cpu")


def with_handover_item(dataset, batch: int = 8) -> Callable[[int], object]:
    """All of a DataLoader worker's work for ``batch`` samples: the dataset items, then collate and
    the move of every tensor into shared memory for the main process (``share_memory_``: what
    torch's ForkingPickler does with a worker's tensors)."""
    def item(i: int) -> object:
        samples = [dataset[(i * batch + k) % len(dataset)] for k in range(batch)]
        with mock.patch.object(warp_module, "get_worker_info", lambda: True):  # allocate as in a worker
            out = collate(samples)
        for tensor in _tensors(out):
            tensor.share_memory_()  # no copy for what is in shared memory already
        return out
    return item


def _tensors(value: object):
    if torch.is_tensor(value):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def rows_for(tmp: Path, h: int, w: int) -> list[tuple[str, Callable[[int], object], int, int]]:
    """(name, item function, item count, samples per item) of every row measured in this process."""
    transforms = {"albumentations": build_train_transform(h, w, legacy=True), "new": build_train_transform(h, w),
                  "device": build_train_transform(h, w, colour_on_device=True),
                  "warp": build_train_transform(h, w, colour_on_device=True, warp_on_device=True)}
    synth = {k: SyntheticDataset(length=1000, height=h, width=w, transform=t)
             for k, t in (("none", None), *transforms.items())}
    rgbd = {k: RGBDFolderDataset(tmp, depth_scale=1000.0, transform=t) for k, t in (("none", None), *transforms.items())}
    decode, svde_decode, count = decode_items(tmp)
    f = FOLDER
    rows = []
    for prefix, sets, n in ((f"synthetic {h}x{w}", synth, 1000), (f, rgbd, count)):
        if prefix == f:
            rows.append((f"{f}, decode only (cv2.imdecode x2)", decode, count, 1))
            rows.append((f"{f}, decode only (svde's readers)", svde_decode, count, 1))
        rows += [(f"{prefix}, no augmentation", dataset_item(sets["none"]), n, 1),
                 (f"{prefix}, {LABELS['albumentations']}", dataset_item(sets["albumentations"]), n, 1),
                 (f"{prefix}, {LABELS['new']}", dataset_item(sets["new"]), n, 1),
                 (f"{prefix}, {LABELS['device']}", dataset_item(sets["device"]), n, 1),
                 (f"{prefix}, {LABELS['warp']}", dataset_item(sets["warp"]), n, 1)]
    rows.append((f"{h}x{w}: {LABELS['device_part']}", device_colour_item(h, w), 1, 8))
    rows.append((f"{f} -> {h}x{w}: {LABELS['warp_part']}", device_warp_item(rgbd["warp"]), 1, 8))
    rows += [(f"{f}, {LABELS[key]}{HANDOVER}", with_handover_item(rgbd[key]), count, 8) for key in ("new", "warp")]
    return rows


FOLDER_SIZE = (480, 640)  # NYU/Kinect-like files
FOLDER = f"rgbd_folder PNG {FOLDER_SIZE[0]}x{FOLDER_SIZE[1]}"  # its rows' prefix
HANDOVER = ", with the hand-over (collate of 8, shared memory)"
LABELS = {"old": "full augmentation, svde 0.2", "albumentations": "full augmentation, albumentations (legacy=True)",
          "new": "full augmentation, new", "device": "full augmentation, new, colour on device: worker part",
          "warp": "full augmentation, new, colour and warp on device: worker part",
          "device_part": "colour on device: the batch part, per sample on this CPU (batch 8)",
          "warp_part": "colour and warp on device: the batch part, per sample on this CPU (batch 8)"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--old-ref", default=SVDE_02,
                        help=f"the git commit whose dataset path is 'old' (default {SVDE_02}: svde 0.2.0); "
                             "'none': skip it")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    h, w = args.height, args.width
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        write_folder(folder, 20, *FOLDER_SIZE)
        rows = rows_for(folder, h, w)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in rows}
        load, old = [os.getloadavg()[0]], None
        try:
            old = OldSvde(args.old_ref, folder, Path(tmp), h, w) if args.old_ref != "none" else None
            for _ in range(args.rounds):
                for name, item, count, per_item in rows:
                    results[name].append(throughput(item, count, args.samples, per_item))
                if old is not None:
                    groups = {"synthetic": f"synthetic {h}x{w}", "rgbd_folder": FOLDER}  # the child's names
                    for name, value in old.round(args.samples).items():
                        group, handover = name.split("+")[0], HANDOVER if name.endswith("+handover") else ""
                        results.setdefault(f"{groups[group]}, {LABELS['old']} ({args.old_ref}, own process){handover}",
                                           []).append(value)
                load.append(os.getloadavg()[0])
        finally:
            if old is not None:
                old.close()
    report(results, args, load, old)


def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace, load: list[float],
           old: OldSvde | None) -> None:
    h, w = args.height, args.width
    print(f"one process, one thread; crop {h}x{w}; {args.samples} samples x {args.rounds} interleaved rounds "
          f"(median); load average (1 min) {min(load):.2f}..{max(load):.2f} on {os.cpu_count()} cores")
    if old is not None and old.reason:
        print(f"note: no svde 0.2 rows: {old.reason}")
    if FOLDER_SIZE[0] * FOLDER_SIZE[1] > MAX_SOURCE_RATIO * h * w:
        print(f"note: the {FOLDER_SIZE[1]}x{FOLDER_SIZE[0]} files are over {MAX_SOURCE_RATIO}x a {w}x{h} crop's pixels: "
              "the folder's 'warp on device' rows measure the worker's own warp (svde.data.warp.MAX_SOURCE_RATIO)")
    order = sorted(results, key=lambda k: (not k.startswith("synthetic"), k.startswith(f"{h}x{w}"),
                                           LABELS["old"] not in k and "no augmentation" not in k and "decode" not in k))
    print(f"{'dataset':92s} {'samples/s (wall)':>17s} {'samples/s/core':>15s} {'ms/sample (cpu)':>16s}")
    for name in order:
        values = results[name]
        wall, cpu = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        print(f"{name:92s} {wall:17.1f} {cpu:15.1f} {1000 / cpu:16.2f}")
    # Ratios per round (both rows measured seconds apart), then their median and range:
    # steadier than a ratio of medians when the machine's speed drifts.
    def find(prefix: str, key: str) -> str | None:
        suffix = f", {LABELS[key]}" + (f" ({args.old_ref}, own process)" if key == "old" else "")
        return next((k for k in results if k.startswith(prefix) and k.endswith(suffix)), None)

    def ratio(top: str, bottom: str) -> str:
        values = [a[1] / b[1] for a, b in zip(results[top], results[bottom])]
        return f"{statistics.median(values):.2f}x (rounds {min(values):.2f}-{max(values):.2f})"

    for prefix in ("synthetic", "rgbd_folder"):
        for base in ("old", "albumentations"):
            if find(prefix, base) is None:
                continue
            print(f"{prefix}: new / {LABELS[base].split(', ', 1)[1]} = {ratio(find(prefix, 'new'), find(prefix, base))} "
                  f"samples/s/core with the colour in the workers, {ratio(find(prefix, 'device'), find(prefix, base))} "
                  f"with the colour on the device, {ratio(find(prefix, 'warp'), find(prefix, base))} with colour and "
                  "warp on the device")
    with_old = find("rgbd_folder", "old")
    if with_old is not None and with_old + HANDOVER in results:
        top = find("rgbd_folder", "warp") + HANDOVER
        print(f"rgbd_folder{HANDOVER}: new / svde 0.2 = {ratio(find('rgbd_folder', 'new') + HANDOVER, with_old + HANDOVER)}"
              f" samples/s/core with the colour in the workers, {ratio(top, with_old + HANDOVER)} with colour and warp "
              "on the device")
    for decoder in ("cv2.imdecode", "svde's readers"):
        decode = next(k for k in results if k.startswith("rgbd") and f"decode only ({decoder}" in k)
        for key in ("new", "device", "warp"):
            print(f"rgbd_folder: time per sample / pure decode ({decoder}) = "
                  f"{ratio(decode, find('rgbd_folder', key))} ({LABELS[key].split(', ', 1)[1]})")

if __name__ == "__main__":
    main()
