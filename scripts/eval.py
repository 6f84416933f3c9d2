#!/usr/bin/env python
"""``python scripts/eval.py ...``: the same program as ``svde eval ...`` (svde.cli.eval; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.eval import main

if __name__ == "__main__":
    sys.exit(run_main(main))
