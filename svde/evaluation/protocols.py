"""Each evaluation dataset's protocol, as one explicit table (:data:`PROTOCOLS`).

The evaluator prints the protocol it used next to the results and stores it in the JSON, so a
number can always be traced to exactly what was done. Whose protocol each row is:

================  =============================================================================
dataset           protocol and source
================  =============================================================================
nyu               authors: ``NYUDataset`` (8-px crop of image *and* depth, cap 10 m)
tum               authors: ``TUMDataset`` (cap 10 m)
sintel            authors: ``SintelDataset`` (cap 72 m)
eth3d             authors: ``ETH3DDataset`` (cap 72 m)
diw               authors: ``DIW`` (``datasets/diw_dataset_eval.py``), WHDR
kitti             the usual Eigen split with Garg's crop, ``1e-3 < d < 80`` (nianticlabs/monodepth2
                  ``evaluate_depth.py``); not in the authors' code. Alignment as for the others.
synthetic/folder  svde's own (generated scenes; generic RGB-D folders)
================  =============================================================================

"authors" is SamsungLabs/geometry-preserving-de: ``datasets/validation_datasets.py`` (the
datasets, ``BaseDataset.get_mask`` and ``get_size``), ``eval.py`` (the ``smallest_equal``
strategy, one pass per mode), ``metrics/logdisp_metrics.py`` (UTS) and
``metrics/disp_metrics.py`` (UTSS). Their steps, which this table and
:mod:`svde.evaluation.evaluator` follow in this order:

1. **Crop** (NYU): image, depth and mask are cut to ``[8:-8, 8:-8]`` before anything else, so the
   network sees the cropped frame and the metric is computed at the cropped resolution
   (:meth:`Protocol.crop_sample`; intrinsics shift by the crop).
2. **Valid ground truth** (``get_mask``): ``depth > 1e-8`` (``min_depth``) and
   ``depth < cap`` -- the cap is *exclusive* for every dataset (``cap_exclusive``; ``depth >= cap``
   is invalid). KITTI adds Garg's crop as a mask (its network sees the whole frame).
3. **Input size** (``get_size``, :func:`network_size`): the shorter side becomes 384, the longer
   one keeps the aspect ratio, and each is rounded with Python's ``round(x / 32) * 32`` (halves to
   even: 480x500 -> 384x384). The image is resized bilinearly (``cv2.INTER_LINEAR``, i.e.
   half-pixel centres, no antialiasing).
4. **Upsampling** to the ground truth's resolution, bilinear (``align_corners=False``), in the
   mode's domain: UTS upsamples the network's log-disparity; UTSS exponentiates first and
   upsamples the *disparity* (``eval.py`` passes ``pred.exp()`` to the UTSS metrics).
5. **10-pixel rule**: an image with 10 or fewer valid pixels is skipped (``numel() > 10``) and
   counted as skipped, never averaged in. DIW images are never skipped.
6. **Alignment**: UTS shifts log-depth by the median of ``log gt - log pred`` (no clamping);
   UTSS fits scale and shift of the disparity by least squares, clamps the aligned disparity to
   ``>= 1 / cap`` and inverts it. Where a protocol has no cap (``folder``), UTSS clamps at the
   image's farthest valid ground-truth depth.
7. **Metrics** per image, then the mean over the images evaluated: ``delta1_err`` (share with
   ``max(p/g, g/p) > 1.25``), ``abs_rel``; DIW: WHDR of the upsampled map (``pred[B] > pred[A]``
   against the annotation), in both modes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from svde.errors import UnknownName, unknown_name
from svde.preprocess import network_size  # re-exported: the one input-size rule

HEADLINES = ("delta1_err", "abs_rel", "whdr")
AUTHORS = "SamsungLabs/geometry-preserving-de"
AUTHORS_DATASETS = f"{AUTHORS} datasets/validation_datasets.py"
# an image needs more than this many valid pixels to be evaluated (authors: ``numel() > 10``)
MIN_VALID_PIXELS = 10




@dataclass(frozen=True)
class Protocol:
    """How one dataset is evaluated (see the module docstring for the shared rules and order).

    ``border_crop`` cuts image, depth and mask before resizing (:meth:`crop_sample`);
    ``garg_crop`` is a mask on the ground truth only. ``source`` names whose protocol it is.

    Example:
        >>> PROTOCOLS["nyu"].input_size(464, 624)
        (384, 512)
    """

    name: str
    headline: str
    depth_cap: float | None = None
    cap_exclusive: bool = True
    min_depth: float = 0.0
    border_crop: int = 0
    garg_crop: bool = False
    short_side: int = 384
    multiple: int = 32
    geometry: bool = True
    note: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.headline not in HEADLINES:
            raise ValueError(f"protocol {self.name!r}: headline must be one of {HEADLINES}, got {self.headline!r}")
        if self.depth_cap is not None and not self.depth_cap > self.min_depth:
            raise ValueError(f"protocol {self.name!r}: depth_cap {self.depth_cap} must exceed "
                             f"min_depth {self.min_depth}")
        if self.short_side < 1 or self.multiple < 1:
            raise ValueError(f"protocol {self.name!r}: short_side and multiple must be >= 1")
        if self.border_crop < 0:
            raise ValueError(f"protocol {self.name!r}: border_crop must be >= 0, got {self.border_crop}")

    @property
    def ordinal(self) -> bool:
        """True for ordinal-pair ground truth (WHDR), False for depth maps."""
        return self.headline == "whdr"

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The network input size for an (already cropped) image of ``height`` x ``width``."""
        return network_size(height, width, self.short_side, self.multiple)

    def crop_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The sample cut to ``[b:-b, b:-b]`` (image, target, mask; intrinsics shifted by ``b``).

        This is the authors' ``NYUDataset.getitem`` order: crop first, then resize the image for
        the network, and score at the cropped resolution. Without a crop the sample is returned
        as it is. Ordinal pairs are not moved (no ordinal protocol crops).

        Example:
            >>> s = {"image": torch.zeros(3, 20, 30), "target": torch.ones(1, 20, 30),
            ...      "mask": torch.ones(1, 20, 30, dtype=torch.bool), "meta": {"intrinsics": [9., 9., 15., 10.]}}
            >>> c = PROTOCOLS["nyu"].crop_sample(s)
            >>> tuple(c["image"].shape), c["meta"]["intrinsics"].tolist()
            ((3, 4, 14), [9.0, 9.0, 7.0, 2.0])
        """
        b = self.border_crop
        if not b:
            return sample
        h, w = sample["target"].shape[-2:]
        if h <= 2 * b or w <= 2 * b:
            raise ValueError(f"{sample.get('meta', {}).get('file', '?')}: a {w}x{h} (WxH) image is too small "
                             f"for protocol {self.name!r}'s {b}-px border crop")
        out = dict(sample)
        for key in ("image", "target", "mask"):
            if key in sample and sample[key] is not None:
                out[key] = sample[key][..., b:h - b, b:w - b]
        meta = dict(sample.get("meta", {}))
        if meta.get("intrinsics") is not None:
            k = torch.as_tensor(meta["intrinsics"], dtype=torch.float64).flatten().clone()
            k[2:] -= b
            meta["intrinsics"] = k
        out["meta"] = meta
        return out

    def valid_mask(self, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixels of a (H, W) ground-truth depth (after :meth:`crop_sample`) that enter alignment and metrics."""
        valid = mask.bool() & (gt > self.min_depth)
        if self.depth_cap is not None:
            valid &= (gt < self.depth_cap) if self.cap_exclusive else (gt <= self.depth_cap)
        h, w = gt.shape[-2:]
        if self.garg_crop:
            # Garg et al.'s crop of the KITTI Eigen split, as fractions of the image size
            # (nianticlabs/monodepth2 evaluate_depth.py, truncated to int)
            crop = torch.zeros_like(valid)
            crop[..., int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
            valid &= crop
        return valid

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line saying what was done, for printing next to the results."""
        crop = f"{self.border_crop}-px border crop of image and depth, then " if self.border_crop else ""
        if self.ordinal:
            gt = "ordinal pairs, WHDR of the prediction upsampled to the original image size"
        else:
            cap = "no cap" if self.depth_cap is None else f"{'<' if self.cap_exclusive else '<='} {self.depth_cap:g} m"
            gt = (f"valid gt {self.min_depth:g} < d {cap}" + (", Garg crop" if self.garg_crop else "")
                  + f", images with <= {MIN_VALID_PIXELS} valid pixels skipped")
        return (f"protocol {self.name}: {crop}input shorter side {self.short_side} (round to multiples of "
                f"{self.multiple}, bilinear), prediction upsampled bilinearly to the gt resolution "
                f"(UTS: log-disparity, UTSS: disparity); {gt}; headline {self.headline}"
                + (f"; {self.note}" if self.note else "") + (f" [{self.source}]" if self.source else ""))


PROTOCOLS: dict[str, Protocol] = {
    "synthetic": Protocol("synthetic", "delta1_err", depth_cap=100.0, note="generated scenes, no download",
                          source="svde"),
    "nyu": Protocol("nyu", "delta1_err", depth_cap=10.0, min_depth=1e-8, border_crop=8,
                    note="the official test split (splits.mat testNdxs; 654 images in the release), raw depths",
                    source=f"authors: {AUTHORS_DATASETS} NYUDataset"),
    "tum": Protocol("tum", "delta1_err", depth_cap=10.0, min_depth=1e-8, note="Li et al. dynamic-human subset",
                    source=f"authors: {AUTHORS_DATASETS} TUMDataset"),
    "kitti": Protocol("kitti", "delta1_err", depth_cap=80.0, min_depth=1e-3, garg_crop=True,
                      note="Eigen test split, annotated ground truth (paper only, not in the authors' code)",
                      source="usual Eigen/Garg: nianticlabs/monodepth2 evaluate_depth.py"),
    "sintel": Protocol("sintel", "abs_rel", depth_cap=72.0, min_depth=1e-8, note="final pass, all 1064 frames",
                       source=f"authors: {AUTHORS_DATASETS} SintelDataset"),
    "eth3d": Protocol("eth3d", "abs_rel", depth_cap=72.0, min_depth=1e-8,
                      source=f"authors: {AUTHORS_DATASETS} ETH3DDataset"),
    "diw": Protocol("diw", "whdr", geometry=False, note="one annotated pair per image",
                    source=f"authors: {AUTHORS} datasets/diw_dataset_eval.py DIW"),
    "folder": Protocol("folder", "delta1_err", note="generic RGB-D folder; no cap", source="svde"),
}

# registry dataset name -> protocol name
DATASET_PROTOCOLS: dict[str, str] = {
    "synthetic": "synthetic", "nyu": "nyu", "nyu_sync": "nyu", "tum": "tum", "tum_raw": "tum",
    "kitti": "kitti", "sintel": "sintel", "eth3d": "eth3d", "diw": "diw",
    "rgbd_folder": "folder", "stereo_folder": "folder",
}


def protocol_name(name: str) -> str:
    """The protocol that ``name`` (a protocol's name, or a dataset's registry name:
    :data:`DATASET_PROTOCOLS`) stands for; an unknown name is an :class:`~svde.errors.UnknownName`.
    The one resolver: the evaluation, its dataset entries and the training config all use it.

    Example:
        >>> protocol_name("nyu_sync"), protocol_name("folder")
        ('nyu', 'folder')
    """
    key = DATASET_PROTOCOLS.get(name, name)
    if key not in PROTOCOLS:
        raise UnknownName(f"{unknown_name('protocol', name, PROTOCOLS)} (or a dataset name: "
                          f"{', '.join(DATASET_PROTOCOLS)})")
    return key


def get_protocol(name: str | Protocol, **overrides: object) -> Protocol:
    """A protocol by name (or a dataset's registry name), with fields optionally overridden.

    Example:
        >>> get_protocol("nyu_sync", short_side=64).short_side
        64
    """
    if isinstance(name, Protocol):
        protocol = name
    else:
        protocol = PROTOCOLS[protocol_name(name)]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(protocol, **overrides) if overrides else protocol
