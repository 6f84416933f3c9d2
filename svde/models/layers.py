"""Small building blocks shared by the decoder and the head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _max5_along(x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Sliding max of width 5 along ``dim`` of an input already padded by 2 on both sides.

    Three element-wise maxima instead of four: pairs, then pairs of pairs (windows of 4), then
    the fifth element. Slices are views, so nothing is copied besides the three results.
    """
    pairs = torch.maximum(x.narrow(dim, 0, n + 3), x.narrow(dim, 1, n + 3))
    quads = torch.maximum(pairs.narrow(dim, 0, n + 1), pairs.narrow(dim, 2, n + 1))
    return torch.maximum(quads.narrow(dim, 0, n), x.narrow(dim, 4, n))


def max_pool5_separable(x: torch.Tensor) -> torch.Tensor:
    """5x5 max-pool, stride 1, padding 2, as a 5x1 then a 1x5 sliding max over shifted views.

    Exact: a 5x5 window max is the max over rows of the max over columns, and the ``-inf``
    border is what ``max_pool2d``'s implicit padding means. No index tensor is built (the
    CPU ``max_pool2d`` kernel always builds one), and on channels-last tensors each maximum
    runs over contiguous channel vectors. Differentiable; where the input has no ties its
    gradient equals ``F.max_pool2d(x, 5, 1, 2)``'s (ties share the gradient instead of giving
    it to one element).

    Example:
        >>> x = torch.randn(1, 2, 6, 7)
        >>> torch.equal(max_pool5_separable(x), F.max_pool2d(x, 5, 1, 2))
        True
    """
    if x.ndim != 4:
        raise ValueError(f"max_pool5 expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    padded = F.pad(x, (2, 2, 2, 2), value=float("-inf"))
    return _max5_along(_max5_along(padded, 2, height), 3, width)


def max_pool5(x: torch.Tensor) -> torch.Tensor:
    """5x5 max-pool, stride 1, padding 2 (implicit -inf padding), same shape as ``x``.

    Values always equal ``F.max_pool2d(x, 5, 1, 2)``. Without autograd (inference) the
    separable form :func:`max_pool5_separable` runs: 3-5x faster on CPU since it builds no
    indices. When a gradient is needed, ``F.max_pool2d`` itself runs: its backward (one
    scatter through the saved indices) is faster than the element-wise maxima's, so
    training keeps the reference's speed and exactly its gradients.

    Example:
        >>> x = torch.randn(1, 2, 6, 7)
        >>> torch.equal(max_pool5(x), F.max_pool2d(x, 5, 1, 2))
        True
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, kernel_size=5, stride=1, padding=2)
    return max_pool5_separable(x)


class ConvBN(nn.Sequential):
    """1x1 convolution without bias followed by BatchNorm (indices 0 and 1, as released).

    For inference the BatchNorm is folded into the convolution by :mod:`svde.models.fast`.
    """

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
