"""Zero-shot evaluation of a depth model on a dataset, following the authors' protocol.

:func:`evaluate_model` runs a model over a :class:`~svde.data.base.DepthDataset` (batched, on any
device), and :func:`evaluate_prediction` scores one prediction against one sample; both follow
a :class:`~svde.evaluation.protocols.Protocol`. Per image and per alignment mode:

* ``uts``: :func:`~svde.evaluation.metrics.align_median_log` (scale only);
* ``utss``: :func:`~svde.evaluation.metrics.align_lstsq_disparity` on ``exp(prediction)``
  (scale and shift of the disparity, for UTSS models or to compare with them);

then :func:`~svde.evaluation.metrics.depth_metrics` and, where the sample has intrinsics,
:func:`~svde.evaluation.metrics.geometry_error`. Ordinal samples (DIW) get
:func:`~svde.evaluation.metrics.whdr` of the raw prediction, which no monotonic alignment
changes, reported under each mode. Images without a valid pixel are skipped and counted,
never averaged in.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from svde.evaluation.metrics import (
    METRIC_NAMES,
    align_lstsq_disparity,
    align_median_log,
    depth_metrics,
    geometry_error,
    whdr,
)
from svde.evaluation.protocols import Protocol, get_protocol

MODES = ("uts", "utss")
PREDICTIONS = ("log_disparity", "disparity")
DEPTH_TARGETS = ("absolute", "uts")


def check_modes(modes: Iterable[str]) -> tuple[str, ...]:
    """Validate alignment mode names; returns them as a tuple."""
    modes = tuple(modes)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"alignment modes must be a non-empty subset of {MODES}, got {modes}")
    return modes


def evaluate_prediction(pred_logdisp: torch.Tensor, sample: dict[str, Any], protocol: str | Protocol,
                        modes: Sequence[str] = ("uts",), n_geometry_pairs: int = 10000,
                        prediction: str = "log_disparity") -> dict[str, Any]:
    """Score one prediction (H, W) at the sample's resolution against the sample.

    ``prediction`` says what the map holds: ``"log_disparity"`` (the LRN models) or
    ``"disparity"`` (UTSS models such as MiDaS, whose output may be <= 0 somewhere: UTS mode
    then raises, UTSS mode fits it as it is).

    Returns ``{"file", "n_valid", "skipped", "reason", <mode>: {metric: value}}``; ``skipped``
    is True (and no metric is given) when the protocol leaves no valid pixel or pair.

    Example:
        >>> gt = torch.linspace(1, 4, 64).reshape(8, 8)
        >>> s = {"target": gt[None], "mask": (gt > 0)[None], "depth_type": "absolute",
        ...      "meta": {"file": "x", "intrinsics": None}}
        >>> evaluate_prediction(-torch.log(gt * 2), s, "synthetic")["uts"]["abs_rel"] < 1e-6
        True
    """
    protocol = get_protocol(protocol)
    modes = check_modes(modes)
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    meta = sample.get("meta", {})
    file = str(meta.get("file", "?"))
    pred = pred_logdisp.reshape(pred_logdisp.shape[-2:])
    record: dict[str, Any] = {"file": file, "n_valid": 0, "skipped": False, "reason": ""}
    if not bool(torch.isfinite(pred).all()):
        raise ValueError(f"{file}: the model's prediction has non-finite values")
    target = sample["target"].reshape(sample["target"].shape[-2:]).to(pred.device)
    if pred.shape != target.shape:
        raise ValueError(f"{file}: prediction is {tuple(pred.shape)} but the ground truth is {tuple(target.shape)}")

    if protocol.ordinal:
        pairs = sample.get("pairs")
        if pairs is None or len(pairs) == 0:
            return {**record, "skipped": True, "reason": "no ordinal pairs"}
        try:
            err = whdr(pred, pairs)
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None
        return {**record, "n_valid": len(pairs), **{m: {"whdr": err} for m in modes}}

    depth_type = sample.get("depth_type", "absolute")
    if depth_type not in DEPTH_TARGETS:
        raise ValueError(f"{file}: protocol {protocol.name!r} needs depth ground truth ({' or '.join(DEPTH_TARGETS)}), "
                         f"got depth_type {depth_type!r}")
    mask = protocol.valid_mask(target, sample["mask"].reshape(target.shape).to(pred.device))
    n_valid = int(mask.sum())
    record["n_valid"] = n_valid
    if n_valid == 0:
        return {**record, "skipped": True, "reason": "no valid ground-truth pixel under the protocol"}
    intrinsics = meta.get("intrinsics")
    for mode in modes:
        if mode == "uts":
            if prediction == "disparity" and not bool((pred[mask] > 0).all()):
                raise ValueError(f"{file}: UTS mode needs a positive disparity at every valid pixel; "
                                 f"use the utss mode for a prediction known only up to a shift")
            aligned = align_median_log(pred if prediction == "log_disparity" else pred.double().log(), target, mask)
        else:
            # no cap in the protocol: clamp at the farthest valid ground truth (module docstring)
            cap = protocol.depth_cap if protocol.depth_cap is not None else float(target[mask].max())
            disp = pred.double().exp() if prediction == "log_disparity" else pred.double()
            aligned = align_lstsq_disparity(disp, target, mask, depth_cap=cap)
        result = depth_metrics(aligned, target, mask)
        if protocol.geometry and intrinsics is not None and n_valid >= 2:
            result["geometry_err"] = geometry_error(aligned, target, mask, intrinsics, n_pairs=n_geometry_pairs)
        record[mode] = result
    return record


def aggregate(records: Sequence[dict[str, Any]], modes: Sequence[str], protocol: Protocol) -> dict[str, Any]:
    """Average per-image records over the images that were not skipped (None where there are none)."""
    used = [r for r in records if not r["skipped"]]
    names = ("whdr",) if protocol.ordinal else METRIC_NAMES + ("geometry_err",)
    out: dict[str, Any] = {"n_images": len(used), "n_skipped": len(records) - len(used)}
    for mode in modes:
        agg: dict[str, float | None] = {}
        for name in names:
            values = [r[mode][name] for r in used if name in r[mode]]
            agg[name] = math.fsum(values) / len(values) if values else None
        if not protocol.ordinal:
            agg["n_geometry"] = sum(1 for r in used if "geometry_err" in r[mode])
        out[mode] = agg
    out["headline"] = {"metric": protocol.headline, **{m: out[m][protocol.headline] for m in modes}}
    return out


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (3, H, W) or (B, 3, H, W) image as the protocol prescribes."""
    batched = image if image.ndim == 4 else image[None]
    out = F.interpolate(batched, size=size, mode="bilinear", align_corners=False)
    return out if image.ndim == 4 else out[0]


def evaluate_model(model: nn.Module, dataset: Dataset, *, protocol: str | Protocol = "synthetic",
                   modes: Sequence[str] = ("uts",), batch_size: int = 1, device: str | torch.device = "cpu",
                   progress: bool = False, max_images: int | None = None, short_side: int | None = None,
                   num_workers: int = 0, n_geometry_pairs: int = 10000,
                   prediction: str = "log_disparity") -> dict[str, Any]:
    """Evaluate a depth model on a dataset; returns aggregate and per-image metrics.

    The model maps (B, 3, H, W) ImageNet-normalised images to (B, 1, H', W') log-disparity
    (``prediction="disparity"`` for UTSS models that output disparity; see
    :func:`evaluate_prediction`).

    The model is moved to ``device``, switched to eval mode for the run, and put back in the
    mode it was in. Images are resized per the protocol (``short_side`` overrides the protocol's
    384, e.g. for quick validation at low resolution); images of a batch that share an input
    size run through the model together. Predictions are upsampled to each sample's resolution.

    Returns ``{"dataset", "protocol" (a dict), "modes", "n_images" (averaged), "n_skipped",
    <mode>: {metric: mean}, "headline": {"metric", <mode>: value}, "per_image": [records]}``.

    Example:
        >>> from svde.models import build_model
        >>> from svde.data import build_dataset  # doctest: +SKIP
        >>> res = evaluate_model(build_model("mn_lrn4"), build_dataset("synthetic", split="val"),
        ...                      protocol="synthetic", short_side=64, max_images=4)  # doctest: +SKIP
        >>> res["uts"]["delta1_err"]  # doctest: +SKIP
    """
    protocol = get_protocol(protocol, short_side=short_side)
    modes = check_modes(modes)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=list)
    device = torch.device(device)
    was_training = model.training
    model.to(device)
    if was_training:  # only switch when needed: a mode switch may drop a model's inference caches
        model.eval()
    records: list[dict[str, Any]] = []
    name = getattr(dataset, "name", "") or type(dataset).__name__
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"eval {name}", disable=not progress, unit="batch"):
                groups: dict[tuple[int, int], list[int]] = {}
                for k, sample in enumerate(batch):
                    groups.setdefault(protocol.input_size(*sample["image"].shape[-2:]), []).append(k)
                preds: dict[int, torch.Tensor] = {}
                for size, idx in groups.items():
                    x = torch.stack([resize_image(batch[k]["image"], size) for k in idx]).to(device)
                    out = model(x).float()
                    if out.ndim != 4 or out.shape[:2] != (len(idx), 1):
                        raise ValueError(f"the model must return (B, 1, H, W) for a (B, 3, H, W) batch; got "
                                         f"{tuple(out.shape)} for {tuple(x.shape)}")
                    for j, k in enumerate(idx):
                        preds[k] = F.interpolate(out[j:j + 1], size=tuple(batch[k]["target"].shape[-2:]),
                                                 mode="bilinear", align_corners=False)[0, 0]
                for k, sample in enumerate(batch):
                    records.append(evaluate_prediction(preds[k], sample, protocol, modes, n_geometry_pairs,
                                                       prediction))
    finally:
        if was_training:
            model.train()
    return {"dataset": name, "protocol": protocol.to_dict(), "modes": list(modes), "prediction": prediction,
            **aggregate(records, modes, protocol), "per_image": records}
