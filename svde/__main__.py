"""``python -m svde <command> ...``: the ``svde`` command (:mod:`svde.cli.main`)."""

import sys

from svde.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
