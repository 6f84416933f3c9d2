#!/usr/bin/env python
"""``python scripts/prepare_stereo.py ...``: the same program as ``svde prepare-stereo ...`` (svde.cli.prepare_stereo; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.prepare_stereo import main

if __name__ == "__main__":
    sys.exit(run_main(main))
