"""The two kinds of failure svde reports, and how the command line shows them.

* :class:`UserError`: the input is wrong (a config value, a file, an argument). The message
  names the file, key or value and what was expected. Scripts print it as one ``error:`` line
  and exit 2.
* :class:`RunFailed`: the input was fine but the work could not be done (a run diverged, an
  export does not reproduce the model, a download failed). One ``error:`` line, exit 1.

Every module's own error class derives from one of these (``ConfigError``, ``DataError`` and
``CheckpointError`` are user errors; ``TrainingError`` and ``ExportError`` are failures), so a
caller can catch the whole family at once.

Example:
    >>> class MyError(UserError): ...
    >>> exit_code(MyError("bad")), exit_code(RunFailed("diverged")), exit_code(KeyError("x"))
    (2, 1, None)
"""

from __future__ import annotations

import difflib
from typing import Iterable

EXIT_FAILED = 1
EXIT_USER = 2


class SvdeError(Exception):
    """Base of every error svde raises on purpose."""


class UserError(SvdeError, ValueError):
    """Bad input: printed as one ``error:`` line, exit status 2."""


class RunFailed(SvdeError, RuntimeError):
    """Valid input, but the work failed: one ``error:`` line, exit status 1."""


class UnknownName(UserError, KeyError):
    """A name (model, dataset, domain, format, ...) that is not one of the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: object, valid: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``valid`` to ``name``, or ``""``.

    Example:
        >>> did_you_mean("nyuu", ["nyu", "tum"]), did_you_mean("zzz", ["nyu"])
        (" (did you mean 'nyu'?)", '')
    """
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: object, valid: Iterable[object], plural: str | None = None) -> UnknownName:
    """The one "unknown name" error of every registry lookup: names the kind, the closest valid
    name and all of them (``plural``: the kind's plural, default ``kind + "s"``).

    Example:
        >>> str(unknown_name("optimizer", "adamm", ["adam", "sgd"]))
        "unknown optimizer 'adamm' (did you mean 'adam'?); valid optimizers: adam, sgd"
    """
    valid = [str(v) for v in valid]
    return UnknownName(f"unknown {kind} {name!r}{did_you_mean(name, valid)}; valid {plural or kind + 's'}: "
                       f"{', '.join(valid)}")


def exit_code(exc: BaseException) -> int | None:
    """The exit status for an error svde reports itself; ``None`` for anything else (a bug)."""
    if isinstance(exc, UserError):
        return EXIT_USER
    if isinstance(exc, RunFailed):
        return EXIT_FAILED
    return None
