"""Run-folder logging: ``metrics.jsonl``, TensorBoard scalars and colourised image grids.

Only rank 0 creates a :class:`RunLogger`; other processes log nothing.

Example:
    >>> logger = RunLogger("runs/demo")  # doctest: +SKIP
    >>> logger.record(10, {"loss": 0.5, "lr": 1e-3}, prefix="train/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from svde.atomic import read_jsonl, write_text
from svde.data import denormalize_image
from svde.errors import UserError
from svde.training.errors import writing
from svde.types import SCALE_INVARIANT
from svde.viz import colorize

log = logging.getLogger(__name__)


def depth_grid(images: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, pred_logdisp: torch.Tensor,
               depth_types: list[str], max_rows: int = 4) -> np.ndarray:
    """Rows of [input | ground truth | prediction] as one uint8 (H*rows, W*3, 3) image.

    Ground truth is shown as disparity (inverse depth, or the UTSS disparity as given) and the
    prediction as ``exp(log-disparity)``, each colourised on its own range: near is bright.

    Example:
        >>> ones = torch.ones(2, 1, 8, 8)
        >>> grid = depth_grid(torch.zeros(2, 3, 8, 8), ones, ones.bool(), ones.log(), ["uts", "utss"])
        >>> grid.shape, grid.dtype
        ((16, 24, 3), dtype('uint8'))
    """
    rows = []
    for i in range(min(max_rows, images.shape[0])):
        target, mask = targets[i, 0].float(), masks[i, 0]
        if depth_types[i] in SCALE_INVARIANT:
            target = torch.where(mask, 1.0 / target.clamp_min(1e-6), torch.zeros_like(target))
        rows.append(np.concatenate([denormalize_image(images[i]),
                                    colorize(target.cpu().numpy(), mask=mask.cpu().numpy()),
                                    colorize(pred_logdisp[i, 0].detach().float().exp().cpu().numpy())], axis=1))
    return np.concatenate(rows, axis=0)


class RunLogger:
    """Appends JSON lines to ``run_dir/metrics.jsonl`` and writes TensorBoard events to ``run_dir/tb``.

    ``resume_step`` keeps the records (JSON lines and TensorBoard events) up to and including
    that step and drops those an interrupted run wrote after it, so a resumed run's logs read as
    one run. Without it the run starts over: earlier records in the folder (a run killed before
    its first checkpoint) are dropped. The kept lines are rewritten atomically (a kill leaves the
    old file or the new one), and a torn last line (a kill mid-append) is dropped.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # local: heavy import

        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.tb_dir = self.run_dir / "tb"
        try:
            old = [] if resume_step is None else read_jsonl(self.metrics_path)
        except ValueError as exc:  # a broken line before the last: not a kill mid-append
            raise UserError(f"{exc}; fix or delete that line to resume") from None
        kept = [r for r in old if r.get("step", 0) <= resume_step]
        with writing(self.metrics_path):
            if kept or self.metrics_path.exists():
                write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
            self._file = self.metrics_path.open("a", buffering=1)  # line-buffered: readable while training
        # TensorBoard hides earlier events at steps >= purge_step: the resumed step itself stays.
        with writing(self.tb_dir):
            self.writer = SummaryWriter(str(self.tb_dir), purge_step=0 if resume_step is None else resume_step + 1)

    def record(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """One JSON line ``{"step": step, **values}`` plus a TensorBoard scalar per number."""
        clean = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in values.items()}
        with writing(self.metrics_path):
            self._file.write(json.dumps({"step": step, **clean}) + "\n")
        with writing(self.tb_dir):  # TensorBoard's writer thread reports its failures on the next call
            for key, value in clean.items():
                if isinstance(value, float) and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}{key}", value, step)

    def image(self, step: int, tag: str, rgb: np.ndarray) -> None:
        """A uint8 (H, W, 3) image in TensorBoard."""
        with writing(self.tb_dir):
            self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def close(self) -> None:
        """Close the files; a failure here (a full disk) is logged, not raised: closing runs while a
        run stops, and the error that stopped it is the one to show."""
        for name, close in (("metrics.jsonl", self._file.close), ("tb", self.writer.close)):
            try:
                close()
            except OSError as exc:
                log.warning("cannot finish writing %s: %s", self.run_dir / name, exc.strerror or exc)
