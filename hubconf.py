"""torch.hub entry points: one per released model, ``mn_lrn4`` ... ``b5_lrn4``.

    >>> import torch
    >>> model = torch.hub.load("<owner>/<repo>", "b5_lrn4", pretrained=True)  # doctest: +SKIP
    >>> model = torch.hub.load("path/to/clone", "mn_lrn4", source="local", pretrained=True)  # doctest: +SKIP

By default (``pretrained=True``, as MiDaS' hub entries) an entry loads the authors' released
weights through ``svde.load`` (downloaded once into ``torch.hub.get_dir()/checkpoints``,
verified; ``SVDE_WEIGHTS_URL`` points elsewhere); ``pretrained=False`` gives random weights
(``encoder_weights="imagenet"`` for an ImageNet encoder). There is one entry per model with
released weights (``svde.models.RELEASED``): a model added without a release has none.
torch.hub lists every public callable of this module, so helpers are private.
"""

from typing import Any as _Any, Callable as _Callable

from svde.models import loading as _loading, released as _released
from svde.models.registry import MODELS as _MODELS

# Checked by torch.hub before an entry point runs (module names, as importlib finds them).
dependencies = ["torch", "torchvision", "timm", "segmentation_models_pytorch", "numpy", "tqdm"]


def _entry(name: str) -> _Callable[..., _Any]:
    def entry(pretrained: bool = True, **kwargs: _Any) -> _Any:
        return _loading.hub_model(name, pretrained=pretrained, **kwargs)

    metrics = _released.RELEASED[name].metrics
    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = (
        f"{name} (encoder {_MODELS[name]}, LRN decoder): predicts log-disparity (B, 1, H, W).\n\n"
        f"pretrained=True (the default): the authors' released weights ({_released.RELEASED[name].filename}; published "
        f"NYU delta1 error {metrics['nyu_delta1_err']} %, DIW WHDR {metrics['diw_whdr']} %). "
        "pretrained=False: random weights; kwargs: encoder_weights='imagenet' (pretrained=False) or "
        "progress (pretrained=True).\n"
    )
    return entry


for _name in _released.RELEASED:
    globals()[_name] = _entry(_name)
del _name
