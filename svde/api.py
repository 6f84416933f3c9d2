"""Using a trained network from Python: load it from any source (:func:`load`, also ``svde.load``),
predict, convert domains.

The networks predict **log-disparity** (log inverse depth; up to an unknown scale for UTS
models). :func:`predict` takes an RGB image of any size, prepares it with the model's own
input contract (:mod:`svde.preprocess`: the evaluator's exact resizing and normalisation, so a
prediction reproduces an evaluated one), runs the fast inference snapshot
(:func:`svde.models.fast.for_inference`) and resizes the log-disparity back to the input size.

Example:
    >>> import numpy as np
    >>> model = load("mn_lrn4", pretrained=False)     # random weights: only to try the pipeline
    >>> log_disp = predict(model, np.zeros((50, 70, 3), np.uint8))
    >>> log_disp.shape, convert_domain(log_disp, "depth").dtype
    ((50, 70), dtype('float32'))
"""

from __future__ import annotations

import os
import warnings

import torch

from svde.errors import UserError
from svde.models.checkpoint import CheckpointError
from svde.models import MODELS, DepthModel
from svde.models.loading import load
from svde.models.prediction import DOMAINS, NonFiniteOutput, convert_domain, predict

__all__ = ["DOMAINS", "NonFiniteOutput", "convert_domain", "load", "load_depth_model", "predict"]


def legacy_source(checkpoint: str | os.PathLike | None, official: str | os.PathLike | None,
                  model: str | None) -> str | os.PathLike:
    """What 0.1's ``load_depth_model(checkpoint=, official=, model=)`` names, as :func:`load`'s
    source (checked: one file at most, which exists, as 0.1 checked it: not a name or a hub
    id; a released file with its model name)."""
    if checkpoint is not None and official is not None:
        raise UserError("give either a project checkpoint (--checkpoint) or a released file (--official), not both")
    if official is not None and model is None:
        raise UserError(f"a released file ({official}) does not record its architecture: "
                        f"also give the model name (one of {', '.join(MODELS)})")
    given = checkpoint if checkpoint is not None else official
    if given is not None and not os.path.isfile(given):
        raise CheckpointError(f"checkpoint {given} does not exist")
    source = given if given is not None else model
    if source is None:
        raise UserError("nothing to load: give a checkpoint, a released file with its model name, or a model name")
    return source


def load_depth_model(checkpoint: str | os.PathLike | None = None, official: str | os.PathLike | None = None,
                     model: str | None = None, device: str | torch.device = "cpu") -> DepthModel:
    """Deprecated: use :func:`svde.load`. The network from a project checkpoint, a released
    file (``official`` with ``model``), or (``model`` alone) the authors' released weights.

    ``model`` alone used to return random weights without a word, unlike ``svde predict
    --model NAME``; it now means the released weights, as everywhere else, with a
    ``DeprecationWarning``. Random weights: ``svde.load(name, pretrained=False)``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     load_depth_model("mn_lrn4.pth")  # doctest: +SKIP
    """
    source = legacy_source(checkpoint, official, model)
    if checkpoint is None and official is None:
        warnings.warn("load_depth_model(model=NAME) now returns the released weights (as svde predict --model "
                      "NAME does), not random ones; use svde.load(NAME), or svde.load(NAME, pretrained=False) "
                      "for random weights", DeprecationWarning, stacklevel=2)
    else:
        warnings.warn("load_depth_model is deprecated: use svde.load(path)", DeprecationWarning, stacklevel=2)
    return load(source, device=device, model=model)
