#!/usr/bin/env python
"""Zero-shot evaluation with the paper's protocol (Tables 2 and 3).

Prints a markdown table (the paper's headline column per dataset plus the full metric set, per
alignment mode) followed by the protocol used for each dataset, and writes ``results.json``,
``summary.csv``, ``per_image.csv`` and the table as ``results.md`` to ``--out`` (each atomically).

Everything is checked before the first image is evaluated: the arguments, that ``--out`` is
writable, the device, every dataset entry (each dataset is built, so a wrong root or option
fails at once), the protocols and the checkpoint. Errors print one ``error:`` line (exit 2);
``--debug`` shows the traceback.

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
import difflib
import inspect
import sys
from pathlib import Path
from typing import Any

import yaml

from svde.atomic import write_text
from svde.cli.common import run_main
from svde.data.registry import DATASETS, build_dataset, dataset_class
from svde.errors import SvdeError, UserError
from svde.evaluation import MODES, evaluate_model, format_table, get_protocol, write_results
from svde.inference import (
    add_debug_argument,
    add_model_arguments,
    check_device,
    check_model_arguments,
    check_output_folder,
    check_positive,
    load_depth_model,
)

ENTRY_KEYS = ("type", "root", "split", "protocol", "depth_cap", "options")
DEFAULT_SPLITS = {"synthetic": "test"}
# 100 generated test scenes unless the config says otherwise (the dataset's own default is 1000)
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"synthetic": {"length": 100}}
# constructor arguments that are not dataset options (set from the entry, or not settable here)
NOT_OPTIONS = ("self", "root", "split", "transform")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (every value is checked here, before any work)."""
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
    add_debug_argument(p)
    args = p.parse_args(argv)
    check_model_arguments(p, args)
    check_positive("--batch-size", args.batch_size)
    check_positive("--max-images", args.max_images)
    check_positive("--num-workers", args.num_workers, minimum=0)
    check_positive("--short-side", args.short_side, minimum=32)
    return args


def _read_config(config: Path) -> dict[str, Any]:
    if not config.is_file():
        raise UserError(f"--config {config}: the file does not exist")
    try:
        raw = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"--config {config}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets", {}), dict):
        raise UserError(f"{config}: expected a top-level 'datasets:' mapping of name -> root or settings")
    return dict(raw.get("datasets") or {})


def _check_options(name: str, kind: str, options: Any, where: str) -> None:
    """Each option must be an argument of the dataset's class (a misspelt one is named, with a guess)."""
    if not isinstance(options, dict):
        raise UserError(f"{where}datasets.{name}.options: expected a mapping of option -> value, got {options!r}")
    params = inspect.signature(dataset_class(kind)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in NOT_OPTIONS]
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where}datasets.{name}.options: unknown option {key!r} for a {kind} dataset{hint}; "
                            f"valid options: {', '.join(valid) or 'none'}")


def dataset_entries(names: list[str], roots: list[str], config: Path | None) -> dict[str, dict[str, Any]]:
    """Resolve each requested dataset to ``{type, root, split, protocol, depth_cap, options}``.

    Every name, key and option is checked here; :class:`~svde.errors.UserError` names the
    entry (and the config file) and what was expected.
    """
    table = _read_config(config) if config is not None else {}
    where = f"{config}: " if config is not None else ""
    for item in roots:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--root expects NAME=PATH, got {item!r}")
        entry = table.get(name)
        table[name] = {**entry, "root": path} if isinstance(entry, dict) else path
    entries = {}
    for name in names:
        entry = table.get(name, {})
        if entry is not None and not isinstance(entry, (str, dict)):
            raise UserError(f"{where}datasets.{name}: expected a root folder or a mapping of settings, got {entry!r}")
        entry = {"root": entry} if isinstance(entry, str) else dict(entry or {})
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise UserError(f"{where}dataset entry {name!r}: unknown keys {unknown}; valid keys: {', '.join(ENTRY_KEYS)}")
        kind = entry.get("type", name)
        if kind not in DATASETS:
            raise UserError(f"unknown dataset {name!r}: give a registry name ({', '.join(DATASETS)}) "
                            f"or an entry with a 'type' in --config")
        if kind != "synthetic" and not entry.get("root"):
            raise UserError(f"dataset {name!r} needs its root folder: pass --root {name}=PATH or set "
                            f"datasets.{name}.root in --config")
        options = entry.get("options") or {}
        _check_options(name, kind, options, where)
        entries[name] = {"type": kind, "root": entry.get("root"), "split": entry.get("split", DEFAULT_SPLITS.get(kind)),
                         "protocol": entry.get("protocol", kind), "depth_cap": entry.get("depth_cap"),
                         "options": {**DEFAULT_OPTIONS.get(kind, {}), **options}}
    return entries


def prepare(name: str, entry: dict[str, Any], short_side: int | None) -> tuple[Any, Any]:
    """The protocol and the dataset of one entry; a wrong value is a :class:`UserError` naming the entry."""
    try:
        protocol = get_protocol(entry["protocol"], depth_cap=entry["depth_cap"], short_side=short_side)
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UserError(f"dataset {name!r}: protocol {entry['protocol']!r}: {message}") from exc
    try:
        dataset = build_dataset(entry["type"], entry["root"], entry["split"], **entry["options"])
    except SvdeError:
        raise  # DataError and friends already name the file and what is wrong
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"dataset {name!r} ({entry['type']} at {entry['root']}): {exc}") from exc
    if len(dataset) == 0:
        raise UserError(f"dataset {name!r} ({entry['type']} at {entry['root']}, split {entry['split']}): no images")
    return protocol, dataset


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the evaluation; returns the results (one dict per dataset, as evaluate_model gives)."""
    args = parse_args(argv)
    check_output_folder(args.out)
    device = check_device(args.device)
    entries = dataset_entries(args.datasets, args.root, args.config)
    prepared = {name: prepare(name, entry, args.short_side) for name, entry in entries.items()}
    model = load_depth_model(args.checkpoint, args.official, args.model)
    source = str(args.checkpoint or args.official)
    results = []
    for name, (protocol, dataset) in prepared.items():
        res = evaluate_model(model, dataset, protocol=protocol, modes=args.modes, batch_size=args.batch_size,
                             device=device, progress=not args.no_progress, max_images=args.max_images,
                             num_workers=args.num_workers)
        res["dataset"] = name
        res["source"] = {k: (str(v) if k == "root" and v is not None else v) for k, v in entries[name].items()}
        results.append(res)
    table = format_table(results)
    print(table)
    run = {"model": model.name, "weights": source, "official": args.official is not None, "device": str(device),
           "batch_size": args.batch_size, "modes": args.modes, "max_images": args.max_images}
    paths = write_results(results, args.out, run_info=run)
    paths["table"] = write_text(args.out / "results.md", table + "\n")
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return results


def cli(argv: list[str]) -> int:
    """``main`` for the command line (the exit status instead of the results)."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(cli))
