"""Each evaluation dataset's protocol, as one explicit table (:data:`PROTOCOLS`).

The evaluator prints the protocol it used next to the results and stores it in the JSON, so a
number can always be traced to exactly what was done. The values follow the authors' evaluation
(and, for KITTI, which their code does not cover, the usual Eigen-split protocol).

Choices this table fixes:

* **Valid ground truth** is ``mask & gt > min_depth & gt <= depth_cap`` (``gt < depth_cap`` when
  ``cap_exclusive``: Sintel excludes depths >= 72 m), then the border or Garg crop. Crops are
  applied as masks, so the ground truth keeps its resolution and its intrinsics stay valid.
* **Depth cap and predictions**: in UTSS mode the aligned disparity is clamped to ``>= 1 / cap``
  (the authors' ``depth_cap``), i.e. aligned depths never exceed the cap. In UTS mode the aligned
  prediction is *not* clamped: it is the prediction times one scale, judged as it is. Where a
  protocol has no cap (``folder``), UTSS mode clamps at the image's farthest valid ground-truth
  depth.
* **Input size**: the image is resized bilinearly (``align_corners=False``, no antialiasing) so
  that its shorter side is ``short_side`` and both sides are the nearest multiples of
  ``multiple``; the prediction is resized bilinearly back to the ground truth's resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

HEADLINES = ("delta1_err", "abs_rel", "whdr")


def network_size(height: int, width: int, short_side: int | None = None, multiple: int = 32) -> tuple[int, int]:
    """The (height, width) the network sees: optionally rescaled, then rounded to ``multiple``.

    With ``short_side`` the image is first scaled (aspect ratio kept) so that its shorter side
    has that length, as in the paper's evaluation (384); each side is then rounded to the
    nearest multiple of ``multiple``, halves up (at least one multiple). The evaluator and
    ``scripts/predict.py`` both use this rule, so they feed the network the same size.

    Example:
        >>> network_size(480, 640), network_size(480, 640, short_side=384), network_size(384, 400, 384)
        ((480, 640), (384, 512), (384, 416))
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width} (HxW)")
    scale = 1.0 if not short_side else short_side / min(height, width)
    return tuple(max(multiple, int(side * scale / multiple + 0.5) * multiple) for side in (height, width))


@dataclass(frozen=True)
class Protocol:
    """How one dataset is evaluated (see the module docstring for the shared rules).

    Example:
        >>> PROTOCOLS["nyu"].input_size(480, 640)
        (384, 512)
    """

    name: str
    headline: str
    depth_cap: float | None = None
    cap_exclusive: bool = False
    min_depth: float = 0.0
    border_crop: int = 0
    garg_crop: bool = False
    short_side: int = 384
    multiple: int = 32
    geometry: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if self.headline not in HEADLINES:
            raise ValueError(f"protocol {self.name!r}: headline must be one of {HEADLINES}, got {self.headline!r}")
        if self.depth_cap is not None and not self.depth_cap > self.min_depth:
            raise ValueError(f"protocol {self.name!r}: depth_cap {self.depth_cap} must exceed "
                             f"min_depth {self.min_depth}")
        if self.short_side < 1 or self.multiple < 1:
            raise ValueError(f"protocol {self.name!r}: short_side and multiple must be >= 1")

    @property
    def ordinal(self) -> bool:
        """True for ordinal-pair ground truth (WHDR), False for depth maps."""
        return self.headline == "whdr"

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The network input size for an image of ``height`` x ``width``."""
        return network_size(height, width, self.short_side, self.multiple)

    def valid_mask(self, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixels of a (H, W) ground-truth depth that enter alignment and metrics."""
        valid = mask.bool() & (gt > self.min_depth)
        if self.depth_cap is not None:
            valid &= (gt < self.depth_cap) if self.cap_exclusive else (gt <= self.depth_cap)
        h, w = gt.shape[-2:]
        if self.border_crop:
            b = self.border_crop
            crop = torch.zeros_like(valid)
            crop[..., b:h - b, b:w - b] = True
            valid &= crop
        if self.garg_crop:
            # Garg et al.'s crop of the KITTI Eigen split, as fractions of the image size
            crop = torch.zeros_like(valid)
            crop[..., int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
            valid &= crop
        return valid

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line saying what was done, for printing next to the results."""
        if self.ordinal:
            gt = "ordinal pairs, WHDR of the raw prediction upsampled to the original image size"
        else:
            cap = "no cap" if self.depth_cap is None else f"{'<' if self.cap_exclusive else '<='} {self.depth_cap:g} m"
            crops = [f"{self.border_crop}-px border crop"] * bool(self.border_crop) + ["Garg crop"] * self.garg_crop
            gt = f"valid gt {self.min_depth:g} < d {cap}" + "".join(f", {c}" for c in crops)
        return (f"protocol {self.name}: input shorter side {self.short_side} (multiples of {self.multiple}, bilinear), "
                f"prediction upsampled bilinearly to the gt resolution; {gt}; headline {self.headline}"
                + (f"; {self.note}" if self.note else ""))


PROTOCOLS: dict[str, Protocol] = {
    "synthetic": Protocol("synthetic", "delta1_err", depth_cap=100.0, note="generated scenes, no download"),
    "nyu": Protocol("nyu", "delta1_err", depth_cap=10.0, border_crop=8,
                    note="654 official test images (splits.mat testNdxs), raw depths"),
    "tum": Protocol("tum", "delta1_err", depth_cap=10.0, note="Li et al. dynamic-human subset"),
    "kitti": Protocol("kitti", "delta1_err", depth_cap=80.0, min_depth=1e-3, garg_crop=True,
                      note="Eigen test split, annotated ground truth (paper only, not in the authors' code)"),
    "sintel": Protocol("sintel", "abs_rel", depth_cap=72.0, cap_exclusive=True,
                       note="final pass, all 1064 frames"),
    "eth3d": Protocol("eth3d", "abs_rel", depth_cap=72.0),
    "diw": Protocol("diw", "whdr", geometry=False, note="one annotated pair per image"),
    "folder": Protocol("folder", "delta1_err", note="generic RGB-D folder; no cap"),
}

# registry dataset name -> protocol name
DATASET_PROTOCOLS: dict[str, str] = {
    "synthetic": "synthetic", "nyu": "nyu", "nyu_sync": "nyu", "tum": "tum", "tum_raw": "tum",
    "kitti": "kitti", "sintel": "sintel", "eth3d": "eth3d", "diw": "diw",
    "rgbd_folder": "folder", "stereo_folder": "folder",
}


def get_protocol(name: str | Protocol, **overrides: object) -> Protocol:
    """A protocol by name (or a dataset's registry name), with fields optionally overridden.

    Example:
        >>> get_protocol("nyu_sync", short_side=64).short_side
        64
    """
    if isinstance(name, Protocol):
        protocol = name
    else:
        key = DATASET_PROTOCOLS.get(name, name)
        if key not in PROTOCOLS:
            raise KeyError(f"unknown protocol {name!r}; valid protocols: {', '.join(PROTOCOLS)} "
                           f"(or a dataset name: {', '.join(DATASET_PROTOCOLS)})")
        protocol = PROTOCOLS[key]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(protocol, **overrides) if overrides else protocol
