#!/usr/bin/env python
"""``python scripts/demo.py ...``: the same program as ``svde demo ...`` (svde.cli.demo; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.demo import main

if __name__ == "__main__":
    sys.exit(run_main(main))
