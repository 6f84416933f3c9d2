"""svde.losses against a direct O(N²) implementation, invariances, edge cases and errors."""

import runpy
import sys
from pathlib import Path

import pytest
import torch

from svde import losses
from svde.losses import MixtureLoss, mixture_loss, si_loss, ssi_loss

RTOL = 1e-4


# ---- direct references: form every pair, no sorting ------------------------------------------
def ref_pairwise(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1/N²) Σ_{i,j} |(p_i - p_j) - (t_i - t_j)| over 1-D valid values."""
    n = p.numel()
    return ((p[:, None] - p[None, :]) - (t[:, None] - t[None, :])).abs().sum() / n**2


def ref_standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std(unbiased=False)


def ref_loss(pred, target, mask, standardize=False):
    """Batch mean over images with >= 2 valid pixels, one image at a time."""
    vals = []
    for p, t, m in zip(pred, target, mask):
        p, t = p[m], t[m]
        if p.numel() < 2:
            continue
        if standardize:
            p, t = ref_standardize(p), ref_standardize(t)
        vals.append(ref_pairwise(p, t))
    return torch.stack(vals).mean()


def random_batch(b=4, h=5, w=7, seed=0, dtype=torch.float64, p_valid=0.7):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(b, 1, h, w, generator=g, dtype=dtype)
    target = torch.randn(b, 1, h, w, generator=g, dtype=dtype)
    mask = torch.rand(b, 1, h, w, generator=g) < p_valid
    return pred, target, mask


def assert_close_rel(a, b, rtol=RTOL):
    a, b = a.double(), b.double()
    err = (a - b).abs().max() / b.abs().max().clamp(min=1e-12)
    assert err <= rtol, f"relative error {float(err):.3g} > {rtol}"


def value_and_grad(fn, pred, target, mask):
    pred = pred.clone().requires_grad_(True)
    target = target.clone().requires_grad_(True)
    out = fn(pred, target, mask)
    out.backward()
    return out.detach(), pred.grad, target.grad


# ---- exactness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["si", "ssi"])
def test_matches_direct_pairwise_value_and_grad(name, dtype):
    fn = si_loss if name == "si" else ssi_loss
    pred, target, mask = random_batch(b=5, seed=1)
    if name == "ssi":  # linear domain: positive disparities
        pred, target = pred.exp(), target.exp()
    mask[3] = False
    mask[3, 0, 2, 3] = True  # one valid pixel: must not count
    mask[4] = False  # none valid: must not count
    got, gp, gt = value_and_grad(fn, pred.to(dtype), target.to(dtype), mask)
    want, wp, wt = value_and_grad(lambda p, t, m: ref_loss(p, t, m, standardize=name == "ssi"),
                                  pred, target, mask)
    assert got.dtype == dtype
    assert_close_rel(got, want)
    assert_close_rel(gp, wp)
    assert_close_rel(gt, wt)
    assert (gp[~mask] == 0).all() and (gt[~mask] == 0).all()


def test_si_matches_direct_on_a_real_size_image_float32():
    # Larger N in float32: a common offset in the residuals must not cancel catastrophically.
    pred, target, mask = random_batch(b=2, h=24, w=32, seed=2, dtype=torch.float64, p_valid=0.9)
    pred = pred + 9.0  # the log scale of a model that predicts in other units than the data
    got = si_loss(pred.float(), target.float(), mask)
    assert_close_rel(got, ref_loss(pred, target, mask))


def test_si_large_offset_keeps_float32_accuracy():
    # Residuals k/64 + 4096 (k < 256) are exact in float32, so any error is the loss's own
    # arithmetic; the exact value comes from a histogram: Σ_{a,b} n_a n_b |a - b| / (64 N²).
    g = torch.Generator().manual_seed(26)
    k = torch.randint(0, 256, (1, 1, 96, 128), generator=g)
    counts = torch.bincount(k.flatten(), minlength=256).double()
    levels = torch.arange(256, dtype=torch.float64)
    exact = (counts[:, None] * counts[None, :] * (levels[:, None] - levels[None, :]).abs()).sum()
    exact = exact / 64 / k.numel() ** 2
    pred = (k.float() / 64 + 4096).requires_grad_(True)
    got = si_loss(pred, torch.zeros_like(pred), torch.ones_like(pred, dtype=torch.bool))
    assert abs(got.item() - exact.item()) / exact.item() < 3e-7
    got.backward()
    # d/dp_i = (2/N²) Σ_j sign(p_i - p_j) (ties between equal values may be split either way)
    below = torch.cumsum(counts, 0) - counts
    above = counts.sum() - below - counts
    lo, hi = 2 * (below - above - counts + 1) / k.numel() ** 2, 2 * (below - above + counts - 1) / k.numel() ** 2
    grad = pred.grad.flatten().double()
    idx = k.flatten()
    slack = 1e-5 * grad.abs().max()  # float32 rounding of the gradient itself
    assert ((grad >= lo[idx] - slack) & (grad <= hi[idx] + slack)).all()


def test_paper_formula_eq2_on_a_tiny_example():
    # R = p - t = [3, -1, 0]; sorted [-1, 0, 3]; -(2/9) Σ R_(i)(N - 1 - 2(i - 1)) = -(2/9)(-2 + 0 - 6)
    pred = torch.tensor([3.0, -1.0, 0.0]).view(1, 1, 1, 3)
    out = si_loss(pred, torch.zeros_like(pred), torch.ones_like(pred, dtype=torch.bool))
    assert out.item() == pytest.approx(16 / 9, rel=1e-6)


def test_gradcheck_si_and_ssi():
    pred, target, mask = random_batch(b=2, h=3, w=4, seed=3)
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: si_loss(p, target, mask), (pred,))
    assert torch.autograd.gradcheck(lambda p: ssi_loss(p, target, mask), (pred,))


def test_batched_equals_mean_of_single_images_and_one_sort(monkeypatch):
    pred, target, mask = random_batch(b=4, seed=4, dtype=torch.float32)
    for fn in (si_loss, ssi_loss):
        calls = []
        real_sort = torch.sort
        monkeypatch.setattr(torch, "sort", lambda *a, **k: calls.append(1) or real_sort(*a, **k))
        batched = fn(pred, target, mask)
        monkeypatch.setattr(torch, "sort", real_sort)
        assert len(calls) == 1, f"{fn.__name__} sorted {len(calls)} times for a batch of 4"
        singles = torch.stack([fn(pred[i:i + 1], target[i:i + 1], mask[i:i + 1]) for i in range(4)])
        assert batched.item() == pytest.approx(singles.mean().item(), rel=1e-5)


def test_ties_give_exact_value_and_a_valid_subgradient():
    # Many equal residuals: sorting picks an order, the value must still be exact and the
    # gradient a subgradient (here: sums to 0 per image, as for any shift-invariant loss).
    pred = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0]).view(2, 1, 1, 4)
    target = torch.zeros_like(pred)
    mask = torch.ones_like(pred, dtype=torch.bool)
    value, gp, _ = value_and_grad(si_loss, pred, target, mask)
    assert_close_rel(value, ref_loss(pred.double(), target.double(), mask))
    assert torch.allclose(gp.sum(dim=(1, 2, 3)), torch.zeros(2), atol=1e-7)
    # Subgradient inequality L(p + v) >= L(p) + <g, v> for random directions.
    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        v = 0.3 * torch.randn(pred.shape, generator=g)
        assert si_loss(pred + v, target, mask) >= value + (gp * v).sum() - 1e-6


# ---- invariances ---------------------------------------------------------------------------------
def test_si_invariant_to_per_image_constants():
    pred, target, mask = random_batch(seed=6, dtype=torch.float32)
    base = si_loss(pred, target, mask)
    shift = torch.tensor([-30.0, 0.5, 7.0, 100.0]).view(4, 1, 1, 1)
    assert si_loss(pred + shift, target, mask).item() == pytest.approx(base.item(), rel=1e-4)
    assert si_loss(pred, target - shift, mask).item() == pytest.approx(base.item(), rel=1e-4)
    # log-depth instead of log-disparity: both sides negated, same value
    assert si_loss(-pred, -target, mask).item() == pytest.approx(base.item(), rel=1e-6)
    assert si_loss(target + 3.0, target, mask).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale,shift", [(1e-3, 0.0), (250.0, -40.0), (3.0, 1e3), (1e6, 1e6)])
def test_ssi_invariant_to_positive_scale_and_shift(scale, shift):
    pred, target, mask = random_batch(seed=7, dtype=torch.float32)
    pred, target = pred.exp(), target.exp()
    base = ssi_loss(pred, target, mask)
    assert base.item() > 0.1
    assert ssi_loss(pred * scale + shift, target, mask).item() == pytest.approx(base.item(), rel=1e-4)
    assert ssi_loss(pred, target * scale + shift, mask).item() == pytest.approx(base.item(), rel=1e-4)
    assert ssi_loss(target * scale + shift, target, mask).item() == pytest.approx(0.0, abs=1e-4)


def test_ssi_is_not_invariant_to_a_negative_scale():
    pred, target, mask = random_batch(seed=8, dtype=torch.float32)
    assert ssi_loss(-target, target, mask).item() > 0.5


# ---- edge cases: never NaN/inf, zero when nothing counts ----------------------------------------
def all_finite(*tensors):
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("fn", [si_loss, ssi_loss])
def test_no_valid_pixels_gives_zero_loss_and_zero_finite_grads(fn):
    pred = torch.full((3, 1, 4, 4), float("nan"))  # garbage where masked must not leak
    target = torch.full((3, 1, 4, 4), float("inf"))
    mask = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    mask[1, 0, 0, 0] = True  # a single valid pixel still counts as nothing
    pred[1, 0, 0, 0], target[1, 0, 0, 0] = 0.3, 2.0
    value, gp, gt = value_and_grad(fn, pred, target, mask)
    assert value.item() == 0.0
    assert (gp == 0).all() and (gt == 0).all()


@pytest.mark.parametrize("fn", [si_loss, ssi_loss])
def test_constant_images_are_finite(fn):
    pred, target, mask = random_batch(b=3, seed=9, dtype=torch.float32)
    pred, target = pred.exp(), target.exp()
    pred[0] = 2.5  # constant prediction (e.g. a collapsed model)
    target[1] = 7.0  # constant ground truth
    pred[2], target[2] = 1.0, 1.0  # both
    value, gp, gt = value_and_grad(fn, pred, target, mask)
    assert all_finite(value, gp, gt)
    assert gp.abs().max() < 1e3  # bounded, not an amplified 1/0


def test_ssi_constant_target_contributes_nothing_and_constant_pred_still_learns():
    pred, target, mask = random_batch(b=2, seed=10, dtype=torch.float32)
    target[1] = 4.0
    both = ssi_loss(pred, target, mask)
    assert both.item() == pytest.approx(ssi_loss(pred[:1], target[:1], mask[:1]).item(), rel=1e-6)
    # A constant prediction against a varied target: positive loss and a non-zero gradient.
    flat = torch.full_like(pred[:1], 3.0, requires_grad=True)
    out = ssi_loss(flat, target[:1], mask[:1])
    out.backward()
    assert out.item() > 0.1 and flat.grad.abs().sum() > 0 and all_finite(flat.grad)


@pytest.mark.parametrize("magnitude", [1e-30, 1e30])
def test_ssi_huge_and_tiny_values(magnitude):
    pred, target, mask = random_batch(seed=11, dtype=torch.float32)
    pred, target = pred.exp(), target.exp()
    base = ssi_loss(pred, target, mask)
    value, gp, gt = value_and_grad(ssi_loss, pred * magnitude, target * magnitude, mask)
    assert all_finite(value, gp, gt)
    assert value.item() == pytest.approx(base.item(), rel=1e-4)


def test_si_huge_values_are_finite():
    pred, target, mask = random_batch(seed=12, dtype=torch.float32)
    value, gp, gt = value_and_grad(si_loss, pred * 1e30, target, mask)
    assert all_finite(value, gp, gt)
    assert value.item() == pytest.approx(1e30 * si_loss(pred, target / 1e30, mask).item(), rel=1e-4)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", [si_loss, ssi_loss])
def test_half_precision_inputs_under_autocast(fn, half):
    pred, target, mask = random_batch(seed=13, dtype=torch.float32)
    pred, target = pred.exp(), target.exp()
    p16 = pred.to(half).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(p16, target.to(half), mask)
    out.backward()
    assert out.dtype == torch.float32 and p16.grad.dtype == half
    assert all_finite(out, p16.grad.float())
    # Same as float32 on the rounded inputs: the loss itself adds no half-precision error.
    assert out.item() == pytest.approx(fn(p16.detach().float(), target.to(half).float(), mask).item(), rel=1e-5)


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [si_loss, ssi_loss])
def test_bad_inputs_raise_clear_errors(fn):
    pred, target, mask = random_batch(b=2, seed=14, dtype=torch.float32)
    with pytest.raises(TypeError, match="mask must be a bool"):
        fn(pred, target, mask.float())
    with pytest.raises(ValueError, match=r"one shape.*target \(2, 1, 5, 6\)"):
        fn(pred, target[..., :6], mask)
    with pytest.raises(TypeError, match="pred must be a floating-point"):
        fn(pred.long(), target, mask)
    mask[1, 0, 0, 0] = True
    bad_t = target.clone()
    bad_t[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"target has NaN/inf .* samples \[1\]"):
        fn(pred, bad_t, mask)
    bad_p = pred.clone()
    bad_p[1, 0, 0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"pred has NaN/inf .* samples \[1\]"):
        fn(bad_p, target, mask)


# ---- mixture (eq. 5) -----------------------------------------------------------------------------
def mixture_batch(seed=20):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(3, 1, 6, 5, generator=g)
    depth = torch.rand(3, 1, 6, 5, generator=g) * 10 + 0.5
    mask = torch.rand(3, 1, 6, 5, generator=g) < 0.8
    target = torch.where(mask, depth, 0.0)
    target[2] = torch.where(mask[2], 3.0 / depth[2] + 0.7, 0.0)  # a UTSS disparity
    return pred, target, mask, ["absolute", "uts", "utss"]


def test_mixture_terms_follow_the_depth_types():
    pred, target, mask, types = mixture_batch()
    out = mixture_loss(pred, target, mask, types, si_weight=0.25, ssi_weight=2.0)
    si = si_loss(pred[:2], -target[:2].clamp(min=1e-12).log(), mask[:2])
    disp = torch.cat([1 / target[:2].clamp(min=1e-12), target[2:]])
    ssi = ssi_loss(pred.exp(), disp, mask)
    assert out["si"].item() == pytest.approx(si.item(), rel=1e-5)
    assert out["ssi"].item() == pytest.approx(ssi.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.25 * si.item() + 2.0 * ssi.item(), rel=1e-5)
    # Only absolute/uts samples (no row selection): the same terms on those rows.
    first_two = mixture_loss(pred[:2], target[:2], mask[:2], types[:2])
    assert first_two["si"].item() == pytest.approx(si.item(), rel=1e-5)
    assert first_two["ssi"].item() == pytest.approx(ssi_loss(pred[:2].exp(), disp[:2], mask[:2]).item(), rel=1e-5)
    # The utss sample must not touch the SI term, whatever its values.
    changed = target.clone()
    changed[2] = torch.where(mask[2], changed[2] * 5 + 1, 0.0)
    assert mixture_loss(pred, changed, mask, types)["si"].item() == pytest.approx(out["si"].item(), rel=1e-6)
    # As the ground truth, the loss is zero (up to float rounding).
    exact = torch.cat([-target[:2].clamp(min=1e-12).log(), target[2:].clamp(min=1e-12).log()])
    assert mixture_loss(exact, target, mask, types)["loss"].item() < 1e-5


def test_mixture_all_utss_and_no_valid_pixels():
    pred, target, mask, _ = mixture_batch(seed=21)
    pred.requires_grad_(True)
    out = mixture_loss(pred, target, mask, ["utss"] * 3)
    assert out["si"].item() == 0.0 and out["ssi"].item() > 0
    out["loss"].backward()
    assert all_finite(pred.grad) and pred.grad.abs().sum() > 0
    pred.grad = None
    empty = mixture_loss(pred, target, torch.zeros_like(mask), ["uts"] * 3)
    assert empty["loss"].item() == 0.0
    empty["loss"].backward()
    assert (pred.grad == 0).all()


@pytest.mark.parametrize("depth_scale", [1e-30, 1e30])
def test_mixture_extreme_depths_and_logits(depth_scale):
    pred, target, mask, types = mixture_batch(seed=22)
    base = mixture_loss(pred, target, mask, types)
    # Depth in any unit and a log-disparity offset change neither term (SI and SSI invariances),
    # and exp() of a large float16 logit must not overflow.
    scaled = torch.cat([target[:2] * depth_scale, target[2:]])
    logits = (pred + (60.0 if depth_scale < 1 else -60.0)).requires_grad_(True)
    out = mixture_loss(logits, scaled, mask, types)
    out["loss"].backward()
    assert all_finite(out["loss"], logits.grad)
    for key in ("si", "ssi"):
        assert out[key].item() == pytest.approx(base[key].item(), rel=1e-4)
    p16 = (pred + 10.0).half().requires_grad_(True)  # exp(10+) overflows float16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = mixture_loss(p16, target, mask, types)
    out16["loss"].backward()
    assert all_finite(out16["loss"], p16.grad.float()) and out16["loss"].dtype == torch.float32


def test_mixture_errors_name_the_problem():
    pred, target, mask, types = mixture_batch(seed=23)
    with pytest.raises(ValueError, match="sample 1 has depth_type 'ordinal'"):
        mixture_loss(pred, target, mask, ["uts", "ordinal", "utss"])
    with pytest.raises(ValueError, match=r"unknown depth_type 'metric'.*'absolute', 'uts', 'utss'"):
        mixture_loss(pred, target, mask, ["uts", "metric", "utss"])
    with pytest.raises(ValueError, match="got 2 depth_types for a batch of 3"):
        mixture_loss(pred, target, mask, ["uts", "uts"])
    with pytest.raises(TypeError, match="sequence of per-sample strings"):
        mixture_loss(pred, target, mask, "uts")
    bad = target.clone()
    bad[0] = torch.where(mask[0], -1.0, 0.0)
    with pytest.raises(ValueError, match=r"> 0 at valid pixels.*samples \[0\] \(\['absolute'\]\)"):
        mixture_loss(pred, bad, mask, types)
    bad[0] = torch.where(mask[0], float("inf"), 0.0)
    with pytest.raises(ValueError, match=r"target has NaN/inf .* samples \[0\]"):
        mixture_loss(pred, bad, mask, types)
    nan_pred = pred.clone()
    nan_pred[2] = float("nan")
    with pytest.raises(FloatingPointError, match=r"pred has NaN/inf .* samples \[2\]"):
        mixture_loss(nan_pred, target, mask, types)


def test_mixture_module_wraps_the_function():
    pred, target, mask, types = mixture_batch(seed=24)
    crit = MixtureLoss(si_weight=0.5, ssi_weight=3.0)
    assert "si_weight=0.5" in repr(crit)
    got = crit(pred, target, mask, types)
    want = mixture_loss(pred, target, mask, types, si_weight=0.5, ssi_weight=3.0)
    assert {k: v.item() for k, v in got.items()} == {k: v.item() for k, v in want.items()}
    assert set(losses.SSI_TYPES) == {"absolute", "uts", "utss"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pred, target, mask = random_batch(b=3, h=16, w=20, seed=25, dtype=torch.float32)
    pred, target = pred.exp(), target.exp()
    for fn in (si_loss, ssi_loss):
        cpu, gcpu, _ = value_and_grad(fn, pred, target, mask)
        gpu, ggpu, _ = value_and_grad(fn, pred.cuda(), target.cuda(), mask.cuda())
        assert_close_rel(gpu.cpu(), cpu, rtol=1e-5)
        assert_close_rel(ggpu.cpu(), gcpu, rtol=1e-4)


@pytest.mark.parametrize("fn", [si_loss, ssi_loss])
def test_nan_in_a_non_contributing_image_reaches_neither_loss_nor_grad(fn):
    pred, target, mask = random_batch(b=3, seed=27, dtype=torch.float32)
    pred, target = pred.exp(), target.exp()
    clean = fn(pred[:2], target[:2], mask[:2])
    mask[2] = False
    mask[2, 0, 1, 1] = True  # a lone valid pixel holding NaN: the image does not count
    pred[2, 0, 1, 1] = float("nan")
    value, gp, gt = value_and_grad(fn, pred, target, mask)
    assert value.item() == pytest.approx(clean.item(), rel=1e-6)
    assert all_finite(gp, gt)


def test_ssi_nan_pred_in_a_constant_target_image_does_not_leak():
    pred, target, mask = random_batch(b=2, seed=28, dtype=torch.float32)
    target[1] = 2.0
    pred[1, 0, 0, 0], mask[1, 0, 0, 0] = float("nan"), True
    value, gp, _ = value_and_grad(ssi_loss, pred, target, mask)
    assert value.item() == pytest.approx(ssi_loss(pred[:1], target[:1], mask[:1]).item(), rel=1e-6)
    assert all_finite(gp)


def test_benchmark_script_runs_on_a_tiny_batch(monkeypatch, capsys):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "losses.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--repeats", "1", "--batch", "3", "--height", "8", "--width", "8"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    for row in ("torch.sort", "si_loss fwd+bwd", "ssi_loss fwd+bwd", "mixture_loss fwd+bwd"):
        assert row in out


def test_mixture_si_types_gates_si_per_sample():
    """``si_types`` is eq. 5's I_UTS: excluded depth samples still get SSI (on 1/depth), not SI."""
    g = torch.Generator().manual_seed(3)
    depth = torch.rand(2, 1, 6, 7, generator=g) + 0.5
    pred = torch.randn(2, 1, 6, 7, generator=g)
    mask = torch.rand(2, 1, 6, 7, generator=g) > 0.2
    both = mixture_loss(pred, depth, mask, ["uts", "absolute"])
    only_abs = mixture_loss(pred, depth, mask, ["uts", "absolute"], si_types=("absolute",))
    none = mixture_loss(pred, depth, mask, ["uts", "absolute"], si_types=())
    # SI over the absolute sample alone; SSI unchanged: it applies to every sample either way.
    assert torch.allclose(only_abs["si"], si_loss(pred[1:], -depth[1:].log(), mask[1:]), rtol=1e-5)
    assert torch.allclose(only_abs["ssi"], both["ssi"]) and torch.allclose(none["ssi"], both["ssi"])
    assert float(none["si"]) == 0.0
    # The same as handing the loss the disparity of UTSS samples.
    as_utss = mixture_loss(pred, torch.where(mask, 1 / depth, 0.0), mask, ["utss", "utss"])
    assert torch.allclose(none["ssi"], as_utss["ssi"], rtol=1e-5)
    with pytest.raises(ValueError, match="si_types"):
        mixture_loss(pred, depth, mask, ["uts", "absolute"], si_types=("utss",))


def test_si_reduction_batch_is_eq5_per_sample_averaged_over_the_batch():
    """``batch``: (1/B) Σ_i I_UTS(i) SI_i; ``si_samples``: the mean over the UTS samples only."""
    g = torch.Generator().manual_seed(5)
    depth = torch.rand(4, 1, 5, 6, generator=g) + 0.5
    pred = torch.randn(4, 1, 5, 6, generator=g)
    mask = torch.ones_like(depth, dtype=torch.bool)
    target = torch.cat([depth[:1], 1 / depth[1:]])  # one UTS sample, three UTSS (disparity)
    types = ["uts", "utss", "utss", "utss"]
    per_sample_si = si_loss(pred[:1], -depth[:1].log(), mask[:1]).item()
    mean_over_si = mixture_loss(pred, target, mask, types)
    over_batch = mixture_loss(pred, target, mask, types, si_reduction="batch")
    assert mean_over_si["si"].item() == pytest.approx(per_sample_si, rel=1e-5)
    assert over_batch["si"].item() == pytest.approx(per_sample_si / 4, rel=1e-5)
    assert over_batch["ssi"].item() == pytest.approx(mean_over_si["ssi"].item(), rel=1e-6)
    # A sample without 2 valid pixels contributes 0 to the sum but still counts in the batch.
    few = mask.clone()
    few[0] = False
    few[0, 0, 0, :2] = True
    few[1] = False  # no valid pixel at all
    out = mixture_loss(pred, target, few, types, si_reduction="batch")
    assert out["si"].item() == pytest.approx(si_loss(pred[:1], -depth[:1].log(), few[:1]).item() / 4, rel=1e-5)
    # With SI on every sample the two reductions agree.
    all_uts = mixture_loss(pred, depth, mask, ["uts"] * 4, si_reduction="batch")
    assert all_uts["si"].item() == pytest.approx(mixture_loss(pred, depth, mask, ["uts"] * 4)["si"].item(), rel=1e-6)
    assert "si_reduction='batch'" in repr(MixtureLoss(si_reduction="batch"))
    with pytest.raises(ValueError, match="si_reduction"):
        mixture_loss(pred, target, mask, types, si_reduction="mean")
