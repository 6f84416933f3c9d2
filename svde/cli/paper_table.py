"""Paper-table mode: measured vs published results of the released models (svde.evaluation.paper).

Evaluates any set of the eight models on any set of nyu, tum, sintel, eth3d and diw in UTS and
UTSS modes, prints a Markdown table with the authors' published numbers (their README and the
paper's Table 3) and the differences, and writes ``paper_table.md`` and ``paper_table.json`` to
``--out``. Names, roots and weight files are all checked, and every dataset is built, before
any model runs.

Examples:
    svde paper-table --weights-dir weights/ --data-dir /data/eval --device cuda
    python scripts/paper_table.py --weights-dir weights/ --data-dir /data/eval --device cuda
    svde paper-table --models b5_lrn4 --weights b5_lrn4=runs/b5/best.pt \\
        --datasets nyu diw --root nyu=/data/nyu --root diw=/data/DIW
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from svde.atomic import write_text
from svde.cli.common import (
    add_debug_argument,
    add_threads_argument,
    apply_threads,
    check_output_folder,
    check_positive,
    command_parser,
    parse_pairs,
)
from svde.data.registry import build_dataset
from svde.device import resolve_device
from svde.errors import UserError
from svde.evaluation.entry import EvalEntry, selection_warning
from svde.models.checkpoint import checkpoint_selection
from svde.evaluation.paper import (
    PAPER_DATASETS,
    PAPER_MODELS,
    authors_roots,
    check_names,
    format_markdown,
    load_models,
    paper_table,
    resolve_weights,
    write_json,
)


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse the arguments (checked in :func:`resolve`, before any work)."""
    p = command_parser(__doc__, prog)
    p.add_argument("--models", nargs="+", default=list(PAPER_MODELS), metavar="NAME",
                   help=f"models (default: all eight: {', '.join(PAPER_MODELS)})")
    p.add_argument("--datasets", nargs="+", default=list(PAPER_DATASETS), metavar="NAME",
                   help=f"datasets (default: all five: {', '.join(PAPER_DATASETS)})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights-dir", type=Path, help="folder with the released <model>.pth files")
    src.add_argument("--random-weights", action="store_true", help="random weights (smoke test only)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="one model's weights: a released .pth or an svde checkpoint (repeatable)")
    p.add_argument("--data-dir", type=Path, help="the authors' data folder (nyu_depth_v2_labeled.mat + splits.mat, "
                                                 "TUM/, sintel/, DIW/, ETH3D/)")
    p.add_argument("--root", action="append", default=[], metavar="NAME=PATH", help="one dataset's root (repeatable)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto, cuda if available)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--max-images", type=int, help="only the first N images of each dataset (not the paper's protocol)")
    p.add_argument("--out", type=Path, default=Path("paper_table"), help="folder for paper_table.md/.json")
    p.add_argument("--no-progress", action="store_true")
    add_threads_argument(p, workers=True)
    add_debug_argument(p)
    return p.parse_args(argv)


def resolve(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, Path], dict[str, Path] | None]:
    """Models, datasets, each dataset's root and each model's weight file (``None``: random weights).

    A wrong name, a missing root or weight file is one :class:`~svde.errors.UserError`.
    """
    check_positive("--batch-size", args.batch_size)
    check_positive("--num-workers", args.num_workers, minimum=0)
    check_positive("--max-images", args.max_images)
    check_positive("--threads", args.threads)
    try:
        models, datasets = check_names(args.models, args.datasets)
        roots = authors_roots(args.data_dir, datasets) if args.data_dir is not None else {}
        given = parse_pairs(args.root, "--root")
        check_names(models, list(given) or datasets)
        roots.update({k: Path(v) for k, v in given.items()})
        missing = [d for d in datasets if d not in roots]
        if missing:
            raise UserError(f"no root for {', '.join(missing)}: pass --data-dir DIR or --root NAME=PATH")
        if args.random_weights and args.weights:
            raise UserError("--random-weights and --weights exclude each other")
        files = None if args.random_weights else resolve_weights(models, parse_pairs(args.weights, "--weights"),
                                                                 args.weights_dir)
    except UserError:
        raise
    except (KeyError, ValueError, FileNotFoundError) as exc:  # paper.py's checks name the value and the choices
        raise UserError(exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) from None
    return models, datasets, roots, files


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Evaluate and write ``paper_table.json`` and ``paper_table.md``; returns the table and its Markdown."""
    models, datasets, roots, files = resolve(args)
    apply_threads(args.threads, workers=args.num_workers)
    device = resolve_device(args.device)
    check_output_folder(args.out)
    data = {d: build_dataset(d, roots[d]) for d in datasets}  # fails on a bad layout before any model runs
    nets = load_models(models, files)
    warnings = data_warnings(data, files)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    table = paper_table(nets, data, device=device, batch_size=args.batch_size, num_workers=args.num_workers,
                        max_images=args.max_images, progress=not args.no_progress)
    run_info = {"models": list(models), "datasets": list(datasets), "device": str(device),
                "weights": {k: str(v) for k, v in (files or {}).items()} or "random",
                "roots": {k: str(v) for k, v in roots.items() if k in datasets}, "max_images": args.max_images,
                "warnings": warnings}
    markdown = format_markdown(table)
    if args.max_images is not None:
        markdown += f"\n- measured on at most the first {args.max_images} images of each dataset, not the full sets"
    write_json(table, args.out / "paper_table.json", run_info=run_info)
    write_text(args.out / "paper_table.md", markdown + "\n")
    return table, markdown


def data_warnings(data: dict[str, Any], files: dict[str, Path] | None) -> list[str]:
    """What makes a measured number not comparable with the published one: an svde checkpoint
    selected on a dataset of the table (``best.pt``'s ``selected_on``), ETH3D in the official
    release's layout instead of the authors' rendering."""
    warnings = []
    for model, path in (files or {}).items():
        selected_on = checkpoint_selection(path)
        for name in data:
            warning = selection_warning(selected_on, EvalEntry(name=name), f"{model} ({path})")
            if warning:
                warnings.append(warning)
    eth3d = data.get("eth3d")
    release = eth3d.release_frames() if hasattr(eth3d, "release_frames") else 0
    if release:
        warnings.append(f"eth3d: {release} of {len(eth3d)} frames are in the official release's layout; the published "
                        "ETH3D numbers come from the authors' own rendering (SamsungLabs/geometry-preserving-de, "
                        "datasets/validation_datasets.py), so the eth3d column is not comparable with them")
    return warnings


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line: print the table (also written to ``--out``); returns 0."""
    _, markdown = run(parse_args(argv, prog))
    print(markdown)
    return 0
