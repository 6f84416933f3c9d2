"""Using a trained network from Python: load it from any source, predict, convert domains.

The networks predict **log-disparity** (log inverse depth; up to an unknown scale for UTS
models). :func:`predict` takes an RGB image of any size, prepares it with the model's own
input contract (:mod:`svde.preprocess`: the evaluator's exact resizing and normalisation, so a
prediction reproduces an evaluated one), runs the fast inference snapshot
(:func:`svde.models.fast.for_inference`) and resizes the log-disparity back to the input size.

Example:
    >>> import numpy as np
    >>> model = load_depth_model(model="mn_lrn4")     # random weights: only to try the pipeline
    >>> log_disp = predict(model, np.zeros((50, 70, 3), np.uint8))
    >>> log_disp.shape, convert_domain(log_disp, "depth").dtype
    ((50, 70), dtype('float32'))
"""

from __future__ import annotations

import os

import torch

from svde.device import resolve_device
from svde.errors import UnknownName, UserError
from svde.models import MODELS, DepthModel, build_model, load_model, load_official_checkpoint
from svde.models.predict import DOMAINS, NonFiniteOutput, convert_domain, predict

__all__ = ["DOMAINS", "NonFiniteOutput", "convert_domain", "load_depth_model", "predict"]

def load_depth_model(checkpoint: str | os.PathLike | None = None, official: str | os.PathLike | None = None,
                     model: str | None = None, device: str | torch.device = "cpu") -> DepthModel:
    """The network from a project checkpoint, a released file, or (``model`` alone) random weights.

    Args:
        checkpoint: a file written by :func:`svde.models.save_checkpoint` (knows its model name).
        official: an authors' released state dict; needs ``model``.
        model: the model name; alone it builds random weights (for tests and benchmarks).
        device: where to put the network (returned in eval mode).

    Example:
        >>> load_depth_model(model="mn_lrn4").name
        'mn_lrn4'
    """
    if checkpoint is not None and official is not None:
        raise UserError("give either a project checkpoint (--checkpoint) or a released file (--official), not both")
    if model is not None and model not in MODELS:
        raise UnknownName(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")
    if checkpoint is not None:
        net = load_model(checkpoint)
        if model is not None and net.name != model:
            raise UserError(f"{checkpoint} holds a {net.name} model, but model {model!r} was requested")
    elif official is not None:
        if model is None:
            raise UserError(f"a released file ({official}) does not record its architecture: "
                            f"also give the model name (one of {', '.join(MODELS)})")
        net = load_official_checkpoint(official, model)
    elif model is not None:
        net = build_model(model)
    else:
        raise UserError("nothing to load: give a checkpoint, a released file with its model name, or a model name")
    return net.to(resolve_device(device)).eval()
