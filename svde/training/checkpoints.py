"""The run folder: checking it, resuming from it, and writing ``last.pt`` / ``best.pt``.

:class:`Checkpointer` writes the checkpoints (every tensor checked finite, written atomically by
:func:`svde.models.save_checkpoint`) and knows the last good one, which every stop message
names. A checkpoint is good only if the model it holds gives usable predictions (the trainer
probes it first: :meth:`~svde.training.state.TrainState.probe_problem`). The step-0 state is kept
in memory until the first ``last.pt``: a run that diverges before it writes it as ``last.pt``
(step 0) when it stops, so that even a run that diverges in its first steps names a usable
checkpoint; such a folder starts over like an empty one. ``last.pt``'s stored config is the
source of truth for a resumed run (:func:`resume_config`, :func:`check_resume_config`).

Example:
    >>> flatten_config({"train": {"steps": 3}, "data": {"train": [{"name": "synthetic"}]}})
    {'train.steps': 3, 'data.train.0.name': 'synthetic'}
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from svde.atomic import check_writable, remove_stale_temporaries, write_text
from svde.config import Config, ConfigError, build_config, load_config
from svde.models import CheckpointError, build_model, read_checkpoint
from svde.models.checkpoint import (CheckpointWriteError, NonFiniteStateError, nonfinite_tensors, peek_checkpoint,
                                   save_checkpoint)
from svde.training.distributed import DistContext
from svde.training.errors import ResumeError, RunFolderError, TrainingError, writing
from svde.training.state import TrainState

log = logging.getLogger(__name__)

# Config keys that may differ from the checkpoint's on --resume: they change how long the run
# goes on, how often it logs, where and how fast it runs, but not what it has learnt so far.
# (train.steps also stretches a decaying lr schedule over the new length.)
RESUME_SAFE = ("name", "train.steps", "train.device", "train.compile", "train.log_every", "train.image_every",
               "train.checkpoint_every", "train.max_nonfinite", "train.diverge_factor", "train.diverge_patience",
               "train.diverge_norm_factor", "train.diverge_output_bound", "train.ddp_timeout_s", "data.num_workers",
               "data.colour_on", "data.warp_on",
               "val.every", "val.batch_size")

ADVICE = ("Try a lower optim.lr, optim.grad_clip or train.amp=none in a new run (--out), or check the data "
          "for broken depth maps.")


class Checkpointer:
    """``last.pt`` and ``best.pt`` of one run folder (rank 0 writes them)."""

    def __init__(self, run_dir: Path, cfg: Config) -> None:
        self.run_dir, self.cfg = run_dir, cfg
        self.last, self.best = run_dir / "last.pt", run_dir / "best.pt"
        # The step-0 state (weights on the CPU, the other last.pt entries) until the first last.pt:
        # written as last.pt only if the run stops after its first update and before that checkpoint.
        self.initial: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

    def open(self, resume: bool, ctx: DistContext) -> dict[str, Any] | None:
        """Check the folder; the checkpoint to resume from (None: start at step 0)."""
        return open_run(self.cfg, self.run_dir, resume, ctx)

    def write_config(self) -> None:
        """A readable copy of the resolved config (the checkpoints hold the one that counts)."""
        path = self.run_dir / "config.yaml"
        with writing(path):
            write_text(path, yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))

    def last_good(self, state: TrainState) -> str:
        """The sentence every stop message ends with (a kept initial state is written as the run
        stops: :meth:`write_initial`)."""
        if state.saved_step is None and self.initial is not None and state.step > 0:
            return f"Last good checkpoint: {self.last} (step 0: the initial weights, written as the run stops)"
        if state.saved_step is None:
            return "Last good checkpoint: none (the run has not written one yet)"
        initial = ": the initial weights" if state.saved_step == 0 else ""
        return f"Last good checkpoint: {self.last} (step {state.saved_step}{initial})"

    def keep_initial(self, state: TrainState, rngs: list[dict[str, Any]] | None) -> None:
        """Keep the step-0 state (probed usable) in memory until the first ``last.pt``, so that a run
        that diverges before it still names a usable checkpoint (rank 0 calls this)."""
        weights = {k: v.detach().to("cpu", copy=True) for k, v in state.raw_model.state_dict().items()}
        self.initial = (weights, copy.deepcopy(state.state_dict(rngs)))

    def write_initial(self, state: TrainState) -> None:
        """Write the kept step-0 state as ``last.pt`` if the run stops after its first update but
        before its first ``last.pt`` (the stop message names it: :meth:`last_good`)."""
        if self.initial is None or state.saved_step is not None or state.step == 0:
            return
        weights, extra = self.initial
        model = build_model(self.cfg.model.name)
        model.load_state_dict(weights)
        try:
            save_checkpoint(self.last, model, config=self.cfg.to_dict(), step=0, **extra)
        except (CheckpointWriteError, NonFiniteStateError) as exc:
            log.warning("the initial weights could not be kept as %s: %s", self.last, exc)
            return
        state.saved_step, self.initial = 0, None

    def _save(self, path: Path, state: TrainState, at: int, **extra: Any) -> None:
        try:
            save_checkpoint(path, state.raw_model, config=self.cfg.to_dict(), step=at, **extra)
        except NonFiniteStateError as exc:
            raise TrainingError(f"step {at}: the run diverged: {exc}. {self.last_good(state)}. {ADVICE}") from None
        except CheckpointWriteError as exc:  # e.g. a full disk: the file written before is untouched
            raise TrainingError(f"step {at}: {exc}. {self.last_good(state)}; free some space and continue "
                                f"with svde train --resume {self.run_dir}") from None

    def save_best(self, state: TrainState, at: int, selected_on: dict[str, Any] | None = None) -> None:
        """``best.pt``, with the data that selected it (``selected_on``: the metric and the sets)."""
        self._save(self.best, state, at, best=state.best, selected_on=selected_on)

    def save_last(self, state: TrainState, at: int, rngs: list[dict[str, Any]] | None) -> None:
        """Write ``last.pt``, unless the loss is far above its running level (the weights may be diverging)."""
        if state.monitor.suspicious:
            log.warning("step %d: the loss is far above its running level; %s is not updated (%s)", at,
                        self.last.name, self.last_good(state))
            return
        self._save(self.last, state, at, **state.state_dict(rngs))
        state.saved_step, self.initial = at, None


def flatten_config(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"dotted.key": value}`` (list items by index).

    See the module example.
    """
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, list) and data:
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_resume_config(cfg: Config, stored: Mapping[str, Any] | None, source: Path) -> None:
    """Refuse to resume with a config that differs from the checkpoint's outside :data:`RESUME_SAFE`.

    The checkpoint's stored config is what the weights were trained with; a resumed run may
    only change the keys that do not alter it (longer runs, logging cadence, device, ...).
    """
    if stored is None:
        raise ResumeError(f"{source} holds no training config (a converted or exported model): it cannot be "
                          "resumed; start a new run from it instead")
    try:
        before = flatten_config(build_config(stored).to_dict())
    except ConfigError as exc:
        raise TrainingError(f"{source}: its stored config is no longer valid ({exc})") from None
    after = flatten_config(cfg.to_dict())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, "<absent>") != after.get(k, "<absent>"))
    unsafe = [k for k in changed if k not in RESUME_SAFE]
    if unsafe:
        shown = "; ".join(f"{k}: {before.get(k, '<absent>')!r} -> {after.get(k, '<absent>')!r}" for k in unsafe[:8])
        raise ConfigError(f"cannot resume from {source} with a different config in {', '.join(unsafe)} ({shown}); "
                          f"only {', '.join(RESUME_SAFE)} may change on resume. Start a new run (--out) instead")
    for key in changed:
        log.info("resume: %s changed from %r to %r", key, before.get(key), after.get(key))


def resume_config(run_dir: str | Path, overrides: Sequence[str] = (), config: str | Path | None = None) -> Config:
    """The config to continue ``run_dir`` with: its checkpoint's stored config plus ``overrides``.

    ``last.pt``'s config is the source of truth: the folder's ``config.yaml`` is only a copy
    for people to read (missing, empty or edited, it changes nothing). A ``config`` file given
    explicitly replaces the stored config and must agree with it like overrides do (checked by
    :func:`check_resume_config`, again in :func:`train`). A run killed before its first
    checkpoint has no ``last.pt``: its ``config.yaml`` is used, and :func:`train` starts it over.
    """
    return resume_plan(run_dir, overrides, config)[0]


def resume_plan(run_dir: str | Path, overrides: Sequence[str] = (),
                config: str | Path | None = None) -> tuple[Config, int | None]:
    """:func:`resume_config` and the CPU thread count ``last.pt`` was written on (None: no such
    file, or none recorded): resumed on the same count, a run stays bit-identical to an
    uninterrupted one. ``last.pt``'s tensors are memory-mapped here, not read: :func:`open_run`
    reads them once."""
    run_dir = Path(run_dir)
    last, copy = run_dir / "last.pt", run_dir / "config.yaml"
    if last.is_file():
        peeked = read_checkpoint(peek_checkpoint(last), str(last))
        stored = with_legacy_places(peeked.get("config"))
        if stored is None:
            check_resume_config(Config(), stored, last)  # raises: nothing to resume with
        cfg = load_config(config, overrides) if config is not None else build_config(stored, list(overrides))
        if config is None and (not copy.is_file() or copy.stat().st_size == 0):
            log.warning("%s is missing or empty: resuming with the config stored in %s", copy, last)
        check_resume_config(cfg, stored, last)
        threads = peeked.get("threads")
        return cfg, threads if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1 else None
    if config is None and (not copy.is_file() or copy.stat().st_size == 0):
        raise ResumeError(f"--resume {run_dir}: no last.pt and no config.yaml there: nothing to resume "
                          "(start a new run with --config)")
    return load_config(config if config is not None else copy, overrides), None


def with_legacy_places(stored: Any) -> Any:
    """A stored config from before ``data.colour_on`` / ``data.warp_on`` with them as that run
    trained: ``workers`` (the defaults, ``auto``, would move the work to the device on CUDA).
    Anything else is returned as it is.

    Example:
        >>> with_legacy_places({"data": {"colour_on": "device"}})["data"]
        {'colour_on': 'device', 'warp_on': 'workers'}
    """
    if not isinstance(stored, Mapping) or not isinstance(stored.get("data"), Mapping):
        return stored
    return {**stored, "data": {"colour_on": "workers", "warp_on": "workers", **stored["data"]}}


def _check_writable(run_dir: Path) -> None:
    try:
        check_writable(run_dir)
    except OSError as exc:
        raise RunFolderError(f"run folder {run_dir} is not writable ({exc.strerror or exc})") from None


def _only_started(last: Path) -> bool:
    """Whether ``last`` holds step 0: the initial weights of a run that stopped before its first
    checkpoint (:meth:`Checkpointer.write_initial`). Nothing was trained: such a run starts over."""
    try:
        return read_checkpoint(last).get("step") == 0
    except CheckpointError:
        return False


def open_run(cfg: Config, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any] | None:
    """Check the run folder and return the checkpoint to resume from (None: start at step 0)."""
    last_path = run_dir / "last.pt"
    ckpt = None
    if resume:
        if last_path.is_file():
            ckpt = read_checkpoint(last_path)
            check_resume_config(cfg, with_legacy_places(ckpt.get("config")), last_path)
            bad = nonfinite_tensors({k: ckpt.get(k) for k in ("model", "optimizer")})
            if bad:  # written before svde refused such files
                raise TrainingError(f"{last_path} holds {len(bad)} tensor(s) with NaN/inf (e.g. {', '.join(bad[:3])}): "
                                    "it cannot be resumed; start a new run")
            if ckpt.get("step") == 0:  # the initial weights: nothing was trained, the run starts over
                log.warning("%s holds the initial weights (step 0) of a run that stopped before its first "
                            "checkpoint: starting it over", last_path)
                ckpt = None
        elif (run_dir / "config.yaml").is_file() or (run_dir / "metrics.jsonl").is_file():
            log.warning("%s has no %s yet (the run stopped before its first checkpoint): starting it over "
                        "from step 0", run_dir, last_path.name)
        else:
            raise ResumeError(f"--resume {run_dir}: no {last_path.name} there to continue from")
    elif last_path.exists() and not _only_started(last_path):
        raise ResumeError(f"{run_dir} already holds a run ({last_path.name}); use --resume {run_dir} "
                          "to continue it, or another --out folder")
    elif last_path.exists():
        log.warning("%s holds only the initial weights (step 0) of a run that stopped before its first "
                    "checkpoint: starting it over", last_path)
    if ctx.is_main:
        _check_writable(run_dir)
        remove_stale_temporaries(run_dir)  # only this run writes here
    return ckpt
