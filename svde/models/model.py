"""The depth network: encoder -> LRN decoder -> head, joined by a channel contract."""

from __future__ import annotations

import torch
from torch import nn

from svde.models.decoder import LRNDecoder
from svde.models.fast import FoldedCopyCache, can_use_folded_copy
from svde.models.layers import DepthHead


class DepthModel(nn.Module):
    """Predicts log-disparity (log inverse depth), (B, 1, H, W), from ImageNet-normalised RGB.

    H and W should be multiples of 32 (the encoder's stride); the decoder works at stride 2 and
    the head upsamples bilinearly to the input size.

    Speed without extra steps (see :mod:`svde.models.fast`):

    * the weights are channels-last (NHWC) from construction, and inputs are converted to
      match, which is several times faster on CPU for these depthwise/1x1-conv networks and
      the layout tensor cores want on GPU; ``model.to(memory_format=torch.contiguous_format)``
      switches back, and the input then stays as given;
    * in eval mode without autograd (``torch.no_grad()``/``torch.inference_mode()``), the call
      runs a cached copy with BatchNorm folded into the convolutions
      (``fast_inference = False`` turns this off). Parameters, ``state_dict()`` and training
      are untouched by it.

    Example:
        >>> from svde.models import build_model
        >>> model = build_model("mn_lrn4").eval()
        >>> model(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 1, 64, 96])
    """

    def __init__(self, encoder: nn.Module, crp_stages: int = 4, name: str = "", channels_last: bool = True) -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.decoder = LRNDecoder(encoder.out_channels, crp_stages=crp_stages)
        self.head = DepthHead(self.decoder.out_channels)
        self.fast_inference = True
        self._folded = FoldedCopyCache()
        # A weight whose layout tells whether the model is channels-last: the first conv with
        # a spatial kernel and several input channels (NCHW and NHWC strides differ for it).
        self._layout_probe = next(
            (n for n, p in self.named_parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1), None
        )
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def is_channels_last(self) -> bool:
        """Whether the weights are in channels-last layout (inputs are then converted to it)."""
        if self._layout_probe is None:
            return False
        weight = self.get_parameter(self._layout_probe)
        return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    def train(self, mode: bool = True) -> "DepthModel":
        # Switching modes drops the folded copy: it is rebuilt from the current weights.
        self._folded.clear()
        return super().train(mode)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        if self.is_channels_last():
            image = image.contiguous(memory_format=torch.channels_last)
        if can_use_folded_copy(self):
            return self._folded.get(self)(image)
        features = self.encoder(image)
        return self.head(self.decoder(features), size=image.shape[-2:])
