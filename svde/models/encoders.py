"""Encoders: ImageNet backbones cut into the five levels (strides 2..32) the LRN decoder uses.

Every encoder has ``out_channels`` (five ints, shallowest first) and returns five feature maps.
Module and parameter names follow the authors' released checkpoints (under ``branches.0.``),
minus the classification heads, which the decoder never uses (they would break DDP's
unused-parameter check and inflate parameter counts).

The registry ``ENCODERS`` maps a name to its builder; ``build_encoder`` looks it up.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

import svde.models.pretrained as pretrained
from svde.errors import unknown_name


class MobileNetV2Encoder(nn.Module):
    """torchvision MobileNetV2 ``features`` split at ``[0:2] [2:4] [4:7] [7:14] [14:18]``.

    The final 1280-channel conv (``features[18]``) is not used by the paper and is dropped.
    ``layers[0]`` is an identity standing for the input level, so that ``layers.K`` has the
    same name as in the released checkpoints.
    """

    splits = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 18))
    released_prefix = ""  # where the released checkpoint's encoder names live in this module
    released_unused: tuple[str, ...] = ()  # released encoder entries this module drops

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        features = mobilenet_v2().features
        if weights is not None:
            features.load_state_dict(pretrained.mobilenet_v2_features(weights))
        self.layers = nn.ModuleList([nn.Identity()] + [nn.Sequential(*features[a:b]) for a, b in self.splits])
        self.out_channels = (16, 24, 32, 96, 320)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers[1:]:
            x = layer(x)
            feats.append(x)
        return feats


class EfficientNetLite0Encoder(nn.Module):
    """timm's ``tf_efficientnet_lite0`` (TF "same" padding), levels after stem+block 0,
    block 1, block 2, block 3 and blocks 4-6.

    Level 4 is taken after block 3 (80 channels), not after block 4 as timm's
    ``features_only`` would, so the stages are run here explicitly.
    """

    level_ends = (0, 1, 2, 3, 6)  # index of the last block stage of each level
    released_prefix = ""
    released_unused = ("model.conv_head.", "model.bn2.", "model.classifier.")

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if weights is not None:
            self.model.load_state_dict(pretrained.efficientnet_lite0(weights))
        # Drop the classification head: conv_head/bn2/classifier are never used.
        self.model.conv_head = nn.Identity()
        self.model.bn2 = nn.Identity()
        self.model.classifier = nn.Identity()
        self.out_channels = (16, 24, 40, 80, 320)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.model.bn1(self.model.conv_stem(x))
        feats = []
        for i, stage in enumerate(self.model.blocks):
            x = stage(x)
            if i in self.level_ends:
                feats.append(x)
        return feats


# Native image sizes of EfficientNet-B0..B5: efficientnet-pytorch 0.6.3, which built the released
# encoders, computed the static "same" padding of *every* conv from this size.
_B_NATIVE_SIZE = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456}


def _set_static_same_padding(module: nn.Module, image_size: int) -> None:
    """Recompute each static-same-padding conv's padding from one global image size.

    Current segmentation-models-pytorch computes it from each block's own input size; the two
    differ for some stride-2 convs of B1-B5, and only the global rule reproduces the released
    outputs. Stride-1 convs pad ``k - 1`` either way.
    """
    for conv in module.modules():
        if not hasattr(conv, "static_padding") or not isinstance(conv, nn.Conv2d):
            continue
        pads = []
        for k, s, d in zip(conv.kernel_size, conv.stride, conv.dilation):
            out = -(-image_size // s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - image_size, 0))
        pad_h, pad_w = pads
        if pad_h or pad_w:
            conv.static_padding = nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        else:
            conv.static_padding = nn.Identity()


class EfficientNetBEncoder(nn.Module):
    """segmentation-models-pytorch's ``efficientnet-bN`` encoder without its unused conv head,
    with the 0.6.3 padding rule of the released checkpoints.

    The released names (``_conv_stem``, ``_blocks`` ...) live under ``net.``.
    """

    released_prefix = "net."
    released_unused = ("_conv_head.", "_bn1.", "_fc.")

    def __init__(self, variant: int, weights: str | None = None) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        if variant not in _B_NATIVE_SIZE:
            raise ValueError(f"EfficientNet variant must be one of {sorted(_B_NATIVE_SIZE)}, got {variant}")
        enc = get_encoder(f"efficientnet-b{variant}", weights=None)
        if weights is not None:
            enc.load_state_dict(pretrained.efficientnet_b(variant, weights), strict=False)
        del enc._conv_head, enc._bn1  # unused head: breaks DDP, inflates parameter counts
        _set_static_same_padding(enc, _B_NATIVE_SIZE[variant])
        self.net = enc
        self.out_channels = tuple(enc.out_channels[1:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)[1:]


def _efficientnet_b(variant: int) -> Callable[..., nn.Module]:
    def build(weights: str | None = None) -> nn.Module:
        return EfficientNetBEncoder(variant, weights)

    build.__name__ = f"build_efficientnet_b{variant}"
    return build


ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v2": MobileNetV2Encoder,
    "efficientnet_lite0": EfficientNetLite0Encoder,
    **{f"efficientnet_b{v}": _efficientnet_b(v) for v in range(6)},
}


def build_encoder(name: str, weights: str | None = None) -> nn.Module:
    """Build an encoder by name; ``weights`` is ``None`` (random) or ``"imagenet"``.

    Example:
        >>> enc = build_encoder("mobilenet_v2")
        >>> enc.out_channels
        (16, 24, 32, 96, 320)
    """
    if name not in ENCODERS:
        raise unknown_name("encoder", name, ENCODERS)
    return ENCODERS[name](weights=weights)
