#!/usr/bin/env python
"""``python scripts/train.py ...``: the same program as ``svde train ...`` (svde.cli.train; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.train import main

if __name__ == "__main__":
    sys.exit(run_main(main))
