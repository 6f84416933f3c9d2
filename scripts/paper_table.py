#!/usr/bin/env python
"""``python scripts/paper_table.py ...``: the same program as ``svde paper-table ...`` (svde.cli.paper_table; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.paper_table import main

if __name__ == "__main__":
    sys.exit(run_main(main))
