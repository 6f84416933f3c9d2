"""Zero-shot evaluation of a depth model on a dataset, following the authors' protocol.

:func:`evaluate_model` runs a model over a :class:`~svde.data.base.DepthDataset` (batched, on any
device), and :func:`evaluate_prediction` scores one network output against one sample; both
follow a :class:`~svde.evaluation.protocols.Protocol`, step for step as the authors'
``eval.py`` (SamsungLabs/geometry-preserving-de; the steps and their sources are listed in
:mod:`svde.evaluation.protocols`):

1. :meth:`~svde.evaluation.protocols.Protocol.crop_sample` (NYU: image and depth ``[8:-8, 8:-8]``);
2. the image is resized to :meth:`~svde.evaluation.protocols.Protocol.input_size` and run;
3. per mode the output is upsampled to the (cropped) ground truth, bilinearly, in the mode's
   domain (:func:`upsample`): UTS the network's output as it is (log-disparity), UTSS the
   disparity ``exp(output)`` (``metrics/disp_metrics.py`` receives ``pred.exp()``);
4. valid pixels (:meth:`~svde.evaluation.protocols.Protocol.valid_mask`: exclusive cap); an image
   with at most :data:`~svde.evaluation.protocols.MIN_VALID_PIXELS` valid pixels is skipped and
   counted in ``n_skipped``, never averaged in;
5. alignment -- UTS :func:`~svde.evaluation.metrics.align_median_log` (scale only, no clamping),
   UTSS :func:`~svde.evaluation.metrics.align_lstsq_disparity` (scale and shift of the disparity,
   clamped at the cap) -- then :func:`~svde.evaluation.metrics.depth_metrics` and, where the
   sample has intrinsics, :func:`~svde.evaluation.metrics.geometry_error` (svde's addition);
6. ordinal samples (DIW) get :func:`~svde.evaluation.metrics.whdr` of the upsampled map of each
   mode, as the authors' ``whdr`` and ``utss_whdr``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from svde.data.base import DataError, describe_record, worker_error
from svde.errors import RunFailed, SvdeError
from svde.evaluation.metrics import (
    METRIC_NAMES,
    align_lstsq_disparity,
    align_median_log,
    depth_metrics,
    geometry_error,
    whdr,
)
from svde.evaluation.protocols import MIN_VALID_PIXELS, Protocol, get_protocol
from svde.models.fast import for_inference
# The authors resize the normalised float image with cv2.resize(..., INTER_LINEAR)
# (BaseDataset.validation_resize): half-pixel centres, no antialiasing, which is what
# svde.preprocess.resize_image computes; prediction uses the same function.
from svde.preprocess import resize_image
from svde.types import SCALE_INVARIANT, DepthType

# Alignment modes, named by what the prediction is taken to be: UTS depth (fit a scale) or UTSS
# disparity (fit a scale and a shift).
MODES = (DepthType.UTS.value, DepthType.UTSS.value)
PREDICTIONS = ("log_disparity", "disparity")
DEPTH_TARGETS = tuple(t.value for t in SCALE_INVARIANT)  # targets that are depth (else disparity)
SKIP_RULE = (f"images with <= {MIN_VALID_PIXELS} valid ground-truth pixels are skipped, counted in n_skipped "
             "and not averaged (SamsungLabs/geometry-preserving-de metrics/logdisp_metrics.py)")
SKIP_RULE_ORDINAL = "images without an ordinal pair are skipped, counted in n_skipped and not averaged"


class PredictionError(RunFailed, ValueError):
    """The model's prediction cannot be scored: non-finite values, or depths beyond what its
    alignment can represent (broken or diverged weights). One ``error:`` line, exit status 1."""


class Unreadable(NamedTuple):
    """A sample the dataset could not read (:class:`~svde.data.base.DataError`), in place of the sample."""

    index: int
    file: str
    error: str


class _Tolerant(Dataset):
    """``dataset`` with an unreadable sample returned as an :class:`Unreadable` instead of raised (so
    that it also crosses DataLoader worker processes as a value)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[i]
        except DataError as exc:
            return Unreadable(i, sample_file(self.dataset, i), str(exc))


def sample_file(dataset: Dataset, i: int) -> str:
    """The file(s) of sample ``i`` of ``dataset`` (through subsets), for messages; ``#i`` if unknown."""
    while isinstance(dataset, Subset):
        dataset, i = dataset.dataset, dataset.indices[i]
    records = getattr(dataset, "records", None)
    return describe_record(records[i]) if isinstance(records, list) and 0 <= i < len(records) else f"#{i}"


def _batches(loader: DataLoader) -> Iterator[list[Any]]:
    """``loader``'s batches; a dataset's error raised in a worker process is shown as its own one line."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except SvdeError as exc:
            raise worker_error(exc) from None
        yield batch


def check_modes(modes: Iterable[str]) -> tuple[str, ...]:
    """Validate alignment mode names; returns them as a tuple of plain names."""
    modes = tuple(m.value if isinstance(m, DepthType) else m for m in modes)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"alignment modes must be a non-empty subset of {MODES}, got {modes}")
    return modes


def upsample(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of a (H, W) map to ``size``, as the authors'
    metrics (``F.interpolate(..., mode="bilinear")``); the same size returns the map unchanged."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def evaluate_prediction(pred_logdisp: torch.Tensor, sample: dict[str, Any], protocol: str | Protocol,
                        modes: Sequence[str] = (DepthType.UTS,), n_geometry_pairs: int = 10000,
                        prediction: str = "log_disparity") -> dict[str, Any]:
    """Score one network output (H', W') against one dataset sample.

    ``sample`` is the dataset's sample as it is: the protocol's crop is applied here. The
    prediction is the network's output for the *cropped* image at any resolution (the network's,
    or already the cropped ground truth's); each mode upsamples it to the cropped ground truth in
    its own domain (module docstring). ``prediction`` says what the map holds:
    ``"log_disparity"`` (the LRN models) or ``"disparity"`` (UTSS models such as MiDaS, whose
    output may be <= 0 somewhere: UTS mode then raises, UTSS mode fits it as it is; both modes
    upsample the disparity).

    Returns ``{"file", "n_valid", "skipped", "reason", <mode>: {metric: value}}``; ``skipped``
    is True (and no metric is given) when the protocol leaves ``MIN_VALID_PIXELS`` or fewer valid
    pixels, or no ordinal pair.

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
    if pred_logdisp.ndim < 2 or pred_logdisp[..., 0, 0].numel() != 1:
        raise ValueError(f"{file}: expected a (H, W) prediction (or with leading 1s), got {tuple(pred_logdisp.shape)}")
    pred = pred_logdisp.reshape(pred_logdisp.shape[-2:]).float()
    record: dict[str, Any] = {"file": file, "n_valid": 0, "skipped": False, "reason": ""}
    finite = torch.isfinite(pred)
    if not bool(finite.all()):
        raise PredictionError(f"{file}: the model's prediction has {int((~finite).sum())} non-finite values of "
                              f"{pred.numel()}: its weights are probably broken")
    sample = protocol.crop_sample(sample)
    target = sample["target"].reshape(sample["target"].shape[-2:]).to(pred.device)
    size = tuple(target.shape)

    def mode_map(mode: str) -> torch.Tensor:
        # UTS: the output as it is; UTSS: the disparity (the authors' ``pred.exp()``)
        if mode == DepthType.UTSS and prediction == "log_disparity":
            return upsample(pred.double().exp(), size)
        return upsample(pred.double(), size)

    if protocol.ordinal:
        pairs = sample.get("pairs")
        if pairs is None or len(pairs) == 0:
            return {**record, "skipped": True, "reason": "no ordinal pairs"}
        try:
            return {**record, "n_valid": len(pairs), **{m: {"whdr": whdr(mode_map(m), pairs)} for m in modes}}
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None

    depth_type = sample.get("depth_type", DepthType.ABSOLUTE)
    if depth_type not in DEPTH_TARGETS:
        raise ValueError(f"{file}: protocol {protocol.name!r} needs depth ground truth ({' or '.join(DEPTH_TARGETS)}), "
                         f"got depth_type {depth_type!r}")
    mask = protocol.valid_mask(target, sample["mask"].reshape(target.shape).to(pred.device))
    n_valid = int(mask.sum())
    record["n_valid"] = n_valid
    if n_valid <= MIN_VALID_PIXELS:
        return {**record, "skipped": True,
                "reason": f"{n_valid} valid ground-truth pixels under the protocol (needs > {MIN_VALID_PIXELS})"}
    intrinsics = sample.get("meta", {}).get("intrinsics")
    for mode in modes:
        up = mode_map(mode)
        if mode == DepthType.UTS:
            if prediction == "disparity":
                if not bool((up[mask] > 0).all()):
                    raise ValueError(f"{file}: UTS mode needs a positive disparity at every valid pixel; "
                                     f"use the utss mode for a prediction known only up to a shift")
                up = up.clamp_min(torch.finfo(up.dtype).tiny).log()
            aligned = align_median_log(up, target.double(), mask)
        else:
            # no cap in the protocol: clamp at the farthest valid ground truth (protocols docstring)
            cap = protocol.depth_cap if protocol.depth_cap is not None else float(target[mask].max())
            aligned = align_lstsq_disparity(up, target.double(), mask, depth_cap=cap)
        scored = aligned[mask]
        if not bool((torch.isfinite(scored) & (scored > 0)).all()):
            raise PredictionError(f"{file}: the model's prediction (log-disparity {float(pred.min()):.4g} to "
                                  f"{float(pred.max()):.4g}) gives depths that are not finite and > 0 after "
                                  f"{mode} alignment: its weights are probably broken (diverged)")
        result = depth_metrics(aligned, target.double(), mask)
        if protocol.geometry and intrinsics is not None:
            result["geometry_err"] = geometry_error(aligned, target.double(), mask, intrinsics, n_pairs=n_geometry_pairs)
        record[mode] = result
    return record


def aggregate(records: Sequence[dict[str, Any]], modes: Sequence[str], protocol: Protocol) -> dict[str, Any]:
    """Average per-image records over the images that were not skipped (None where there are none)."""
    used = [r for r in records if not r["skipped"]]
    unreadable = [r for r in records if r.get("unreadable")]
    names = ("whdr",) if protocol.ordinal else METRIC_NAMES + ("geometry_err",)
    out: dict[str, Any] = {"n_images": len(used), "n_skipped": len(records) - len(used) - len(unreadable),
                           "skip_rule": SKIP_RULE_ORDINAL if protocol.ordinal else SKIP_RULE}
    if unreadable:
        out["n_unreadable"] = len(unreadable)
        out["unreadable"] = [r["error"] for r in unreadable]  # each names its file and what is wrong
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


def evaluate_model(model: nn.Module, dataset: Dataset, *, protocol: str | Protocol = "synthetic",
                   modes: Sequence[str] = (DepthType.UTS,), batch_size: int = 1, device: str | torch.device = "cpu",
                   progress: bool = False, max_images: int | None = None, short_side: int | None = None,
                   num_workers: int = 0, n_geometry_pairs: int = 10000,
                   prediction: str = "log_disparity", strict: bool = True) -> dict[str, Any]:
    """Evaluate a depth model on a dataset; returns aggregate and per-image metrics.

    The model maps (B, 3, H, W) ImageNet-normalised images to (B, 1, H', W') log-disparity
    (``prediction="disparity"`` for UTSS models that output disparity; see
    :func:`evaluate_prediction`).

    The model is moved to ``device``, switched to eval mode for the run, and put back in the
    mode it was in. Images are cropped and resized per the protocol (``short_side`` overrides the
    protocol's 384, e.g. for quick validation at low resolution); images of a batch that share an
    input size run through the model together. Each output is upsampled to its sample's (cropped)
    resolution in each mode's domain by :func:`evaluate_prediction`.

    ``strict``: a sample the dataset cannot read (:class:`~svde.data.base.DataError`, e.g. a
    corrupt image) stops the evaluation. Otherwise it is passed over: its per-image record says
    ``"unreadable": True`` and why (``error``), and the result counts it in ``n_unreadable`` and
    lists the errors, each naming its file, in ``unreadable`` (both keys only when there is one).

    Returns ``{"dataset", "protocol" (a dict), "modes", "n_images" (evaluated and averaged),
    "n_skipped", "skip_rule", <mode>: {metric: mean}, "headline": {"metric", <mode>: value},
    "per_image": [records]}``; ``n_images + n_skipped (+ n_unreadable)`` is the number of images run.

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
    loader = DataLoader(Subset(dataset if strict else _Tolerant(dataset), range(n)), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=list)
    device = torch.device(device)
    was_training = model.training
    model.to(device)
    # A DepthModel runs as its frozen BatchNorm-folded snapshot (the model itself is untouched);
    # any other module runs itself in eval mode and gets its mode back afterwards.
    net = for_inference(model)
    records: list[dict[str, Any]] = []
    name = getattr(dataset, "name", "") or type(dataset).__name__
    try:
        with torch.no_grad():
            for batch in tqdm(_batches(loader), desc=f"eval {name}", disable=not progress, unit="batch",
                              total=len(loader)):
                records += [{"file": u.file, "n_valid": 0, "skipped": True, "reason": f"unreadable: {u.error}",
                             "unreadable": True, "error": u.error} for u in batch if isinstance(u, Unreadable)]
                batch = [sample for sample in batch if not isinstance(sample, Unreadable)]
                # the authors' order: crop (NYU), then resize the cropped image for the network
                images = [protocol.crop_sample(sample)["image"] for sample in batch]
                groups: dict[tuple[int, int], list[int]] = {}
                for k, image in enumerate(images):
                    groups.setdefault(protocol.input_size(*image.shape[-2:]), []).append(k)
                preds: dict[int, torch.Tensor] = {}
                for size, idx in groups.items():
                    x = torch.stack([resize_image(images[k], size) for k in idx]).to(device)
                    out = net(x).float()
                    if out.ndim != 4 or out.shape[:2] != (len(idx), 1):
                        raise ValueError(f"the model must return (B, 1, H, W) for a (B, 3, H, W) batch; got "
                                         f"{tuple(out.shape)} for {tuple(x.shape)}")
                    for j, k in enumerate(idx):
                        preds[k] = out[j, 0]  # upsampled per mode, in its domain, by evaluate_prediction
                for k, sample in enumerate(batch):
                    records.append(evaluate_prediction(preds[k], sample, protocol, modes, n_geometry_pairs,
                                                       prediction))
    finally:
        if was_training:
            model.train()
    return {"dataset": name, "protocol": protocol.to_dict(), "modes": list(modes), "prediction": prediction,
            **aggregate(records, modes, protocol), "per_image": records}
