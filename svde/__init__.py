"""svde: light-weight geometry-preserving single-view depth estimation."""

import os

# Stay offline by default, for the Python API as well as the scripts: albumentations checks PyPI
# for a newer release when it is first imported (a network request at import time) unless this
# variable is set. Every ``import svde.*`` runs this file first, so it is set before svde.data
# (or anything else here) imports albumentations. A user's own value is kept (``setdefault``).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.3.0"

__all__ = ["__version__", "load"]


def load(source, *, device="cpu", pretrained=True, model=None, progress=True):  # noqa: ANN001, ANN201
    """A depth network from a released name, a checkpoint, an authors' ``.pth`` or a
    ``save_pretrained`` folder: :func:`svde.models.loading.load` (imported on first use, so that
    ``import svde`` stays light).

    Example:
        >>> import svde
        >>> svde.load("mn_lrn4", pretrained=False).name   # random weights, asked for explicitly
        'mn_lrn4'
    """
    from svde.models.loading import load as _load

    return _load(source, device=device, pretrained=pretrained, model=model, progress=progress)
