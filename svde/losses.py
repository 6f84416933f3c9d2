"""The paper's pairwise L1 losses (§3.2): SI (eq. 1-2), SSI (eq. 3-4) and their mixture (eq. 5).

All three reduce to one primitive: for residuals ``r_i`` over an image's ``N`` valid pixels,

    (1/N²) Σ_{i,j} |r_i - r_j|  =  (2/N²) Σ_k r_(k) (2k - N - 1),     k = 1..N,

where ``r_(k)`` are the residuals sorted ascending (the paper's eq. 2, rearranged). One
``torch.sort`` over the flattened batch ``(B, H*W)`` serves every image: masked-out entries are
replaced by a sentinel larger than any valid residual, so each row's first ``N_b`` sorted values
are exactly its valid ones and the coefficient uses that row's own ``N_b`` (0 past it).
Gradients flow through the sort (a permutation): with ties this picks one ordering, which gives a
valid subgradient of the L1 terms and the same loss value.

Numerics (why the code does more than the formula): everything runs in float32 at least
(float64 stays float64), whatever the input dtype or autocast region. Residuals are centred and
divided by their largest magnitude before the weighted sum (``L(r) = s·L((r - c)/s)`` exactly,
so the detached ``c`` and ``s`` change neither value nor gradient) so that huge values cannot
overflow and a large common offset cannot cancel catastrophically. The SSI standardisation
first divides by the detached max |x| (it is scale invariant) for the same reason, and an image
whose values are constant (to within float rounding) is handled explicitly instead of dividing
by a zero standard deviation; see :func:`ssi_loss`.

Errors: wrong types/shapes raise before any work. NaN/inf are looked for only when the result
is not finite (no extra passes over the data on the normal path); then the error names the
samples: ``ValueError`` for a bad target, ``FloatingPointError`` for a bad prediction.

Batch reduction: each loss is the mean of the per-image losses over the images it applies to
(at least 2 valid pixels; for SSI also a non-constant target). With no such image the loss is an
exact 0 that is still connected to ``pred``, so ``backward()`` works and gives zero gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from svde.types import DENSE, SCALE_INVARIANT, DepthType

# Per-sample depth types each term applies to (see the sample contract, svde.data.base).
SI_TYPES = tuple(t.value for t in SCALE_INVARIANT)  # eq. 5: L_SI applies to these
SSI_TYPES = tuple(t.value for t in DENSE)  # L_SSI applies to every dense type
# How eq. 5's SI term is averaged over a batch (mixture_loss): over its own samples, or over all.
SI_REDUCTIONS = ("si_samples", "batch")

# Placed in masked-out slots before sorting: residuals are scaled into [-1, 1] first, so any
# value above 1 sorts after every valid residual (finite, so no inf * 0 anywhere).
_SENTINEL = 4.0
# A row whose centred spread is at most this many machine epsilons of its magnitude is constant:
# the "spread" is float rounding, and normalising it would amplify noise by ~1/eps.
_CONSTANT_EPS_MULT = 8.0


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 if any input is float64."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_inputs(pred: Tensor, target: Tensor, mask: Tensor, fn: str) -> None:
    """Types and shapes (no pass over the data); raises naming the argument."""
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating-point tensor, got "
                            f"{type(t).__name__ if not isinstance(t, Tensor) else t.dtype}")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{fn}: mask must be a bool tensor (True = valid pixel), got "
                        f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
    if pred.ndim < 2 or pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(f"{fn}: pred, target and mask must share one shape (B, 1, H, W), got "
                         f"pred {tuple(pred.shape)}, target {tuple(target.shape)}, mask {tuple(mask.shape)}")


def _finite_or_raise(loss: Tensor, pred: Tensor, target: Tensor, mask: Tensor, fn: str) -> Tensor:
    """Return ``loss`` if finite, else raise naming the samples with NaN/inf valid values.

    Checked on the result (one scalar sync) rather than on the inputs (several full passes):
    a NaN/inf at a valid pixel of a contributing image always makes the loss non-finite.
    """
    if bool(torch.isfinite(loss)):
        return loss
    def rows(bad: Tensor) -> list[int]:
        return bad.flatten(1).any(1).nonzero().flatten().tolist()

    bad_target = rows(mask & ~torch.isfinite(target))
    if bad_target:
        raise ValueError(f"{fn}: target has NaN/inf at valid (mask=True) pixels of samples {bad_target}; "
                         "invalid pixels must be masked out")
    bad_pred = rows(mask & ~torch.isfinite(pred))
    if bad_pred:
        raise FloatingPointError(f"{fn}: pred has NaN/inf at valid pixels of samples {bad_pred} "
                                 "(diverged model or overflow in its output)")
    raise FloatingPointError(f"{fn}: the loss is {loss.item()} although all valid inputs are finite "
                             "(overflow of values near the float limit?)")


def _float_math(t: Tensor) -> torch.autocast:
    """Autocast off for the loss internals: it would run reductions like matmul in 16 bits."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _absmax_rows(x: Tensor) -> Tensor:
    """Row max of |x| (B, 1) in one pass; rows are expected to be 0 outside their mask."""
    # amax + amin: two cheap reductions beat torch.aminmax on CPU (measured ~8x).
    return torch.maximum(-x.amin(1, keepdim=True), x.amax(1, keepdim=True))


def _pairwise_l1_rows(r: Tensor, mask: Tensor, n: Tensor) -> Tensor:
    """Per-row (1/N²) Σ_{i,j valid} |r_i - r_j| by one sort; returns losses (B,).

    ``r`` (B, M) floating and 0 where ``mask`` (B, M, bool) is False (in rows with N >= 1;
    an all-masked row may hold anything finite or not: it gets 0). ``n`` (B, 1): the rows'
    valid counts, in r's dtype. Rows with N < 2 get 0.
    """
    # Centre and scale into [-1, 1] (exact rewrite, see module docstring): detached constants.
    # The masked zeros may widen [min, max]; any s >= max|r - c| serves, it only conditions.
    rd = r.detach()
    c = rd.sum(1, keepdim=True) / n.clamp(min=1)
    s = torch.maximum(rd.amax(1, keepdim=True) - c, c - rd.amin(1, keepdim=True))
    s = torch.where(s > 0, s, 1.0)
    key = torch.where(mask, (r - c) / s, _SENTINEL)
    ordered, _ = torch.sort(key, dim=1)
    # Coefficient 2k - N - 1 for 1-based k (= 2k - N + 1 0-based) up to each row's N, 0 after.
    k = torch.arange(r.shape[1], device=r.device, dtype=r.dtype)
    coeff = torch.where(k < n, (2.0 * k + 1.0) - n, 0.0)
    total = (ordered * coeff).sum(1)
    return 2.0 * s.squeeze(1) * total / n.squeeze(1).clamp(min=1) ** 2


def _standardize_rows(x: Tensor, mask: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row (x - mean) / std (population std) over ``mask``; returns (z, constant (B,)).

    ``x`` must be 0 where ``mask`` is False; so is ``z``. ``n`` (B, 1): valid counts.
    Conditioning: x is first divided by its detached max |x| (z is scale invariant), so huge
    or tiny values stay O(1) and the sums cannot overflow. A row whose std is then at most
    8 eps (constant to float rounding, incl. N < 2) is flagged constant and gets
    z = x/max|x| - mean (~0, finite, bounded gradient) instead of an amplified 0/0.
    The mean is detached: exact for these losses, whose value ignores any shift of z, and
    (x - mean) sums to 0, so the variance's gradient does not involve the mean either.
    """
    n = n.clamp(min=1)
    s1 = _absmax_rows(x.detach())
    x1 = x / torch.where(s1 > 0, s1, 1.0)
    d = torch.where(mask, x1 - x1.detach().sum(1, keepdim=True) / n, 0)
    var = (d * d).sum(1, keepdim=True) / n
    constant = var <= (_CONSTANT_EPS_MULT * torch.finfo(x.dtype).eps) ** 2
    # Replace var before rsqrt (not after) so a constant row never back-propagates 0/0.
    return d * torch.where(constant, 1.0, var).rsqrt(), constant.squeeze(1)


def _batch_mean(losses: Tensor, use: Tensor) -> Tensor:
    """Mean of ``losses`` over rows where ``use``; an exact, graph-connected 0 if none."""
    return torch.where(use, losses, 0).sum() / use.sum().clamp(min=1)


def _flat(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, ...) -> (B, M) in the compute dtype."""
    dtype = _compute_dtype(pred, target)
    return pred.flatten(1).to(dtype), target.flatten(1).to(dtype), mask.flatten(1)


def _si_core(p: Tensor, t: Tensor, m: Tensor) -> Tensor:
    """SI on flat (B, M) inputs; masked entries may hold anything."""
    n = m.sum(1, keepdim=True).to(p.dtype)
    use = n >= 2
    # Images that cannot contribute are masked out entirely, so nothing from them (even a
    # NaN at a lone valid pixel) reaches the graph.
    m = m & use
    losses = _pairwise_l1_rows(torch.where(m, p - t, 0), m, torch.where(use, n, 0))
    return _batch_mean(losses, use.squeeze(1))


def _ssi_core(p: Tensor, t: Tensor, m: Tensor) -> Tensor:
    """SSI on flat (B, M) inputs; masked entries may hold anything."""
    n = m.sum(1, keepdim=True).to(p.dtype)
    zt, t_const = _standardize_rows(torch.where(m, t, 0), m, n)
    # As in _si_core, plus images whose target is constant (nothing to match).
    use = (n >= 2) & ~t_const.unsqueeze(1)
    m = m & use
    n = torch.where(use, n, 0)
    zp, _ = _standardize_rows(torch.where(m, p, 0), m, n)
    # zt may be non-zero outside the new mask only in dropped rows, where N = 0 zeroes it all.
    losses = _pairwise_l1_rows(zp - zt, m, n)
    return _batch_mean(losses, use.squeeze(1))


def si_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Scale-invariant pairwise L1 loss (eq. 1-2), by sorting; a scalar tensor.

    ``pred`` and ``target`` are in the same log domain (log-disparity, or both log-depth: the
    value is the same), shape (B, 1, H, W); ``mask`` bool, same shape. Per image:
    (1/N²) Σ_{i,j valid} |(p_i - p_j) - (t_i - t_j)|; batch value: mean over images with N >= 2.
    Invariant to adding any per-image constant to ``pred`` or ``target``.

    Example:
        >>> p = torch.tensor([0.0, 1.0, 3.0]).view(1, 1, 1, 3)
        >>> si_loss(p, torch.zeros_like(p), torch.ones_like(p, dtype=torch.bool))  # (2+6+4)/9
        tensor(1.3333)
    """
    _check_inputs(pred, target, mask, "si_loss")
    with _float_math(pred):
        loss = _si_core(*_flat(pred, target, mask))
    return _finite_or_raise(loss, pred, target, mask, "si_loss")


def ssi_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Shift-and-scale-invariant pairwise L1 loss (eq. 3-4), by sorting; a scalar tensor.

    ``pred`` and ``target`` are in the same linear domain (e.g. disparity), shape (B, 1, H, W);
    ``mask`` bool, same shape. Each is standardised per image over its valid pixels,
    (x - mean) / std with the population std, then the pairwise L1 of :func:`si_loss` is taken.
    Invariant to any per-image positive scale and any shift of either input.
    Batch value: mean over images with N >= 2 and a non-constant target (a constant target has
    no shape to match: it contributes nothing). "Constant" means std <= 8 machine epsilons of
    the image's max |value|. A constant ``pred`` is standardised to ~0 instead of 0/0, so the
    loss is finite and its gradient bounded.

    Example:
        >>> t = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3)
        >>> m = torch.ones_like(t, dtype=torch.bool)
        >>> float(ssi_loss(3 * t + 7, t, m)) < 1e-6
        True
    """
    _check_inputs(pred, target, mask, "ssi_loss")
    with _float_math(pred):
        loss = _ssi_core(*_flat(pred, target, mask))
    return _finite_or_raise(loss, pred, target, mask, "ssi_loss")


def _check_depth_types(depth_types: Sequence[str], batch: int) -> list[str]:
    if isinstance(depth_types, str) or not isinstance(depth_types, Sequence):
        raise TypeError(f"mixture_loss: depth_types must be a sequence of per-sample strings, "
                        f"got {type(depth_types).__name__} {depth_types!r}")
    types = list(depth_types)
    if len(types) != batch:
        raise ValueError(f"mixture_loss: got {len(types)} depth_types for a batch of {batch}")
    for i, kind in enumerate(types):
        if kind == DepthType.ORDINAL:
            raise ValueError(f"mixture_loss: sample {i} has depth_type 'ordinal', which has no dense "
                             f"target for the SI/SSI losses; use {SSI_TYPES} samples only")
        if kind not in SSI_TYPES:
            raise ValueError(f"mixture_loss: sample {i} has unknown depth_type {kind!r}; expected one of {SSI_TYPES}")
    return types


def mixture_loss(pred_logdisp: Tensor, target: Tensor, mask: Tensor, depth_types: Sequence[str],
                 si_weight: float = 1.0, ssi_weight: float = 1.0,
                 si_types: Sequence[str] = SI_TYPES, si_reduction: str = "si_samples") -> dict[str, Tensor]:
    """The training loss of eq. (5), gated per sample by its depth type.

    ``pred_logdisp`` is the model output (log-disparity), ``target``/``mask`` follow the sample
    contract: depth for ``absolute``/``uts`` samples, disparity for ``utss`` ones, > 0 where
    ``mask``. Terms:

    * ``si``: :func:`si_loss` of (pred_logdisp, -log depth) over the samples whose type is in
      ``si_types`` (eq. 5's ``I_UTS``; a subset of absolute/uts: e.g. ``("absolute",)``, or
      ``()`` for SSI only);
    * ``ssi``: :func:`ssi_loss` of (exp(pred_logdisp), disparity) over all samples, disparity
      being 1/depth (absolute/uts) or the target (utss).

    ``ssi`` is the mean over all samples. How ``si`` is reduced over the batch is a choice that
    eq. 5 leaves open (``si_reduction``, one of :data:`SI_REDUCTIONS`):

    * ``"si_samples"``: the mean over the samples SI applies to, so the SI weight does not
      shrink with the share of UTS samples in a batch;
    * ``"batch"``: eq. 5 read per sample, ``I_UTS * L_SI``, averaged over the whole batch (the
      UTSS samples count as 0): the same as ``"si_samples"`` times the share of SI samples.

    A term with no sample to apply to is 0. Returns
    ``{"loss": si_weight * si + ssi_weight * ssi, "si": si, "ssi": ssi}`` (unweighted terms).

    Since SSI ignores any positive per-image scale, the disparities it sees are scaled per
    image: exp(x - max x) for the prediction (detached max) and min_depth / depth for the
    ground truth. Exactly the same loss, but nothing can overflow (float16 logits, tiny
    depths) or underflow every pixel.

    Example:
        >>> depth = torch.rand(2, 1, 4, 4) + 0.5
        >>> out = mixture_loss(-depth.log(), depth, depth > 0, ["uts", "absolute"])
        >>> float(out["loss"]) < 1e-5
        True
    """
    _check_inputs(pred_logdisp, target, mask, "mixture_loss")
    types = _check_depth_types(depth_types, pred_logdisp.shape[0])
    if si_reduction not in SI_REDUCTIONS:
        raise ValueError(f"mixture_loss: si_reduction must be one of {SI_REDUCTIONS}, got {si_reduction!r}")
    if any(t not in SI_TYPES for t in si_types):
        raise ValueError(f"mixture_loss: si_types may hold {SI_TYPES} only (SI needs unbiased depth), got {list(si_types)}")
    bad = mask & ~(target > 0)
    if bool(bad.any()):
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"mixture_loss: target must be > 0 at valid pixels (depth or disparity); "
                         f"samples {rows} ({[types[i] for i in rows]}) have values <= 0 or NaN where mask is True")
    with _float_math(pred_logdisp):
        logp, tgt, m = _flat(pred_logdisp, target, mask)
        depth_rows = [i for i, kind in enumerate(types) if kind in SI_TYPES]  # targets hold depth
        every = len(depth_rows) == len(types)  # no gather/scatter copies in the common case
        sel = torch.tensor(depth_rows, device=m.device, dtype=torch.long)

        def pick(x: Tensor) -> Tensor:
            return x if every else x[sel]

        # SI on the depth rows gated in by si_types only (selected, so other rows cost no
        # sorting), against -log depth: unlike log(1/depth) it cannot overflow for tiny depths.
        m_si = pick(m)
        depth = torch.where(m_si, pick(tgt), 1.0)
        neg_log = torch.where(m_si, -torch.log(depth), 0.0)
        gated = [j for j, i in enumerate(depth_rows) if types[i] in si_types]
        if len(gated) == len(depth_rows):
            si, si_used = _si_core(pick(logp), neg_log, m_si), m_si
        else:
            g = torch.tensor(gated, device=m.device, dtype=torch.long)
            si, si_used = _si_core(pick(logp)[g], neg_log[g], m_si[g]), m_si[g]
        if si_reduction == "batch":  # sum over the SI samples that count, / batch size
            si = si * ((si_used.sum(1) >= 2).sum() / len(types))

        # SSI targets: min_depth / depth (a disparity scaled into (0, 1], which SSI ignores) for
        # absolute/uts rows; utss disparities as given (SSI rescales them internally).
        d_min = torch.where(m_si, depth, torch.inf).amin(1, keepdim=True)
        d_min = torch.where(torch.isfinite(d_min), d_min, 1.0)  # rows with no valid pixel
        disp_si = torch.where(m_si, d_min / depth, 0.0)
        disp_t = disp_si if every else tgt.index_copy(0, sel, disp_si)
        # Prediction: exp(x - max x) with the detached per-image max, the same SSI value as exp(x)
        # but exp can neither overflow (large logits) nor underflow every pixel.
        top = torch.where(m, logp.detach(), -torch.inf).amax(1, keepdim=True)
        disp_p = torch.exp(torch.where(m, logp - torch.where(torch.isfinite(top), top, 0.0), 0.0))
        ssi = _ssi_core(disp_p, disp_t, m)
    _finite_or_raise(si + ssi, pred_logdisp, target, mask, "mixture_loss")
    return {"loss": si_weight * si + ssi_weight * ssi, "si": si, "ssi": ssi}


class MixtureLoss(nn.Module):
    """:func:`mixture_loss` with its weights fixed; ``forward`` returns the same dict.

    Example:
        >>> crit = MixtureLoss(si_weight=0.5)
        >>> depth = torch.rand(1, 1, 4, 4) + 0.5
        >>> sorted(crit(torch.zeros_like(depth), depth, depth > 0, ["utss"]))
        ['loss', 'si', 'ssi']
    """

    def __init__(self, si_weight: float = 1.0, ssi_weight: float = 1.0, si_types: Sequence[str] = SI_TYPES,
                 si_reduction: str = "si_samples") -> None:
        super().__init__()
        self.si_weight = float(si_weight)
        self.ssi_weight = float(ssi_weight)
        self.si_types = tuple(si_types)
        self.si_reduction = si_reduction

    def forward(self, pred_logdisp: Tensor, target: Tensor, mask: Tensor,
                depth_types: Sequence[str]) -> dict[str, Tensor]:
        return mixture_loss(pred_logdisp, target, mask, depth_types, self.si_weight, self.ssi_weight, self.si_types,
                            self.si_reduction)

    def extra_repr(self) -> str:
        return (f"si_weight={self.si_weight}, ssi_weight={self.ssi_weight}, si_types={self.si_types}, "
                f"si_reduction={self.si_reduction!r}")
