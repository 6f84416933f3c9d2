"""The paper's LRN decoder (Light-Weight RefineNet with fusion blocks and averaged CRP).

Layout (paper §3.1.2, Fig. 1; exact to the authors' released checkpoints):

* the deepest encoder level goes through a CRP block;
* then, for every shallower level, a :class:`FusionBlock` (1x1 conv with bias to this level's
  channels, x2 bilinear upsampling, add the skip) followed by a CRP block;
* each :class:`CRPBlock` is ``adapt`` (1x1 conv + BN) and ``stages`` of
  5x5/stride-1 max-pool -> 1x1 conv -> BN, chained, each stage added to a running sum;
  the sum over the input and the ``n`` stages is divided by ``n + 1`` (the paper's fix).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from svde.models.layers import ConvBN, max_pool5


class CRPBlock(nn.Module):
    """Chained residual pooling with the sum averaged over its ``stages + 1`` terms.

    Example:
        >>> block = CRPBlock(16, stages=4)
        >>> block(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 16, 8, 8])
    """

    def __init__(self, channels: int, stages: int = 4) -> None:
        super().__init__()
        self.adapt = ConvBN(channels, channels)
        self.stages = nn.ModuleList(ConvBN(channels, channels) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapt(x)
        total = None
        top = x
        for stage in self.stages:
            top = stage(max_pool5(top))
            # The running sum is a fresh tensor after the first stage, so it is updated in
            # place (one allocation per block instead of one per stage); addition and scaling
            # by a constant save nothing for backward, so gradients are unchanged.
            total = x + top if total is None else total.add_(top)
        if total is None:
            return x
        return total.mul_(1.0 / (len(self.stages) + 1))


class FusionBlock(nn.Module):
    """Map the deeper features to the skip's channels (1x1 conv with bias), upsample, add."""

    def __init__(self, deep_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(deep_channels, skip_channels, kernel_size=1, bias=True)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The 1x1 conv runs before upsampling, at the cheaper resolution (as released).
        deep = F.interpolate(self.conv(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        # In place: the upsampled tensor is fresh and bilinear upsampling's backward needs
        # neither its input nor its output.
        return deep.add_(skip)


class LRNDecoder(nn.Module):
    """Decode encoder levels (shallow to deep) into features at the shallowest level's stride.

    Args:
        encoder_channels: channels of the levels the decoder uses, shallowest first
            (e.g. ``(16, 24, 32, 96, 320)`` for MobileNetV2).
        crp_stages: CRP stages per block (4 in all released models, the "4" in ``*_lrn4``).

    Example:
        >>> dec = LRNDecoder((4, 8, 16))
        >>> feats = [torch.zeros(1, 4, 16, 16), torch.zeros(1, 8, 8, 8), torch.zeros(1, 16, 4, 4)]
        >>> dec(feats).shape
        torch.Size([1, 4, 16, 16])
    """

    def __init__(self, encoder_channels: Sequence[int], crp_stages: int = 4) -> None:
        super().__init__()
        deep_first = list(reversed(encoder_channels))
        self.crp = nn.ModuleList(CRPBlock(c, crp_stages) for c in deep_first)
        self.fusion = nn.ModuleList(FusionBlock(d, s) for d, s in zip(deep_first[:-1], deep_first[1:]))
        self.out_channels = encoder_channels[0]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        deep_first = list(reversed(features))
        x = self.crp[0](deep_first[0])
        for fusion, crp, skip in zip(self.fusion, self.crp[1:], deep_first[1:]):
            x = crp(fusion(x, skip))
        return x
