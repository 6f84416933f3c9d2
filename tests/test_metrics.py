"""Hand-computed cases for the evaluation metrics and alignments."""

import math

import pytest
import torch

from svde.evaluation.metrics import (
    align_lstsq_disparity,
    align_median_log,
    backproject,
    depth_metrics,
    geometry_error,
    lstsq_scale_shift,
    whdr,
)


# ---- align_median_log -------------------------------------------------------------------
def test_median_log_recovers_scale_exactly():
    gt = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    pred = -torch.log(gt / 7.5)  # log-disparity of a depth 7.5x too small
    out = align_median_log(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert torch.allclose(out, gt, rtol=1e-6)


def test_median_log_uses_lower_middle_value_and_only_masked_pixels():
    # log gt - log pred_depth per pixel: log 1, log 2, log 4, log 8 -> torch.median picks log 2
    gt = torch.tensor([1.0, 2.0, 4.0, 8.0, 1000.0])
    pred_depth = torch.ones(5)
    mask = torch.tensor([True, True, True, True, False])
    out = align_median_log(-torch.log(pred_depth), gt, mask)
    assert torch.allclose(out, torch.full((5,), 2.0))  # not 2.83 (the mean of the middle pair)


def test_median_log_rejects_empty_mask_and_bad_values():
    gt = torch.ones(2, 2)
    with pytest.raises(ValueError, match="selects no pixel"):
        align_median_log(torch.zeros(2, 2), gt, torch.zeros(2, 2, dtype=torch.bool))
    pred = torch.tensor([[float("nan"), 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="not finite"):
        align_median_log(pred, gt, gt > 0)
    with pytest.raises(ValueError, match="same shape"):
        align_median_log(torch.zeros(3), gt, gt > 0)


# ---- align_lstsq_disparity ----------------------------------------------------------------
def test_lstsq_scale_shift_hand_case():
    # x = 0, 1, 2, 3; y = 1, 1, 3, 3: slope = sum(xc*yc)/sum(xc^2) = 4/5, intercept = 2 - 0.8*1.5 = 0.8
    s, t = lstsq_scale_shift(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 3.0, 3.0]))
    assert s == pytest.approx(0.8) and t == pytest.approx(0.8)
    assert lstsq_scale_shift(torch.full((4,), 2.0), torch.tensor([1.0, 2.0, 3.0, 6.0])) == (0.0, 3.0)


def test_lstsq_disparity_exact_and_capped():
    gt = torch.tensor([[1.0, 2.0], [4.0, 5.0]])
    disp = 3.0 / gt - 0.1
    out = align_lstsq_disparity(disp, gt, gt > 0, depth_cap=100.0)
    assert torch.allclose(out, gt, rtol=1e-5)
    # a cap below some depths clamps those predictions at the cap
    out = align_lstsq_disparity(disp, gt, gt > 0, depth_cap=3.0)
    assert torch.allclose(out, torch.tensor([[1.0, 2.0], [3.0, 3.0]]), rtol=1e-5)


def test_lstsq_disparity_negative_fit_never_gives_negative_depth():
    # a prediction anti-correlated with the truth: the fit has a negative scale and the aligned
    # disparity goes below 1/cap somewhere: clamped, never negative or infinite
    gt = torch.tensor([1.0, 2.0, 4.0, 8.0])
    out = align_lstsq_disparity(gt.clone(), gt, gt > 0, depth_cap=10.0)
    assert bool(torch.isfinite(out).all()) and bool((out > 0).all()) and float(out.max()) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="depth_cap"):
        align_lstsq_disparity(gt, gt, gt > 0, depth_cap=float("inf"))


# ---- depth_metrics ---------------------------------------------------------------------------
def test_depth_metrics_hand_computed():
    gt = torch.tensor([1.0, 2.0, 4.0, 10.0])
    pred = torch.tensor([1.0, 2.6, 2.0, 10.0])
    m = depth_metrics(pred, gt, gt > 0)
    # ratios: 1, 1.3, 2, 1 -> > 1.25: two; > 1.5625: one; > 1.953: one
    assert m["delta1_err"] == 0.5 and m["delta2_err"] == 0.25 and m["delta3_err"] == 0.25
    assert m["abs_rel"] == pytest.approx((0 + 0.3 + 0.5 + 0) / 4)
    assert m["log10"] == pytest.approx((math.log10(1.3) + math.log10(2.0)) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.36 + 4.0) / 4))
    assert set(m) == {"delta1_err", "delta2_err", "delta3_err", "abs_rel", "log10", "rmse"}


def test_depth_metrics_respects_mask_and_rejects_non_positive_prediction():
    gt = torch.tensor([1.0, 2.0, 3.0])
    pred = torch.tensor([1.0, 2.0, -5.0])
    m = depth_metrics(pred, gt, torch.tensor([True, True, False]))
    assert m["abs_rel"] == 0.0 and m["delta1_err"] == 0.0
    with pytest.raises(ValueError, match="predicted depth"):
        depth_metrics(pred, gt, gt > 0)


# ---- whdr -----------------------------------------------------------------------------------
def test_whdr_sign_convention():
    # log-disparity: larger = nearer. pixel (0, 0) far (0.0), pixel (1, 1) near (2.0)
    pred = torch.tensor([[0.0, 1.0], [1.0, 2.0]])
    a_far = torch.tensor([[0, 0, 1, 1, 1.0]])   # A=(0,0) farther: correct
    b_far = torch.tensor([[0, 0, 1, 1, -1.0]])  # B=(1,1) farther: wrong
    assert whdr(pred, a_far) == 0.0
    assert whdr(pred, b_far) == 1.0
    both = torch.cat([a_far, b_far, a_far, torch.tensor([[1, 1, 0, 1, 1.0]])])  # last: A near, says far
    assert whdr(pred[None], both) == 0.5


def test_whdr_rejects_bad_pairs():
    pred = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="outside"):
        whdr(pred, torch.tensor([[0, 0, 2, 0, 1.0]]))
    with pytest.raises(ValueError, match="rel"):
        whdr(pred, torch.tensor([[0, 0, 1, 0, 0.5]]))
    with pytest.raises(ValueError, match="K, 5"):
        whdr(pred, torch.zeros(0, 5))


# ---- geometry ---------------------------------------------------------------------------------
def test_backproject_hand_case():
    pts = backproject(torch.tensor([[2.0, 4.0]]), [2.0, 4.0, 0.0, 0.0])
    assert torch.allclose(pts, torch.tensor([[[0.0, 0.0, 2.0], [2.0, 0.0, 4.0]]]))


def _wall(h: int = 24, w: int = 32) -> tuple[torch.Tensor, list[float]]:
    """Depth of a slanted plane z = 2 + 1.5 * X (depths 1.1 to 8) seen by a pinhole camera."""
    fx = fy = 30.0
    cx, cy = w / 2, h / 2
    u = torch.arange(w, dtype=torch.float64).expand(h, w)
    # plane z = a + b * X with X = (u - cx) z / fx  ->  z = a / (1 - b (u - cx) / fx)
    return (2.0 / (1.0 - 1.5 * (u - cx) / fx)).float(), [fx, fy, cx, cy]


def test_geometry_error_wrong_shift_distorts_while_uts_does_not():
    gt, k = _wall()
    mask = torch.ones_like(gt, dtype=torch.bool)
    # a correct UTS prediction: right up to scale, as log-disparity
    uts_pred = -torch.log(gt * 0.37)
    uts_depth = align_median_log(uts_pred, gt, mask)
    assert geometry_error(uts_depth, gt, mask, k) < 1e-5
    # a UTSS prediction whose shift is wrong: disparity + 0.3, then only its scale can be aligned
    wrong_disp = 1.0 / gt + 0.3
    wrong_depth = align_median_log(torch.log(wrong_disp), gt, mask)
    err = geometry_error(wrong_depth, gt, mask, k)
    assert err > 0.15  # about 0.26: a quarter of every distance is wrong
    # the pixelwise depth errors of the wrong-shift prediction are modest: geometry tells it apart
    assert depth_metrics(wrong_depth, gt, mask)["delta1_err"] < 0.5
    # aligning the same prediction's shift and scale to the ground truth repairs the geometry
    fixed = align_lstsq_disparity(wrong_disp, gt, mask, depth_cap=100.0)
    assert geometry_error(fixed, gt, mask, k) < 1e-4


def test_geometry_error_is_deterministic_and_validates():
    gt, k = _wall()
    mask = gt > 0
    pred = gt * (1 + 0.1 * torch.rand(gt.shape, generator=torch.Generator().manual_seed(1)))
    assert geometry_error(pred, gt, mask, k) == geometry_error(pred, gt, mask, k)
    assert geometry_error(pred, gt, mask, k) > 0
    one = torch.zeros_like(mask)
    one[0, 0] = True
    with pytest.raises(ValueError, match="two valid pixels"):
        geometry_error(pred, gt, one, k)


def test_geometry_error_matches_full_backprojection():
    gt, k = _wall(12, 16)
    pred = gt * torch.linspace(0.8, 1.2, 16)  # bends the plane
    mask = gt > 0
    err = geometry_error(pred, gt, mask, k, n_pairs=500, seed=3)
    # the same pairs, drawn as geometry_error documents, on fully back-projected maps
    idx = mask.reshape(-1).nonzero().squeeze(1)
    gen = torch.Generator().manual_seed(3)
    i = torch.randint(len(idx), (500,), generator=gen)
    j = (i + torch.randint(1, len(idx), (500,), generator=gen)) % len(idx)
    p, g = backproject(pred, k).reshape(-1, 3).double(), backproject(gt, k).reshape(-1, 3).double()
    dp, dg = (p[idx[i]] - p[idx[j]]).norm(dim=1), (g[idx[i]] - g[idx[j]]).norm(dim=1)
    assert err == pytest.approx(float(torch.median((dp - dg).abs() / dg)), rel=1e-5) and err > 0.01
    with pytest.raises(ValueError, match="intrinsics"):
        geometry_error(pred, gt, mask, [1.0, 0.0, 2.0, 2.0])
