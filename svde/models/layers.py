"""Small building blocks shared by the decoder and the head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def max_pool5(x: torch.Tensor) -> torch.Tensor:
    """5x5 max-pool, stride 1, padding 2 (implicit -inf padding), same shape as ``x``.

    A 5x5 window max equals a 5x1 max followed by a 1x5 max, which does 10 comparisons per
    output instead of 25; ``return_indices`` is never requested, so no index tensor is
    built. Values and gradients are identical to ``F.max_pool2d(x, 5, 1, 2)``.

    Example:
        >>> x = torch.randn(1, 2, 6, 7)
        >>> torch.equal(max_pool5(x), F.max_pool2d(x, 5, 1, 2))
        True
    """
    x = F.max_pool2d(x, kernel_size=(5, 1), stride=1, padding=(2, 0))
    return F.max_pool2d(x, kernel_size=(1, 5), stride=1, padding=(0, 2))


class ConvBN(nn.Sequential):
    """1x1 convolution without bias followed by BatchNorm (indices 0 and 1, as released)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class DepthHead(nn.Module):
    """1x1 conv with bias to one channel at the decoder's stride, then bilinear upsampling."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.conv(x), size=size, mode="bilinear", align_corners=False)
