"""GPU benchmark, one command: inference FPS of the eight models next to the paper's, training
samples/s of ``mn_lrn4`` and ``b5_lrn4`` with the paper configs' settings, and whether the data
loader keeps the GPU busy with N workers.

* **Inference**: every model of :data:`svde.models.MODELS` (random weights: speed does not depend
  on them) at 384x384, batch 1 and 16, as fp32 NCHW (the plain module), fp32 channels-last (what
  svde runs: :func:`svde.models.for_inference`), bf16 and fp16 autocast (channels-last), and
  compiled (:func:`svde.models.optimize_for_inference` with ``compile=True``, fp32), next to the
  paper's FPS on an NVidia Tesla P40 (Romanov et al. 2020, Table 3, 384x384 inputs; §4.2 names
  the GPU). Compiled rows come last and only while the time budget lasts (``--budget-s``); the
  ones left are recorded as skipped.
* **Training**: :func:`svde.training.step.train_step` on svde's :class:`TrainState` built from
  ``configs/paper/<model>.yaml`` (its batch size, 384x512 crop, optimiser, precision; the encoder
  randomly initialised instead of ImageNet weights), on synthetic batches already in memory.
* **Loader**: the training loader of ``mn_lrn4``'s paper config (:func:`build_train_loader`: a
  real DataLoader with the training augmentation) over the synthetic dataset with N workers,
  with the colour jitter in the workers and on the device (``data.colour_on``), and the crop's
  resampling too (``data.warp_on``); the GPU idle
  fraction is the share of wall time the loop waits for the next batch.

Results go to ``--out`` as ``gpu_benchmark.json`` and ``gpu_benchmark.md`` (written atomically).
``--quick`` (the smoke test, e.g. ``--device cpu --quick``): tiny inputs, one or two models, one
or two iterations, no compilation.

Usage:
    python benchmarks/gpu.py                          # on a GPU machine: under 8 minutes
    python benchmarks/gpu.py --device cpu --quick     # tests/test_gpu_benchmark.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from svde.atomic import write_json, write_text  # noqa: E402
from svde.config import Config, build_config, read_yaml  # noqa: E402
from svde.data import SyntheticDataset, collate  # noqa: E402
from svde.device import resolve_device  # noqa: E402
from svde.models import MODELS, build_model  # noqa: E402
from svde.models.profile import benchmark_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Romanov et al. 2020, Table 3: frame rate for 384x384 inputs on an NVidia Tesla P40 (§4.2).
PAPER_P40_FPS = {"mn_lrn4": 135, "lite0_lrn4": 127, "b0_lrn4": 82, "b1_lrn4": 63, "b2_lrn4": 62,
                 "b3_lrn4": 57, "b4_lrn4": 47, "b5_lrn4": 40}
# name: (autocast dtype, channels-last, torch.compile)
VARIANTS = {"fp32 NCHW": (None, False, False), "fp32 channels-last": (None, True, False),
            "bf16 autocast": ("bf16", True, False), "fp16 autocast": ("fp16", True, False),
            "compiled fp32": (None, True, True)}
TRAIN_MODELS = ("mn_lrn4", "b5_lrn4")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sizes and counts of a full run, or of ``--quick``."""
    if args.quick:
        return {"models": args.models or ["mn_lrn4"], "batches": (1, 2), "size": (64, 64), "warmup": 1, "repeats": 2,
                "variants": [v for v in VARIANTS if not VARIANTS[v][2]], "train_models": ["mn_lrn4"],
                "train_crop": (64, 64), "train_batch": 2, "train_steps": 2, "workers": args.workers or [0, 1],
                "loader_steps": 2}
    cores = os.cpu_count() or 1
    workers = args.workers or sorted({0, min(4, cores), min(8, cores), max(cores - 1, 1)})
    return {"models": args.models or list(MODELS), "batches": (1, 16), "size": (384, 384), "warmup": 5,
            "repeats": 20, "variants": list(VARIANTS), "train_models": list(TRAIN_MODELS), "train_crop": None,
            "train_batch": None, "train_steps": 10, "workers": workers, "loader_steps": 12}


def paper_config(model: str, device: str, crop: tuple[int, int] | None, batch: int | None,
                 workers: int = 0, colour_on: str = "auto", warp_on: str = "auto") -> Config:
    """``configs/paper/<model>.yaml`` with random encoder weights and the synthetic set as data."""
    raw = read_yaml(ROOT / "configs" / "paper" / f"{model}.yaml")
    raw["name"] = f"gpu-benchmark-{model}"
    raw["model"]["encoder_weights"] = None
    data = raw["data"]
    if crop is not None:
        data["height"], data["width"] = crop
    if batch is not None:
        data["batch_size"] = batch
    h, w = data["height"], data["width"]
    # rendered a little larger than the crop, as configs/base/data/synthetic.yaml does
    data["train"] = [{"name": "synthetic", "split": "train",
                      "options": {"length": 100_000, "height": h * 5 // 4, "width": w * 5 // 4}}]
    data.update(num_workers=workers, epoch_length=100_000, colour_on=colour_on, warp_on=warp_on)
    raw["val"] = {"dataset": None, "holdout": 0, "every": 0}
    raw["train"]["device"] = device
    return build_config(raw)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference(opts: dict[str, Any], device: str, deadline: float) -> list[dict[str, Any]]:
    """One row per model, batch and variant; compiled variants last, while time is left."""
    h, w = opts["size"]
    models = {name: build_model(name) for name in opts["models"]}
    jobs = [(v, name, b) for v in opts["variants"] if not VARIANTS[v][2] for name in models for b in opts["batches"]]
    jobs += [(v, name, b) for v in opts["variants"] if VARIANTS[v][2] for name in models for b in opts["batches"]]
    rows = []
    for variant, name, batch in jobs:
        amp, channels_last, compile_ = VARIANTS[variant]
        row = {"model": name, "variant": variant, "batch": batch, "input": f"{h}x{w}",
               "paper_p40_fps": PAPER_P40_FPS.get(name)}
        if compile_ and time.monotonic() > deadline - 60:
            rows.append({**row, "skipped": "time budget"})
            continue
        try:
            result = benchmark_model(name, device=device, height=h, width=w, batch=batch, amp=amp,
                                     channels_last=channels_last, compile=compile_, warmup=opts["warmup"],
                                     repeats=opts["repeats"], model=models[name])
            rows.append({**row, "fps": result["fps"], "latency_ms": result["latency_ms"],
                         "params_m": result["params_m"], "gmacs": result["gmacs"]})
        except Exception as exc:  # noqa: BLE001 - e.g. fp16 on a CPU without it: recorded, the rest goes on
            rows.append({**row, "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
    return rows


def training(opts: dict[str, Any], device: str) -> list[dict[str, Any]]:
    """Samples/s of svde's own training step with each paper config's settings."""
    from svde.training.checkpoints import Checkpointer
    from svde.training.distributed import DistContext
    from svde.training.state import TrainState
    from svde.training.step import train_step

    rows = []
    for name in opts["train_models"]:
        cfg = paper_config(name, device, opts["train_crop"], opts["train_batch"])
        dev = resolve_device(device)
        state = TrainState.build(cfg, dev)
        state.raw_model.train()
        # a few distinct rendered samples, repeated to the batch size (rendering is not timed)
        ds = SyntheticDataset(length=4, height=cfg.data.height, width=cfg.data.width)
        samples = [ds[i % 4] for i in range(cfg.data.batch_size)]
        batch = collate(samples)
        ctx = DistContext(device=dev)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoints = Checkpointer(Path(tmp), cfg)
            train_step(state, batch, cfg, ctx, checkpoints)  # warm-up: allocations, cuDNN choices
            sync(dev)
            start = time.perf_counter()
            done = sum(train_step(state, batch, cfg, ctx, checkpoints) is not None for _ in range(opts["train_steps"]))
            sync(dev)
            elapsed = time.perf_counter() - start
        rows.append({"model": name, "batch": cfg.data.batch_size, "crop": f"{cfg.data.height}x{cfg.data.width}",
                     "amp": cfg.train.amp, "channels_last": cfg.train.channels_last, "optimizer": cfg.optim.name,
                     "steps": opts["train_steps"], "steps_done": done,
                     "samples_per_s": opts["train_steps"] * cfg.data.batch_size / elapsed,
                     "step_ms": 1000.0 * elapsed / opts["train_steps"]})
        del state
    return rows


def loader(opts: dict[str, Any], device: str) -> list[dict[str, Any]]:
    """GPU idle fraction of ``mn_lrn4``'s training loop fed by the real loader with N workers."""
    from svde.training.checkpoints import Checkpointer
    from svde.training.distributed import DistContext
    from svde.training.loaders import build_train_loader
    from svde.training.state import TrainState
    from svde.training.step import train_step

    rows = []
    dev = resolve_device(device)
    places = (("workers", "workers"), ("device", "workers"), ("device", "device"))  # (colour_on, warp_on)
    for workers, (colour_on, warp_on) in ((w, p) for w in opts["workers"] for p in places):
        cfg = paper_config("mn_lrn4", device, opts["train_crop"], opts["train_batch"], workers=workers,
                           colour_on=colour_on, warp_on=warp_on)
        ctx = DistContext(device=dev)
        state = TrainState.build(cfg, dev)
        state.raw_model.train()
        batches = iter(build_train_loader(cfg, ctx))
        wait = busy = 0.0
        with tempfile.TemporaryDirectory() as tmp:
            checkpoints = Checkpointer(Path(tmp), cfg)
            train_step(state, next(batches), cfg, ctx, checkpoints)  # warm-up: workers start, first batch
            for _ in range(opts["loader_steps"]):
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                train_step(state, batch, cfg, ctx, checkpoints)  # ends with a host read: the GPU is done
                sync(dev)
                wait, busy = wait + t1 - t0, busy + time.perf_counter() - t1
        total = wait + busy
        rows.append({"model": "mn_lrn4", "workers": workers, "colour_on": colour_on, "warp_on": warp_on,
                     "batch": cfg.data.batch_size,
                     "crop": f"{cfg.data.height}x{cfg.data.width}", "steps": opts["loader_steps"],
                     "samples_per_s": opts["loader_steps"] * cfg.data.batch_size / total,
                     "gpu_idle_fraction": wait / total, "wait_ms_per_step": 1000.0 * wait / opts["loader_steps"]})
        del batches, state
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(result: dict[str, Any]) -> str:
    """The three tables of a result, as Markdown."""
    env = result["environment"]
    lines = [f"GPU benchmark on {env['device_name']} (torch {env['torch']}, {env['cpu_count']} CPU cores, "
             f"load average {env['load_average']}), {result['mode']} mode, {result['seconds']:.0f} s.", ""]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in result["inference"])]
    for batch in sorted({r["batch"] for r in result["inference"]}):
        rows = [r for r in result["inference"] if r["batch"] == batch]
        size = rows[0]["input"] if rows else "?"
        lines += [f"Inference FPS, batch {batch}, {size} (paper: Table 3, Tesla P40, 384x384):", "",
                  "| model | paper P40 FPS | " + " | ".join(variants) + " |",
                  "|---|---:|" + "---:|" * len(variants)]
        for name in dict.fromkeys(r["model"] for r in rows):
            cells = []
            for v in variants:
                r = next((r for r in rows if r["model"] == name and r["variant"] == v), {})
                cells.append(_fmt(r.get("fps")) if "fps" in r else f"skipped ({r.get('skipped', '?')})")
            lines.append(f"| {name} | {_fmt(PAPER_P40_FPS.get(name))} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Training, svde's train_step with the paper config's settings (synthetic batches in memory):", "",
              "| model | batch | crop | precision | optimiser | samples/s | ms/step |", "|---|---:|---|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['crop']} | {r['amp']} | {r['optimizer']} | "
              f"{_fmt(r['samples_per_s'])} | {_fmt(r['step_ms'])} |" for r in result["training"]]
    lines += ["", "Loader: mn_lrn4's training loop fed by the training DataLoader over the synthetic set:", "",
              "| workers | colour jitter on (data.colour_on) | resampling on (data.warp_on) | batch | crop | samples/s "
              "| GPU idle fraction | wait ms/step |", "|---:|---|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r['workers']} | {r['colour_on']} | {r['warp_on']} | {r['batch']} | {r['crop']} | "
              f"{_fmt(r['samples_per_s'])} | "
              f"{_fmt(r['gpu_idle_fraction'], 2)} | {_fmt(r['wait_ms_per_step'])} |" for r in result["loader"]]
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict[str, Any]:
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    return {"device": str(dev), "device_name": name, "torch": torch.__version__, "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.monotonic()
    deadline = start + args.budget_s
    opts = settings(args)
    torch.manual_seed(0)
    result: dict[str, Any] = {"mode": "quick" if args.quick else "full", "environment": environment(args.device),
                              "paper_p40_fps_source": "Romanov et al. 2020, Table 3 (384x384, NVidia Tesla P40)"}
    # inference without compilation first, then training and loader, then compiled rows with the time left
    uncompiled = {**opts, "variants": [v for v in opts["variants"] if not VARIANTS[v][2]]}
    result["inference"] = inference(uncompiled, args.device, deadline)
    result["training"] = training(opts, args.device)
    result["loader"] = loader(opts, args.device)
    compiled = {**opts, "variants": [v for v in opts["variants"] if VARIANTS[v][2]]}
    if compiled["variants"]:
        result["inference"] += inference(compiled, args.device, deadline)
    result["seconds"] = time.monotonic() - start
    out = Path(args.out)
    write_json(out / "gpu_benchmark.json", result)
    write_text(out / "gpu_benchmark.md", markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1-2 iterations, no compilation")
    parser.add_argument("--out", default="runs/gpu_benchmark", help="folder for gpu_benchmark.json / .md")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="inference models (default: all eight)")
    parser.add_argument("--workers", nargs="+", type=int, help="loader workers to try (default: 0, 4, 8, cores - 1)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="compiled rows are skipped within 60 s of this many seconds (default 420)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    print(markdown(result), end="")
    print(f"written: {Path(args.out) / 'gpu_benchmark.json'}, {Path(args.out) / 'gpu_benchmark.md'}")
    skipped = [r for r in result["inference"] if "skipped" in r]
    if skipped:
        print(f"{len(skipped)} inference row(s) skipped: " + "; ".join(
            sorted({f"{r['variant']}: {r['skipped']}" for r in skipped})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
