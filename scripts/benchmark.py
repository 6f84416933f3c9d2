#!/usr/bin/env python
"""``python scripts/benchmark.py ...``: the same program as ``svde benchmark ...`` (svde.cli.benchmark; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(run_main(main))
