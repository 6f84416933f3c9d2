#!/usr/bin/env python
"""The paper's proof of concept (§4.4.1, Fig. 2): ``svde poc`` (see svde/cli/poc.py, docs/poc.md)."""

import sys

from svde.cli.common import run_main
from svde.cli.poc import main

if __name__ == "__main__":
    sys.exit(run_main(main))
