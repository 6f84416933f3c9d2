#!/usr/bin/env python
"""Zero-shot evaluation with the paper's protocol (Tables 2 and 3).

Prints a markdown table (the paper's headline column per dataset plus the full metric set, per
alignment mode) followed by the protocol used for each dataset, and writes ``results.json``,
``summary.csv`` and ``per_image.csv`` to ``--out``.

Dataset roots come from ``--root NAME=PATH`` or a YAML file (``--config``) such as::

    datasets:
      nyu: /data/nyu_depth_v2            # a root
      kitti: {root: /data/kitti, split: eigen_test}
      office: {type: rgbd_folder, root: /data/office, depth_cap: 10}   # any registry dataset
      synthetic: {options: {length: 50, height: 384, width: 512}}

Entry keys: ``type`` (registry name; default: the entry's name), ``root``, ``split``,
``protocol`` (default: the type's), ``depth_cap`` (overrides the protocol's) and ``options``
(passed to the dataset). ``synthetic`` needs no root and no download (default: its ``test``
split, 100 scenes at 384x512).

Examples:
    python scripts/eval.py --checkpoint runs/quickstart/best.pt --datasets synthetic --max-images 20
    python scripts/eval.py --official weights/mn_lrn4.pth --model mn_lrn4 --datasets nyu diw \\
        --root nyu=/data/nyu --root diw=/data/DIW --modes uts utss --device cuda --batch-size 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from svde.data.base import DataError
from svde.data.registry import DATASETS, build_dataset
from svde.evaluation import MODES, evaluate_model, format_table, get_protocol, write_results
from svde.inference import add_model_arguments, check_model_arguments, load_depth_model
from svde.models import CheckpointError
from svde.training.distributed import resolve_device

ENTRY_KEYS = ("type", "root", "split", "protocol", "depth_cap", "options")
DEFAULT_SPLITS = {"synthetic": "test"}
# 100 generated test scenes unless the config says otherwise (the dataset's own default is 1000)
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"synthetic": {"length": 100}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--datasets", nargs="+", required=True,
                   help=f"registry names ({', '.join(DATASETS)}) or entry names of --config")
    p.add_argument("--root", action="append", default=[], metavar="NAME=PATH", help="a dataset's root (repeatable)")
    p.add_argument("--config", type=Path, help="YAML file with a 'datasets:' mapping (see above)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["uts", "utss"],
                   help="alignment modes (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0, help="data loading processes")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images of each dataset")
    p.add_argument("--short-side", type=int, help="input shorter side (default: the protocol's 384)")
    p.add_argument("--out", type=Path, default=Path("eval_results"), help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    check_model_arguments(p, args)
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def dataset_entries(names: list[str], roots: list[str], config: Path | None) -> dict[str, dict[str, Any]]:
    """Resolve each requested dataset to ``{type, root, split, protocol, depth_cap, options}``."""
    table: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise ValueError(f"config file {config} does not exist")
        raw = yaml.safe_load(config.read_text()) or {}
        if not isinstance(raw, dict) or not isinstance(raw.get("datasets", {}), dict):
            raise ValueError(f"{config}: expected a top-level 'datasets:' mapping of name -> root or settings")
        table = dict(raw.get("datasets") or {})
    for item in roots:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--root expects NAME=PATH, got {item!r}")
        entry = table.get(name)
        table[name] = {**entry, "root": path} if isinstance(entry, dict) else path
    entries = {}
    for name in names:
        entry = table.get(name, {})
        entry = {"root": entry} if isinstance(entry, str) else dict(entry or {})
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise ValueError(f"dataset entry {name!r}: unknown keys {unknown}; valid keys: {', '.join(ENTRY_KEYS)}")
        kind = entry.get("type", name)
        if kind not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}: give a registry name ({', '.join(DATASETS)}) "
                             f"or an entry with a 'type' in --config")
        if kind != "synthetic" and not entry.get("root"):
            raise ValueError(f"dataset {name!r} needs its root folder: pass --root {name}=PATH or set "
                             f"datasets.{name}.root in --config")
        entries[name] = {"type": kind, "root": entry.get("root"), "split": entry.get("split", DEFAULT_SPLITS.get(kind)),
                         "protocol": entry.get("protocol", kind), "depth_cap": entry.get("depth_cap"),
                         "options": {**DEFAULT_OPTIONS.get(kind, {}), **(entry.get("options") or {})}}
    return entries


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the evaluation; returns the results (one dict per dataset, as evaluate_model gives)."""
    args = parse_args(argv)
    entries = dataset_entries(args.datasets, args.root, args.config)
    device = resolve_device(args.device)
    model = load_depth_model(args.checkpoint, args.official, args.model)
    source = str(args.checkpoint or args.official)
    results = []
    for name, entry in entries.items():
        protocol = get_protocol(entry["protocol"], depth_cap=entry["depth_cap"], short_side=args.short_side)
        dataset = build_dataset(entry["type"], entry["root"], entry["split"], **entry["options"])
        res = evaluate_model(model, dataset, protocol=protocol, modes=args.modes, batch_size=args.batch_size,
                             device=device, progress=not args.no_progress, max_images=args.max_images,
                             num_workers=args.num_workers)
        res["dataset"] = name
        res["source"] = {k: (str(v) if k == "root" and v is not None else v) for k, v in entry.items()}
        results.append(res)
    print(format_table(results))
    run = {"model": model.name, "weights": source, "official": args.official is not None, "device": str(device),
           "batch_size": args.batch_size, "modes": args.modes, "max_images": args.max_images}
    paths = write_results(results, args.out, run_info=run)
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return results


if __name__ == "__main__":
    try:
        main()
    except (DataError, CheckpointError, ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
