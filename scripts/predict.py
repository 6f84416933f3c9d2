#!/usr/bin/env python
"""``python scripts/predict.py ...``: the same program as ``svde predict ...`` (svde.cli.predict; ``--help`` for its options)."""

import sys

from svde.cli.common import run_main
from svde.cli.predict import main

if __name__ == "__main__":
    sys.exit(run_main(main))
