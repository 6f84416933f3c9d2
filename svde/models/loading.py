"""The one model loader: :func:`load` (``svde.load``) turns any source into a network.

Sources, told apart in this order:

* a **folder** written by :func:`~svde.models.save_pretrained` (``config.json`` +
  ``model.safetensors``), or a Hugging Face repo id ``owner/name`` of one;
* a **file**: a project checkpoint (``last.pt``, ``best.pt``, :func:`~svde.models.save_checkpoint`;
  it knows its model) or an authors' released ``.pth`` (a flat ``branches.*`` state dict; the
  model is ``model=``, else recognised from the tensor shapes);
* a **released name** (``svde.models.RELEASED``: ``mn_lrn4`` ... ``b5_lrn4``): the authors'
  weights, downloaded once into torch.hub's cache and verified (:func:`~svde.models.load_released`).

Random weights only on explicit request: ``load(name, pretrained=False)`` (or
:func:`~svde.models.build_model`). Every other entry point (``svde.api``, the commands,
``hubconf.py``, ``svde paper-table``, the notebook) loads through here, and one log line says what
was loaded.

Example:
    >>> net = load("mn_lrn4", pretrained=False)   # random weights: asked for explicitly
    >>> net.name, net.training
    ('mn_lrn4', False)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from svde.device import resolve_device
from svde.errors import UnknownName, UserError, unknown_name
from svde.models.checkpoint import FORMAT, CheckpointError, _guess_official_name, _read, _unwrap, load_model
from svde.models.checkpoint import load_official_checkpoint
from svde.models.model import DepthModel
from svde.models.registry import MODELS, build_model
from svde.models.released import RELEASED, load_released
from svde.models.sharing import _REPO_ID, from_pretrained

log = logging.getLogger(__name__)

__all__ = ["hub_model", "load"]

# A missing path with one of these endings is a missing file, not a hub repo id or a name.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")


def load(source: str | os.PathLike, *, device: str | torch.device = "cpu", pretrained: bool = True,
         model: str | None = None, progress: bool = True) -> DepthModel:
    """The network ``source`` names, in eval mode on ``device`` (see the module docstring).

    Args:
        source: a released name, a project checkpoint, an authors' ``.pth``, or a
            ``save_pretrained`` folder (or Hugging Face repo id).
        device: where to put it (``"auto"``: CUDA when available).
        pretrained: for a name: ``True`` (default) the released weights, ``False`` random
            weights. Files and folders always load their own weights.
        model: the expected model name: required for nothing, checked against what a file holds,
            and used for an authors' file (whose architecture is otherwise recognised by shape).
        progress: show a progress bar while downloading released weights.

    Raises a :class:`~svde.errors.UserError` subclass with one line naming the source and what
    was expected (an unknown name lists the valid ones).
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    if model is not None and model not in MODELS:
        raise unknown_name("model", model, MODELS)
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if text is None:
        raise TypeError(f"source must be a model name or a path, got {type(source).__name__}")
    path = Path(text)
    if not path.exists() and path.suffix in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"checkpoint {text} does not exist")
    if path.is_dir() or (not path.exists() and _REPO_ID.match(text) and text not in MODELS):
        net, what = from_pretrained(text), f"save_pretrained weights from {text}"
    elif path.is_file():
        net, what = _load_file(path, model)
    elif text in MODELS:
        net, what = _load_name(text, pretrained, progress)
    else:
        raise UnknownName(f"{text!r} is neither a file, a save_pretrained folder nor a model name; "
                          f"released models: {', '.join(RELEASED)}")
    if model is not None and net.name != model:
        raise CheckpointError(f"{text} holds a {net.name} model, but model {model!r} was requested")
    net = net.to(resolve_device(device)).eval()
    log.info("loaded %s: %s", net.name, what)
    return net


def _load_name(name: str, pretrained: bool, progress: bool) -> tuple[DepthModel, str]:
    if not pretrained:
        return build_model(name), "random weights (pretrained=False)"
    if name not in RELEASED:
        raise UserError(f"{name} has no released weights (released: {', '.join(RELEASED)}); "
                        "pass pretrained=False for random weights, or a checkpoint file")
    return load_released(name, progress=progress), f"the authors' released weights ({RELEASED[name].filename})"


def _load_file(path: Path, model: str | None) -> tuple[DepthModel, str]:
    obj, _ = _read(path, "checkpoint")  # weights_only; one clear line for a damaged or unsafe file
    if obj.get("format") == FORMAT:
        return load_model(obj, source=str(path)), f"svde checkpoint {path}"
    state = _unwrap(obj)
    if not any(str(k).startswith("branches.") for k in state):
        raise CheckpointError(f"{path} is neither an svde checkpoint (no format={FORMAT!r} entry) nor an "
                              "authors' release (no branches.* keys)")
    name = model or _guess_official_name(state)
    if name is None:
        raise CheckpointError(f"{path}: an authors' file that fits none of {', '.join(MODELS)}; "
                              "pass model=NAME to see what differs")
    return load_official_checkpoint(obj, name, source=str(path)), f"the authors' file {path} ({name})"


def hub_model(name: str, pretrained: bool = True, **kwargs: Any) -> DepthModel:
    """What the ``hubconf.py`` entry point ``name`` returns.

    ``pretrained=True`` (the default, as MiDaS' hub entries): the released weights through
    :func:`load` (``progress`` may be passed). ``pretrained=False``: random weights,
    :func:`~svde.models.build_model` (``encoder_weights`` may be passed, e.g. ``"imagenet"``).
    ``pretrained`` must be a bool: a string such as ``"no"`` is refused rather than read as true.
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"{name}: pretrained must be True or False, got {pretrained!r}")
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    allowed = {"progress"} if pretrained else {"encoder_weights"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"{name}(pretrained={pretrained}) takes only {', '.join(repr(a) for a in sorted(allowed))}, "
                        f"got {', '.join(unknown)}")
    return load(name, **kwargs) if pretrained else build_model(name, **kwargs)
