#!/usr/bin/env python
"""``python scripts/export.py ...``: the same program as ``svde export ...`` (svde.cli.export; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.export import main

if __name__ == "__main__":
    sys.exit(run_main(main))
