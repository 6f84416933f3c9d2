"""What every svde command shares: the error convention (and, later, common arguments).

:func:`run_main` wraps a command's ``main(argv)``:

* an error svde raises on purpose (:mod:`svde.errors`) prints ``error: <message>`` on stderr and
  exits 2 (bad input) or 1 (the work failed), without a traceback;
* a missing or unreadable file the user named (``OSError`` with a file name) is a user error;
* ``--debug`` anywhere on the command line shows the full traceback instead;
* Ctrl-C exits 130 with one line; anything else is a bug and shows its traceback.

Example:
    >>> from svde.errors import UserError
    >>> def main(argv):
    ...     raise UserError("config.yaml: optim.lr must be finite and > 0, got inf")
    >>> run_main(main, [])  # doctest: +SKIP
    error: config.yaml: optim.lr must be finite and > 0, got inf
    2
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Sequence

from svde.errors import EXIT_USER, exit_code

DEBUG_FLAG = "--debug"


def error_line(exc: BaseException) -> str:
    """The one line shown for ``exc`` (file errors name the file and the reason)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"error: {exc.filename}: {exc.strerror or exc}"
    return f"error: {exc}"


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` under the error convention above and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s")
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the point is to classify everything
        code = exit_code(exc)
        if code is None and isinstance(exc, OSError) and exc.filename is not None:
            code = EXIT_USER
        if debug or code is None:
            raise
        if int(os.environ.get("RANK", "0")) == 0 or code == EXIT_USER:
            print(error_line(exc), file=sys.stderr)
        return code
