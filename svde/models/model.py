"""The depth network: encoder -> LRN decoder -> head, joined by a channel contract."""

from __future__ import annotations

import torch
from torch import nn

from svde.models.decoder import LRNDecoder
from svde.models.layers import DepthHead


class DepthModel(nn.Module):
    """Predicts log-disparity (log inverse depth), (B, 1, H, W), from ImageNet-normalised RGB.

    H and W should be multiples of 32 (the encoder's stride); the decoder works at stride 2 and
    the head upsamples bilinearly to the input size.

    Example:
        >>> from svde.models import build_model
        >>> model = build_model("mn_lrn4").eval()
        >>> model(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 1, 64, 96])
    """

    def __init__(self, encoder: nn.Module, crp_stages: int = 4, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.decoder = LRNDecoder(encoder.out_channels, crp_stages=crp_stages)
        self.head = DepthHead(self.decoder.out_channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        features = self.encoder(image)
        return self.head(self.decoder(features), size=image.shape[-2:])
