"""Per-image alignment and error metrics of the paper's zero-shot evaluation (§4.2).

Conventions shared by every function here:

* predictions of the LRN models are *log-disparity* (log inverse depth);
* ``mask`` selects the pixels that enter an alignment or a metric; it must select at least one
  pixel (callers skip images without valid pixels: see :mod:`svde.evaluation.evaluator`);
* medians follow :func:`torch.median`: for an even count they return the *lower* middle value;
* reductions are done in float64, so that large images do not lose precision, and the results
  come back in the prediction's dtype (metrics as Python floats).
"""

from __future__ import annotations

import math

import torch

from svde.geometry import backproject, backproject_pixels  # noqa: F401 (backproject: re-exported)

METRIC_NAMES = ("delta1_err", "delta2_err", "delta3_err", "abs_rel", "log10", "rmse")


def _check_same_shape(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(f"{what}: prediction {tuple(pred.shape)}, ground truth {tuple(gt.shape)} and mask "
                         f"{tuple(mask.shape)} must have the same shape")
    if mask.dtype != torch.bool:
        raise ValueError(f"{what}: mask must be a bool tensor, got {mask.dtype}")
    if not bool(mask.any()):
        raise ValueError(f"{what}: the mask selects no pixel (skip images without valid ground truth)")


def _valid_values(x: torch.Tensor, mask: torch.Tensor, name: str, what: str, positive: bool) -> torch.Tensor:
    """``x[mask]`` in float64, checked finite (and > 0 when ``positive``) so no NaN reaches a metric."""
    v = x[mask].double()
    bad = ~torch.isfinite(v) | (v <= 0) if positive else ~torch.isfinite(v)
    if bool(bad.any()):
        expected = "finite and > 0" if positive else "finite"
        raise ValueError(f"{what}: {int(bad.sum())} masked {name} values are not {expected} "
                         f"(first: {v[bad][0].item()!r})")
    return v


def align_median_log(pred_logdisp: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """UTS alignment: shift the predicted log-depth by the median of ``log gt - log pred`` over ``mask``.

    The predicted log-depth is ``-pred_logdisp``; the returned depth is
    ``exp(-pred_logdisp + median(log gt_depth + pred_logdisp))`` at *every* pixel (also outside the
    mask), i.e. the prediction times one positive scale. Nothing is clamped: a UTS prediction is
    judged on its scale-aligned values as they are.

    Example:
        >>> gt = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
        >>> pred = -torch.log(gt * 3)  # right up to a scale of 3
        >>> align_median_log(pred, gt, gt > 0)
        tensor([[1., 2.],
                [4., 8.]])
    """
    _check_same_shape(pred_logdisp, gt_depth, mask, "align_median_log")
    gt = _valid_values(gt_depth, mask, "ground-truth depth", "align_median_log", positive=True)
    pred = _valid_values(pred_logdisp, mask, "predicted log-disparity", "align_median_log", positive=False)
    shift = torch.median(torch.log(gt) + pred)  # log gt - log pred_depth, with log pred_depth = -pred
    return torch.exp(shift - pred_logdisp.double()).to(pred_logdisp.dtype)


def lstsq_scale_shift(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(s, t)`` minimising ``sum((s * x + t - y) ** 2)`` over 1-D tensors (closed form, float64).

    A constant ``x`` leaves the scale undetermined; then ``s = 0`` and ``t = mean(y)``, the
    solution that fits the data best with the smallest scale.

    Example:
        >>> lstsq_scale_shift(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 5.0]))
        (2.0, 1.0)
    """
    x, y = x.double(), y.double()
    xc = x - x.mean()
    var = float((xc * xc).sum())
    if var <= 1e-12 * max(1.0, float((x * x).sum())):
        return 0.0, float(y.mean())
    s = float((xc * (y - y.mean())).sum()) / var
    return s, float(y.mean()) - s * float(x.mean())


def align_lstsq_disparity(pred_disp: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor,
                          depth_cap: float) -> torch.Tensor:
    """UTSS alignment: fit scale and shift of the disparity by least squares, then invert.

    ``s, t = argmin sum_mask (s * pred_disp + t - 1 / gt_depth) ** 2``; the aligned disparity
    ``s * pred_disp + t`` is clamped to ``>= 1 / depth_cap`` (so the aligned depth never exceeds
    the cap and is never negative or infinite), then inverted to depth. This follows the
    authors' ``utss`` metrics.

    Example:
        >>> gt = torch.tensor([[1.0, 2.0], [4.0, 100.0]])
        >>> disp = 2.0 / gt + 0.5  # right up to a scale and a shift
        >>> align_lstsq_disparity(disp, gt, gt > 0, depth_cap=10.0)
        tensor([[ 1.,  2.],
                [ 4., 10.]])
    """
    if not depth_cap > 0 or not math.isfinite(depth_cap):
        raise ValueError(f"align_lstsq_disparity: depth_cap must be a finite number > 0, got {depth_cap!r}")
    _check_same_shape(pred_disp, gt_depth, mask, "align_lstsq_disparity")
    gt = _valid_values(gt_depth, mask, "ground-truth depth", "align_lstsq_disparity", positive=True)
    pred = _valid_values(pred_disp, mask, "predicted disparity", "align_lstsq_disparity", positive=False)
    s, t = lstsq_scale_shift(pred, 1.0 / gt)
    disp = (s * pred_disp.double() + t).clamp_min(1.0 / depth_cap)
    return (1.0 / disp).to(pred_disp.dtype)


def depth_metrics(pred_depth: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The standard depth errors of one image over ``mask``, as fractions.

    ``delta{k}_err`` is the share of pixels with ``max(pred / gt, gt / pred) > 1.25 ** k`` (the
    paper reports ``delta1_err`` in %); ``abs_rel = mean(|pred - gt| / gt)``;
    ``log10 = mean(|log10 pred - log10 gt|)``; ``rmse = sqrt(mean((pred - gt) ** 2))``.

    Example:
        >>> gt = torch.tensor([1.0, 2.0, 4.0, 8.0])
        >>> m = depth_metrics(torch.tensor([1.0, 2.0, 4.0, 16.0]), gt, gt > 0)
        >>> m["delta1_err"], m["abs_rel"], m["rmse"]
        (0.25, 0.25, 4.0)
    """
    _check_same_shape(pred_depth, gt_depth, mask, "depth_metrics")
    gt = _valid_values(gt_depth, mask, "ground-truth depth", "depth_metrics", positive=True)
    pred = _valid_values(pred_depth, mask, "predicted depth", "depth_metrics", positive=True)
    ratio = torch.maximum(pred / gt, gt / pred)
    out = {f"delta{k}_err": float((ratio > 1.25 ** k).double().mean()) for k in (1, 2, 3)}
    out["abs_rel"] = float(((pred - gt).abs() / gt).mean())
    out["log10"] = float((torch.log10(pred) - torch.log10(gt)).abs().mean())
    out["rmse"] = float(torch.sqrt(((pred - gt) ** 2).mean()))
    return out


def check_pairs(pairs: torch.Tensor, height: int, width: int, what: str = "pairs") -> torch.Tensor:
    """Validate ordinal pairs (K, 5) = yA, xA, yB, xB, rel and return the coordinates as int64 (K, 4)."""
    if pairs.ndim != 2 or pairs.shape[1] != 5 or pairs.shape[0] == 0:
        raise ValueError(f"{what}: expected a non-empty (K, 5) tensor of yA, xA, yB, xB, rel; got {tuple(pairs.shape)}")
    if not bool(torch.isfinite(pairs).all()):
        raise ValueError(f"{what}: pairs contain non-finite values")
    coords = pairs[:, :4]
    if not bool((coords == coords.round()).all()):
        bad = coords[coords != coords.round()][0].item()
        raise ValueError(f"{what}: pixel coordinates must be whole numbers (0-based), got {bad}")
    coords = coords.long()
    ys, xs = coords[:, [0, 2]], coords[:, [1, 3]]
    if bool((ys < 0).any() | (ys >= height).any() | (xs < 0).any() | (xs >= width).any()):
        raise ValueError(f"{what}: a pair lies outside the {width}x{height} (WxH) image; "
                         f"y range {ys.min().item()}..{ys.max().item()}, x range {xs.min().item()}..{xs.max().item()}")
    rel = pairs[:, 4]
    if not bool(((rel == 1) | (rel == -1)).all()):
        bad = rel[(rel != 1) & (rel != -1)][0].item()
        raise ValueError(f"{what}: rel must be +1 (A farther) or -1 (B farther), got {bad}")
    return coords


def whdr(pred_logdisp: torch.Tensor, pairs: torch.Tensor) -> float:
    """Weighted human disagreement rate (all weights 1): the share of wrongly ordered pairs.

    ``pairs`` is (K, 5) = yA, xA, yB, xB, rel (0-based; rel = +1 when A is farther). Since the
    prediction is log-*disparity*, "A farther" means ``pred[A] < pred[B]``: a pair is an error
    when ``(pred[B] > pred[A]) != (rel > 0)`` (ties count as "B not nearer").

    Example:
        >>> pred = torch.tensor([[0.0, 1.0]])  # pixel (0, 1) is nearer
        >>> whdr(pred, torch.tensor([[0, 0, 0, 1, 1.0], [0, 0, 0, 1, -1.0]]))
        0.5
    """
    if pred_logdisp.ndim == 3 and pred_logdisp.shape[0] == 1:
        pred_logdisp = pred_logdisp[0]
    if pred_logdisp.ndim != 2:
        raise ValueError(f"whdr: expected a (H, W) or (1, H, W) prediction, got {tuple(pred_logdisp.shape)}")
    coords = check_pairs(pairs, *pred_logdisp.shape, what="whdr")
    pred = pred_logdisp.detach()
    a = pred[coords[:, 0], coords[:, 1]]
    b = pred[coords[:, 2], coords[:, 3]]
    if not bool(torch.isfinite(a).all() & torch.isfinite(b).all()):
        raise ValueError("whdr: the prediction is not finite at an annotated pixel")
    errors = (b > a) != (pairs[:, 4].to(pred.device) > 0)
    return float(errors.double().mean())


def geometry_error(pred_depth: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor,
                   intrinsics: torch.Tensor | list[float], n_pairs: int = 10000, seed: int = 0) -> float:
    """Median relative error of 3D distances between random pairs of valid pixels.

    Both depth maps are back-projected with the same intrinsics (:mod:`svde.geometry`);
    ``n_pairs`` pairs of distinct masked pixels are drawn with a fixed ``seed`` (the same pairs for
    every model on the same image), and the result is
    ``median(|dist_pred - dist_gt| / dist_gt)``. A scale-correct prediction of the right shape
    scores 0; a disparity with a wrong shift bends planes and scores high whatever its scale.

    Example:
        >>> gt = torch.rand(8, 8) + 1
        >>> geometry_error(gt * 1.0, gt, gt > 0, [8.0, 8.0, 4.0, 4.0])
        0.0
    """
    _check_same_shape(pred_depth, gt_depth, mask, "geometry_error")
    if int(mask.sum()) < 2:
        raise ValueError("geometry_error: needs at least two valid pixels")
    _valid_values(pred_depth, mask, "predicted depth", "geometry_error", positive=True)
    _valid_values(gt_depth, mask, "ground-truth depth", "geometry_error", positive=True)
    idx = mask.reshape(-1).nonzero().squeeze(1)
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(len(idx), (n_pairs,), generator=gen)
    # a second index offset by 1..n-1 guarantees two distinct pixels per pair
    j = (i + torch.randint(1, len(idx), (n_pairs,), generator=gen)) % len(idx)
    i, j = idx[i.to(idx.device)], idx[j.to(idx.device)]
    d_pred = (_points(pred_depth, intrinsics, i) - _points(pred_depth, intrinsics, j)).norm(dim=1)
    d_gt = (_points(gt_depth, intrinsics, i) - _points(gt_depth, intrinsics, j)).norm(dim=1)
    return float(torch.median((d_pred - d_gt).abs() / d_gt))


def _points(depth: torch.Tensor, intrinsics: torch.Tensor | list[float], flat_idx: torch.Tensor) -> torch.Tensor:
    """Back-projected points (N, 3) of the pixels ``flat_idx`` only (:func:`svde.geometry.backproject_pixels`)."""
    w = depth.shape[-1]
    d = depth.reshape(-1)[flat_idx].double()
    return backproject_pixels(d, (flat_idx // w).double(), (flat_idx % w).double(), intrinsics)
