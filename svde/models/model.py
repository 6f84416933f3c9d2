"""The depth network: encoder -> LRN decoder -> head, joined by a channel contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from svde import preprocess
from svde.models.decoder import LRNDecoder
from svde.models.layers import DepthHead
from svde.models.prediction import convert_domain, predict
from svde.preprocess import EVAL_SHORT_SIDE

class DepthModel(nn.Module):
    """Predicts log-disparity (log inverse depth), (B, 1, H, W), from ImageNet-normalised RGB.

    H and W must be multiples of :attr:`stride` (32, the encoder's output stride); the decoder
    works at stride 2 and the head upsamples bilinearly to the input size. The model owns its
    input contract (:mod:`svde.preprocess`): :attr:`stride`, :attr:`mean`, :attr:`std`,
    :meth:`input_size` and :meth:`prepare_input`.

    ``forward`` is the network and nothing else: the same computation in training, evaluation
    and export. The weights are channels-last (NHWC) from construction and inputs are converted
    to match (several times faster on CPU for these depthwise/1x1-conv networks, and the layout
    tensor cores want); ``model.to(memory_format=torch.contiguous_format)`` switches back.
    For prediction, :func:`svde.models.optimize_for_inference` (used by :mod:`svde.api`, the
    evaluator and the benchmarks) makes a frozen BatchNorm-folded snapshot, optionally compiled.

    Example:
        >>> from svde.models import build_model
        >>> model = build_model("mn_lrn4").eval()
        >>> model(model.prepare_input(np.zeros((50, 70, 3), np.uint8))).shape
        torch.Size([1, 1, 64, 64])
    """

    stride: int = preprocess.STRIDE
    mean: tuple[float, ...] = tuple(float(v) for v in preprocess.IMAGENET_MEAN)
    std: tuple[float, ...] = tuple(float(v) for v in preprocess.IMAGENET_STD)
    output_domain: str = "log_disparity"

    def __init__(self, encoder: nn.Module, crp_stages: int = 4, name: str = "", channels_last: bool = True) -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.decoder = LRNDecoder(encoder.out_channels, crp_stages=crp_stages)
        self.head = DepthHead(self.decoder.out_channels)
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

    def input_size(self, height: int, width: int, short_side: int | None = None) -> tuple[int, int]:
        """The network size for an image of ``height`` x ``width`` (:func:`svde.preprocess.network_size`)."""
        return preprocess.network_size(height, width, short_side, multiple=self.stride)

    def prepare_input(self, image: np.ndarray | torch.Tensor, size: tuple[int, int] | None = None,
                      short_side: int | None = None) -> torch.Tensor:
        """One image (RGB array, or a dataset's normalised tensor) as a (1, 3, h, w) batch on the model's device."""
        x = preprocess.prepare_input(image, size=size, short_side=short_side)
        ref = next(self.parameters(), None)
        return x if ref is None else x.to(ref.device)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        if self.is_channels_last():
            image = image.contiguous(memory_format=torch.channels_last)
        features = self.encoder(image)
        return self.head(self.decoder(features), size=image.shape[-2:])

    # ---- prediction: a thin method over svde.models.prediction----------------------------------
    def infer_image(self, rgb: Any, domain: str = "depth", short_side: int | None = EVAL_SHORT_SIDE,
                    bgr: bool = False) -> np.ndarray:
        """Predict one photo: RGB (H, W, 3) uint8 (or float in [0, 1]) or a PIL image in, float32
        (H, W) in ``domain`` out.

        :func:`svde.models.prediction.predict` then :func:`~svde.models.prediction.convert_domain`,
        exactly as ``svde.api.predict`` and ``svde predict``: the model's own input contract, the
        cached fast snapshot, no gradients, the model's mode untouched. ``domain``:
        ``log_disparity`` (the network's output), ``disparity``, ``depth`` or ``log_depth``; the
        released models are scale-invariant (UTS), so depth and disparity are known up to one
        unknown scale. ``short_side``: the network runs with the shorter side at 384 px (the
        paper's evaluation size) by default, so time and memory do not grow with the photo;
        ``None`` runs it at the native size. ``bgr=True`` takes a BGR array as ``cv2.imread``
        gives (or use :meth:`infer_bgr`).

        Example:
            >>> from svde.models import build_model
            >>> build_model("mn_lrn4").infer_image(np.zeros((50, 70, 3), np.uint8)).shape
            (50, 70)
        """
        return convert_domain(predict(self, rgb, short_side=short_side, bgr=bgr), domain)

    def infer_bgr(self, bgr: np.ndarray, domain: str = "depth", short_side: int | None = EVAL_SHORT_SIDE) -> np.ndarray:
        """:meth:`infer_image` for a BGR array, as ``cv2.imread`` returns it."""
        return self.infer_image(bgr, domain=domain, short_side=short_side, bgr=True)
