"""What stops a training run: :class:`TrainingError` (the run failed), :class:`RunFolderError` (the
run folder cannot be used) and :func:`writing`, which turns a failed write (a full disk) into one
:class:`TrainingError` naming the file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from svde.errors import RunFailed, UserError


class TrainingError(RunFailed):
    """The run cannot go on (non-finite losses, divergence, a full disk, ...)."""


class RunFolderError(UserError):
    """The run folder cannot be written."""


class ResumeError(RunFolderError, TrainingError):
    """The run folder does not fit the request: a run there already, or none to resume. The user's
    to fix (exit status 2); also a :class:`TrainingError`, which svde 0.2 raised for it."""


@contextmanager
def writing(path: str | Path, then: str = "") -> Iterator[None]:
    """Run a block that writes ``path``; an ``OSError`` (no space left, quota, I/O error) becomes one
    :class:`TrainingError`: ``cannot write <path>: <reason><then>``.

    Example:
        >>> try:
        ...     with writing("run/last.pt", "; run/last.pt (step 100) is kept"):
        ...         raise OSError(28, "No space left on device")
        ... except TrainingError as exc:
        ...     print(exc)
        cannot write run/last.pt: No space left on device; run/last.pt (step 100) is kept
    """
    try:
        yield
    except OSError as exc:
        raise TrainingError(f"cannot write {path}: {exc.strerror or exc}{then}") from None
