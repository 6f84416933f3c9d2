"""Zero-shot evaluation with the paper's protocol (Tables 2 and 3).

Prints a markdown table (the paper's headline column per dataset plus the full metric set, per
alignment mode, with the metrics defined below it) followed by the protocol used for each
dataset, and writes ``results.json``, ``summary.csv``, ``per_image.csv`` and the table as
``results.md`` to ``--out`` (each atomically).

Everything is checked before the first image is evaluated: the arguments, that ``--out`` is
writable, the device, every dataset entry (each dataset is built, so a wrong root or option
fails at once), the protocols and the checkpoint. Errors print one ``error:`` line (exit 2);
``--debug`` shows the traceback. An image that cannot be read (e.g. a corrupt file) is passed
over, like ``svde predict`` does: the others are evaluated and written, the unreadable ones are
named at the end with their count, and the command exits 1 (``--strict``: it stops at the first).
A model whose predictions cannot be scored (non-finite weights) is one ``error:`` line, exit 1.

Dataset roots come from ``--root NAME=PATH`` or a YAML file (``--config``) such as::

    datasets:
      nyu: /data/nyu_depth_v2            # a root
      kitti: {root: /data/kitti, split: eigen_test}
      office: {type: rgbd_folder, root: /data/office, depth_cap: 10}   # any registry dataset
      synthetic: {options: {length: 50, height: 384, width: 512}}

Each entry is a :class:`svde.evaluation.EvalEntry` (the schema of the training config's
validation set): ``name`` or ``type`` (registry name; default: the entry's name), ``root``,
``split``, ``protocol`` (default: the dataset's), ``depth_cap`` (overrides the protocol's),
``options`` (passed to the dataset) and ``subset``. ``synthetic`` needs no root and no download
(default: its ``test`` split, 100 scenes at 384x512).

``--model NAME`` alone evaluates the authors' released weights of NAME (downloaded once).

Examples:
    svde eval --model b5_lrn4 --datasets nyu --root nyu=/data/nyu          # released weights
    svde eval --checkpoint runs/quickstart/best.pt --datasets synthetic --short-side 96 --max-images 20
    python scripts/eval.py --checkpoint runs/quickstart/best.pt --datasets synthetic --short-side 96
    svde eval --official weights/mn_lrn4.pth --model mn_lrn4 --datasets nyu diw \\
        --root nyu=/data/nyu --root diw=/data/DIW --modes uts utss --device cuda --batch-size 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from svde.atomic import write_text
from svde.cli.common import (
    add_debug_argument,
    add_model_arguments,
    add_threads_argument,
    apply_threads,
    check_model_arguments,
    check_output_folder,
    check_positive,
    command_parser,
    load_network,
    parse_pairs,
    weights_source,
)
from svde.config import read_yaml
from svde.data.registry import DATASETS
from svde.device import resolve_device
from svde.errors import RunFailed, UserError
from svde.evaluation import MODES, format_table, write_results
from svde.evaluation.entry import EvalEntry, evaluate_entry, selection_warning
from svde.evaluation.metrics import METRIC_NAMES
from svde.models.checkpoint import checkpoint_selection

# What each printed column means (the table's footer); lower is better for every one.
METRIC_NOTES = {
    "delta1_err": "share of valid pixels with max(d/d*, d*/d) > 1.25 (delta2_err, delta3_err: > 1.25^2, 1.25^3)",
    "abs_rel": "mean |d - d*| / d*",
    "log10": "mean |log10 d - log10 d*|",
    "rmse": "sqrt(mean((d - d*)^2)), in the ground truth's unit",
    "geometry_err": "median relative error of 3D distances between random point pairs (where intrinsics are known)",
    "whdr": "share of ordinal point pairs ordered wrongly (DIW)",
}


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse and check the arguments (every value is checked here, before any work)."""
    p = command_parser(__doc__, prog)
    add_model_arguments(p, released=True)
    p.add_argument("--datasets", nargs="+", required=True,
                   help=f"registry names ({', '.join(DATASETS)}) or entry names of --config")
    p.add_argument("--root", action="append", default=[], metavar="NAME=PATH", help="a dataset's root (repeatable)")
    p.add_argument("--config", type=Path, help="YAML file with a 'datasets:' mapping (see above)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="alignment modes (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto, cuda if available)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0, help="data loading processes")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images of each dataset")
    p.add_argument("--short-side", type=int, help="input shorter side (default: the protocol's 384; "
                   "the quickstart model was trained and validated at 96)")
    p.add_argument("--out", type=Path, default=Path("eval_results"), help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="stop at the first image that cannot be read (default: "
                   "evaluate the others, name the unreadable ones at the end and exit 1)")
    add_threads_argument(p, workers=True)
    add_debug_argument(p)
    args = p.parse_args(argv)
    check_model_arguments(p, args, released=True)
    check_positive("--batch-size", args.batch_size)
    check_positive("--max-images", args.max_images)
    check_positive("--num-workers", args.num_workers, minimum=0)
    check_positive("--short-side", args.short_side, minimum=32)
    check_positive("--threads", args.threads)
    return args


def _read_config(config: Path) -> dict[str, Any]:
    """The ``datasets:`` mapping of ``--config``, read as every svde config file is
    (:func:`svde.config.read_yaml`: one error naming the file; ``base:`` files merge first)."""
    raw = read_yaml(config)
    if not isinstance(raw.get("datasets", {}), dict):
        raise UserError(f"{config}: expected a top-level 'datasets:' mapping of name -> root or settings")
    return dict(raw.get("datasets") or {})


def dataset_entries(names: list[str], roots: list[str], config: Path | None) -> dict[str, EvalEntry]:
    """Each requested dataset as an :class:`~svde.evaluation.EvalEntry`, keyed by the name asked for.

    An entry is a root folder or a mapping of EvalEntry keys (``type`` is read as ``name``; the
    default name is the entry's own); ``--root NAME=PATH`` sets or overrides its root. Every
    name, key and option is checked here: :class:`~svde.errors.UserError` names the entry (and
    the config file) and what was expected.
    """
    table = _read_config(config) if config is not None else {}
    where = f"{config}: " if config is not None else ""
    for name, path in parse_pairs(roots, "--root").items():
        entry = table.get(name)
        table[name] = {**entry, "root": path} if isinstance(entry, dict) else path
    entries = {}
    for name in names:
        raw = table.get(name, {})
        if raw is not None and not isinstance(raw, (str, dict)):
            raise UserError(f"{where}datasets.{name}: expected a root folder or a mapping of settings, got {raw!r}")
        raw = {"root": raw} if isinstance(raw, str) else dict(raw or {})
        if "type" not in raw:
            raw.setdefault("name", name)
        try:
            entries[name] = EvalEntry.from_mapping(raw, where=f"{where}datasets.{name}")
        except UserError as exc:
            hint = "" if raw.get("root") else f" (pass --root {name}=PATH or set datasets.{name}.root in --config)"
            raise UserError(f"{exc}{hint}" if "needs its root" in str(exc) else str(exc)) from None
    return entries


def prepare(entries: dict[str, EvalEntry], short_side: int | None) -> dict[str, Any]:
    """Build every dataset and protocol before any image is evaluated (a wrong root fails here)."""
    prepared = {}
    for name, entry in entries.items():
        try:
            entry.protocol_for(short_side)
        except (KeyError, ValueError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise UserError(f"dataset {name!r}: protocol {entry.protocol or entry.name!r}: {message}") from exc
        prepared[name] = entry.build()
    return prepared


def evaluate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the evaluation of parsed ``args``; returns the results (one dict per dataset) after writing them."""
    apply_threads(args.threads, workers=args.num_workers)
    device = resolve_device(args.device)
    entries = dataset_entries(args.datasets, args.root, args.config)
    datasets = prepare(entries, args.short_side)
    check_output_folder(args.out)  # after the entries: a bad config leaves no empty folder behind
    model = load_network(args)
    selected_on = checkpoint_selection(args.checkpoint) if args.checkpoint else None
    warnings = [w for w in (selection_warning(selected_on, entry, str(args.checkpoint)) for entry in entries.values()) if w]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    results = []
    for name, entry in entries.items():
        res = evaluate_entry(model, entry, dataset=datasets[name], modes=args.modes, short_side=args.short_side,
                             max_images=args.max_images, batch_size=args.batch_size, device=device,
                             progress=not args.no_progress, num_workers=args.num_workers, strict=args.strict)
        res["dataset"] = name
        results.append(res)
    table = format_table(results) + "\n\n" + metric_notes(results, {k: len(v) for k, v in datasets.items()})
    print(table)
    run = {"model": model.name, "weights": weights_source(args), "official": args.official is not None,
           "device": str(device), "batch_size": args.batch_size, "modes": args.modes, "max_images": args.max_images,
           "short_side": args.short_side, "selected_on": selected_on, "warnings": warnings}
    paths = write_results(results, args.out, run_info=run)
    paths["table"] = write_text(args.out / "results.md", table + "\n")
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    unreadable = [(res["dataset"], error) for res in results for error in res.get("unreadable", [])]
    if unreadable:
        run_count = sum(res["n_images"] + res["n_skipped"] + res.get("n_unreadable", 0) for res in results)
        raise RunFailed(f"{len(unreadable)} of {run_count} images could not be read (the results of the others are "
                        f"in {args.out}): " + "; ".join(f"{name}: {error}" for name, error in unreadable))
    return results


def metric_notes(results: list[dict[str, Any]], sizes: dict[str, int]) -> str:
    """The table's footer: what each metric means, the units of the table and of the CSV files,
    and how many images of each dataset (of ``sizes[name]``) were evaluated."""
    lines = ["Metrics (lower is better; d: the aligned prediction, d*: the ground truth):"]
    lines += [f"- {m}: {METRIC_NOTES[m]}" for m in (*METRIC_NAMES, "geometry_err", "whdr") if m in METRIC_NOTES]
    lines.append("- units: columns marked (%) are in %, the others as they are, in the table and in summary.csv "
                 "and per_image.csv alike (results.json keeps fractions)")
    for res in results:
        unreadable = res.get("n_unreadable", 0)
        run, size = res["n_images"] + res["n_skipped"] + unreadable, sizes[res["dataset"]]
        part = f"all {size}" if run == size else f"the first {run} of {size} (--max-images; not the full set)"
        lines.append(f"- {res['dataset']}: ran {part} images: {res['n_images']} evaluated, {res['n_skipped']} skipped"
                     + (f", {unreadable} unreadable (named at the end)" if unreadable else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line: evaluate, print the table, write the results; returns 0."""
    evaluate(parse_args(argv, prog))
    return 0
