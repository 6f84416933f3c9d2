#!/usr/bin/env python
"""Paper-table mode: measured vs published results of the released models (svde.evaluation.paper).

Evaluates any set of the eight models on any set of nyu, tum, sintel, eth3d and diw in UTS and
UTSS modes, prints a Markdown table with the authors' published numbers (their README and the
paper's Table 3) and the differences, and writes ``paper_table.md`` and ``paper_table.json``.

Examples:
    python scripts/paper_table.py --weights-dir weights/ --data-dir /data/eval --device cuda
    python scripts/paper_table.py --models b5_lrn4 --weights b5_lrn4=runs/b5/best.pt \\
        --datasets nyu diw --root nyu=/data/nyu --root diw=/data/DIW
"""

from __future__ import annotations

import logging
import sys

from svde.data.base import DataError
from svde.evaluation.paper import main
from svde.models import CheckpointError

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        _, markdown = main()
    except (DataError, CheckpointError, ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        sys.exit(2)
    print(markdown)
