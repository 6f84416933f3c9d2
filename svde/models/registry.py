"""The eight released networks by name: ``build_model("mn_lrn4")`` and friends."""

from __future__ import annotations

from svde.errors import unknown_name
from svde.models.encoders import build_encoder
from svde.models.model import DepthModel

# model name -> encoder name; all released models use 4 CRP stages ("lrn4").
MODELS: dict[str, str] = {
    "mn_lrn4": "mobilenet_v2",
    "lite0_lrn4": "efficientnet_lite0",
    **{f"b{v}_lrn4": f"efficientnet_b{v}" for v in range(6)},
}


def build_model(name: str, encoder_weights: str | None = None) -> DepthModel:
    """Build one of the paper's networks, randomly initialised or with an ImageNet encoder.

    Args:
        name: one of ``MODELS`` (``mn_lrn4``, ``lite0_lrn4``, ``b0_lrn4`` ... ``b5_lrn4``).
        encoder_weights: ``None`` or ``"imagenet"`` (downloaded once, fails fast offline).

    Example:
        >>> model = build_model("lite0_lrn4")
        >>> sum(p.numel() for p in model.parameters())
        3550129
    """
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return DepthModel(build_encoder(MODELS[name], weights=encoder_weights), crp_stages=4, name=name)
