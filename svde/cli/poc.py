"""``svde poc``: the paper's proof of concept (§4.4.1, Fig. 2), a resumable sweep of training runs.

Examples:
    svde poc --config configs/poc/synthetic.yaml --threads 1
    svde poc --config configs/poc/nyu.yaml source.root=/data/nyu_sync heldout.dataset.root=/data/nyu
    python scripts/experiments/poc.py --config configs/poc/synthetic.yaml --threads 1 "seeds=[0, 1, 2]"

See docs/poc.md for the setup, what is written and the measured results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


from svde.cli.common import (
    add_debug_argument,
    add_threads_argument,
    apply_threads,
    check_positive,
    command_parser,
    run_main,
)
from svde.experiments.poc import load_poc_config
from svde.experiments.poc_sweep import summary_table, run_sweep


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__, prog)
    parser.add_argument("--config", type=Path, required=True, help="sweep YAML (configs/poc/*.yaml)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/poc/<config name>)")
    add_threads_argument(parser)  # 1 is fastest on a busy 2-core machine
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, applied last")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_positive("--threads", args.threads)
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run (or resume) the sweep and print its table; returns 0."""
    args = parse_args(argv, prog)
    apply_threads(args.threads)
    tic = time.perf_counter()
    cfg = load_poc_config(args.config, args.overrides)
    out_dir = args.out if args.out is not None else Path("runs") / "poc" / cfg.name
    summary = run_sweep(cfg, out_dir)
    print(summary_table(summary))
    print(f"results: {out_dir / 'results.json'}\nfigure:  {out_dir / 'fig2.png'}\n"
          f"wall time: {time.perf_counter() - tic:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
