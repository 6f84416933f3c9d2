"""What stops a training run: :class:`TrainingError` (the run failed) and :class:`RunFolderError`."""

from __future__ import annotations

from svde.errors import RunFailed, UserError


class TrainingError(RunFailed):
    """The run cannot go on (non-finite losses, divergence, a bad resume folder, ...)."""


class RunFolderError(UserError):
    """The run folder cannot be written."""
