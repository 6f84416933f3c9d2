"""The evaluator follows the authors' evaluation step for step (SamsungLabs/geometry-preserving-de).

Each test pins one step with a hand-computed case: crop-then-resize (``NYUDataset.getitem``),
exclusive caps (``BaseDataset.get_mask``), Python's rounding of the input size (``get_size``),
the domain of upsampling per mode (``eval.py``, ``metrics/logdisp_metrics.py``,
``metrics/disp_metrics.py``) and the 10-pixel rule. The last test runs ``evaluate_model`` on a
tiny NYU ``.mat`` through svde's loader and compares it with the authors' steps written out
plainly in numpy/torch.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from svde.data.base import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from svde.evaluation import PROTOCOLS, evaluate_model, evaluate_prediction, get_protocol
from svde.evaluation.protocols import MIN_VALID_PIXELS, network_size


class SampleList(Dataset):
    """Samples in the contract of svde.data.base (image, target, mask, depth_type, meta)."""

    name = "samples"

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def _sample(image_u8: np.ndarray, depth: np.ndarray, file: str = "s", intrinsics=None, depth_type="absolute"):
    depth = depth.astype(np.float32)
    mask = np.isfinite(depth) & (depth > 0)
    return {"image": normalize_image(image_u8), "target": torch.from_numpy(np.where(mask, depth, 0))[None],
            "mask": torch.from_numpy(mask)[None], "depth_type": depth_type,
            "meta": {"dataset": "samples", "file": file, "intrinsics": intrinsics}}


class Recorder(nn.Module):
    """Returns a constant log-disparity map at the input's size and keeps every input."""

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return x[:, :1] * 0.0 - 1.0


# ---- 1. crop, then resize -----------------------------------------------------------------------
def test_nyu_crops_image_and_depth_before_resizing():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (48, 80, 3), dtype=np.uint8)
    image[:8], image[-8:], image[:, :8], image[:, -8:] = 255, 255, 255, 255  # NYU's white border
    depth = rng.uniform(1, 9, (48, 80))
    model = Recorder()
    res = evaluate_model(model, SampleList([_sample(image, depth, intrinsics=[50.0, 50.0, 40.0, 24.0])]),
                         protocol=get_protocol("nyu", short_side=32))
    # 48x80 cropped by 8 is 32x64, which at short side 32 is its own network size: the network
    # sees exactly the cropped image, no white border
    (x,) = model.inputs
    assert tuple(x.shape) == (1, 3, 32, 64)
    torch.testing.assert_close(x[0], normalize_image(image[8:-8, 8:-8]), rtol=0, atol=1e-6)
    assert res["per_image"][0]["n_valid"] == 32 * 64  # scored at the cropped resolution
    cropped = PROTOCOLS["nyu"].crop_sample(_sample(image, depth, intrinsics=[50.0, 50.0, 40.0, 24.0]))
    assert cropped["meta"]["intrinsics"].tolist() == [50.0, 50.0, 32.0, 16.0]
    torch.testing.assert_close(cropped["target"][0], torch.from_numpy(depth[8:-8, 8:-8].astype(np.float32)))


def test_nyu_resize_is_the_authors_cv2_resize_of_the_cropped_frame():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image[:8] = 255
    model = Recorder()
    evaluate_model(model, SampleList([_sample(image, rng.uniform(1, 9, (480, 640)))]), protocol="nyu")
    (x,) = model.inputs
    assert tuple(x.shape) == (1, 3, 384, 512)  # 464x624 -> 384 x round(516.4 / 32) * 32
    # the authors: normalise, crop [8:-8, 8:-8], cv2.resize(INTER_LINEAR) to (512, 384)
    norm = ((image / 255.0 - IMAGENET_MEAN.reshape(1, 1, 3)) / IMAGENET_STD.reshape(1, 1, 3)).astype(np.float32)
    theirs = cv2.resize(norm[8:-8, 8:-8], (512, 384), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0].numpy(), theirs, atol=1e-4)
    full = cv2.resize(norm, (512, 384), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    assert np.abs(x[0].numpy() - full).max() > 0.5  # resizing the full frame would differ


# ---- 2. exclusive caps ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, low, cap", [("nyu", 1e-8, 10.0), ("tum", 1e-8, 10.0), ("sintel", 1e-8, 72.0),
                                            ("eth3d", 1e-8, 72.0), ("kitti", 1e-3, 80.0)])
def test_caps_are_exclusive_at_both_ends(name, low, cap):
    protocol = PROTOCOLS[name]
    assert (protocol.min_depth, protocol.depth_cap, protocol.cap_exclusive) == (low, cap, True)
    gt = torch.tensor([[low, 2 * low, cap - 0.01, cap, cap + 1.0]], dtype=torch.float64)
    if name == "kitti":  # only the Garg-crop rows and columns count: test the values inside it
        gt = gt.expand(100, 5).contiguous()
        gt = torch.cat([torch.full((100, 1), 5.0, dtype=torch.float64), gt, torch.full((100, 1), 5.0, dtype=torch.float64)], 1)
        row = protocol.valid_mask(gt, gt > 0)[60, 1:6]
    else:
        row = protocol.valid_mask(gt, gt > 0)[0]
    # authors' get_mask: depth > 1e-8 (KITTI, monodepth2: > 1e-3) and depth < cap; cap itself invalid
    assert row.tolist() == [False, True, True, False, False]


# ---- 3. size rounding: Python's round, halves to even ---------------------------------------------
def test_input_size_rounds_halves_to_even_like_python():
    assert network_size(480, 500, short_side=384) == (384, 384)  # 400 / 32 = 12.5 -> 12
    assert network_size(384, 432, short_side=384) == (384, 448)  # 432 / 32 = 13.5 -> 14
    assert network_size(500, 480, short_side=384) == (384, 384)  # either orientation
    assert network_size(464, 624, short_side=384) == (384, 512)  # NYU after its crop
    assert network_size(436, 1024, short_side=384) == (384, 896)  # Sintel: 901.9 -> 896
    assert network_size(80, 112) == (64, 128) and network_size(112, 80) == (128, 64)  # 2.5 -> 2, 3.5 -> 4
    model = Recorder()
    evaluate_model(model, SampleList([_sample(np.zeros((480, 500, 3), np.uint8), np.full((480, 500), 2.0))]),
                   protocol="tum")
    assert tuple(model.inputs[0].shape) == (1, 3, 384, 384)


# ---- 4. the domain of upsampling ----------------------------------------------------------------
def _up2(v: np.ndarray, axis: int) -> np.ndarray:
    """2x bilinear upsampling with half-pixel centres (align_corners=False), by hand:
    out[2i] = .25 in[i-1] + .75 in[i], out[2i+1] = .75 in[i] + .25 in[i+1], edges clamped."""
    v = np.moveaxis(v, axis, 0)
    prev = np.concatenate([v[:1], v[:-1]])
    nxt = np.concatenate([v[1:], v[-1:]])
    out = np.empty((2 * len(v),) + v.shape[1:])
    out[0::2] = 0.25 * prev + 0.75 * v
    out[1::2] = 0.75 * v + 0.25 * nxt
    return np.moveaxis(out, 0, axis)


def test_uts_upsamples_log_disparity_and_utss_upsamples_disparity():
    logdisp = np.array([[0.0, -2.0, -0.5], [-1.5, -0.2, -2.2]])  # network output (2, 3)
    up_log = _up2(_up2(logdisp, 0), 1)  # (4, 6) upsampled in the log domain
    up_disp = _up2(_up2(np.exp(logdisp), 0), 1)  # ... and in the disparity domain
    assert np.abs(np.exp(up_log) - up_disp).max() > 0.05  # the two domains differ here
    pred = torch.tensor(logdisp, dtype=torch.float32)
    for gt_disp, exact_mode, other in ((np.exp(up_log), "uts", "utss"), (up_disp, "utss", "uts")):
        # ground truth = 2.5 x the upsampled depth of one domain: that mode must score 0
        gt = torch.tensor(2.5 / gt_disp, dtype=torch.float32)
        rec = evaluate_prediction(pred, {"target": gt[None], "mask": (gt > 0)[None], "meta": {"file": "u"}},
                                  "tum", modes=("uts", "utss"))
        assert rec[exact_mode]["abs_rel"] < 1e-6, (exact_mode, rec)
        assert rec[other]["abs_rel"] > 1e-3, (other, rec)


def test_diw_whdr_per_mode_in_its_domain():
    # output (1, 3) = [0, -10, 1.2] upsampled to (1, 6); pixel 1 = .75 a + .25 b, pixel 3 = .75 b + .25 c
    # UTS (log): -2.5 vs -7.2, pixel 3 farther; UTSS (disparity): 0.75 vs 0.83, pixel 3 nearer
    pred = torch.tensor([[0.0, -10.0, 1.2]])
    sample = {"target": torch.zeros(1, 1, 6), "mask": torch.ones(1, 1, 6, dtype=torch.bool), "depth_type": "ordinal",
              "pairs": torch.tensor([[0.0, 1.0, 0.0, 3.0, 1.0]]), "meta": {"file": "diw/0"}}  # A farther
    rec = evaluate_prediction(pred, sample, "diw", modes=("uts", "utss"))
    assert (rec["uts"]["whdr"], rec["utss"]["whdr"]) == (1.0, 0.0)


# ---- 5. the 10-pixel rule ------------------------------------------------------------------------
def test_images_with_ten_or_fewer_valid_pixels_are_skipped():
    assert MIN_VALID_PIXELS == 10
    samples = []
    for n in (10, 11, 0):
        depth = np.zeros((4, 8))
        depth.flat[:n] = np.linspace(1, 3, n)
        samples.append(_sample(np.zeros((4, 8, 3), np.uint8), depth, file=f"n{n}"))
    res = evaluate_model(Recorder(), SampleList(samples), protocol=get_protocol("tum", short_side=4, multiple=4),
                         modes=("uts", "utss"))
    assert [(r["file"], r["n_valid"], r["skipped"]) for r in res["per_image"]] == [
        ("n10", 10, True), ("n11", 11, False), ("n0", 0, True)]
    assert (res["n_images"], res["n_skipped"]) == (1, 2) and "<= 10 valid" in res["skip_rule"]
    assert "needs > 10" in res["per_image"][0]["reason"] and "uts" not in res["per_image"][0]
    only = evaluate_prediction(torch.full((4, 8), -1.0), samples[1], "tum", modes=("uts", "utss"))
    for mode in ("uts", "utss"):  # the mean is the one evaluated image's value
        assert {k: res[mode][k] for k in only[mode]} == only[mode]


# ---- acceptance: NYU end to end against the authors' steps written out ----------------------------
class TinyNet(nn.Module):
    """A small random network: log-disparity at a quarter of the input resolution, rough enough
    that upsampling log-disparity or disparity gives clearly different results."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 1, 3, stride=2, padding=1)

    def forward(self, x):
        return 2.0 * torch.tanh(4.0 * self.conv2(torch.relu(self.conv1(x)))) - 1.0


def _nyu_frames(net):
    """Three NYU-sized frames whose depth is the network's own (log-domain upsampled) prediction
    with 3 % noise, so that errors are small and every protocol step shows in the metrics."""
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (3, 480, 640, 3), dtype=np.uint8)
    images[:, :8], images[:, :, -8:] = 255, 255  # white border
    depths = rng.uniform(0.5, 5.0, (3, 480, 640)).astype(np.float32)  # the border: cropped away
    for image, depth in zip(images, depths):
        x = normalize_image(image[8:-8, 8:-8])[None]
        with torch.no_grad():
            out = net(F.interpolate(x, size=(384, 512), mode="bilinear", align_corners=False))
        up = F.interpolate(out, size=(464, 624), mode="bilinear", align_corners=False)[0, 0].numpy()
        depth[8:-8, 8:-8] = 0.4 * np.exp(-up) * rng.uniform(0.97, 1.03, up.shape)
    depths[0][rng.random((480, 640)) < 0.1] = 0.0  # Kinect holes
    depths[1, 100:110, :] = 10.0  # exactly at the cap: invalid (exclusive)
    depths[1, 200:210, :] = 1e-9  # below the authors' 1e-8: invalid
    depths[2] = 0.0
    depths[2, 50, 50:60] = 3.0  # 10 valid pixels: skipped
    return images, depths


def _write_nyu(root, images, depths):
    import h5py
    import scipy.io

    root.mkdir()
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:  # MATLAB v7.3: h5py sees (N, 3, W, H)
        f["images"] = images.transpose(0, 3, 2, 1)
        f["rawDepths"] = depths.transpose(0, 2, 1)
    scipy.io.savemat(root / "splits.mat", {"testNdxs": np.array([[1], [2], [3]]), "trainNdxs": np.array([[1]])})


def _authors_nyu(net, images, depths):
    """The authors' steps, plainly: normalise, crop [8:-8, 8:-8], get_mask, cv2 resize, run,
    upsample (UTS: log-disparity, UTSS: disparity), > 10 pixels, align, cap (UTSS), metric."""
    sums = {"uts": {"delta1_err": 0.0, "abs_rel": 0.0, "log10": 0.0}, "utss": {"delta1_err": 0.0, "abs_rel": 0.0}}
    n = 0
    for image, depth in zip(images, depths):
        img = ((image / 255.0 - IMAGENET_MEAN.reshape(1, 1, 3)) / IMAGENET_STD.reshape(1, 1, 3))[8:-8, 8:-8]
        d = depth[8:-8, 8:-8].astype(np.float64)
        mask = (d > 1e-8) & (d < 10.0)
        h = 384
        w = round(384 / img.shape[0] * img.shape[1] / 32) * 32
        x = cv2.resize(img.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            out = net(torch.from_numpy(x).permute(2, 0, 1)[None].float())
        if mask.sum() <= 10:
            continue
        n += 1
        g = d[mask]
        # UTS: upsample log-disparity, log-depth shifted by the (lower) median of differences
        up = F.interpolate(out, size=d.shape, mode="bilinear", align_corners=False)[0, 0].double().numpy()
        p = -up[mask]
        diff = np.sort(np.log(g) - p)
        p = np.exp(p + diff[(len(diff) - 1) // 2])
        ratio = np.maximum(p / g, g / p)
        sums["uts"]["delta1_err"] += np.mean(ratio > 1.25)
        sums["uts"]["abs_rel"] += np.mean(np.abs(p - g) / g)
        sums["uts"]["log10"] += np.mean(np.abs(np.log10(p) - np.log10(g)))
        # UTSS: exp first, upsample disparity, least squares to 1/gt, clamp at 1/cap, invert
        up = F.interpolate(out.exp(), size=d.shape, mode="bilinear", align_corners=False)[0, 0].double().numpy()
        q, y = up[mask], 1.0 / g
        a = np.array([[np.sum(q * q), np.sum(q)], [np.sum(q), len(q)]])
        s, t = np.linalg.solve(a, np.array([np.sum(q * y), np.sum(y)]))
        p = 1.0 / np.maximum(s * q + t, 1.0 / 10.0)
        ratio = np.maximum(p / g, g / p)
        sums["utss"]["delta1_err"] += np.mean(ratio > 1.25)
        sums["utss"]["abs_rel"] += np.mean(np.abs(p - g) / g)
    return {mode: {k: v / n for k, v in m.items()} for mode, m in sums.items()}, n


def test_nyu_end_to_end_equals_the_authors_steps(tmp_path):
    from svde.data import build_dataset

    net = TinyNet().eval()
    images, depths = _nyu_frames(net)
    _write_nyu(tmp_path / "nyu", images, depths)
    res = evaluate_model(net, build_dataset("nyu", tmp_path / "nyu"), protocol="nyu", modes=("uts", "utss"),
                         batch_size=2)
    expected, n = _authors_nyu(net, images, depths)
    assert (res["n_images"], res["n_skipped"]) == (n, 1) == (2, 1)
    for mode, metrics in expected.items():
        for name, value in metrics.items():
            assert res[mode][name] == pytest.approx(value, abs=1e-4), (mode, name)
    assert res["per_image"][0]["n_valid"] == int(((depths[0, 8:-8, 8:-8] > 1e-8) & (depths[0, 8:-8, 8:-8] < 10)).sum())
    # sharp: UTS is near the noise floor, and UTSS's domain (disparity) costs it clearly
    assert 0.005 < res["uts"]["abs_rel"] < 0.03 and res["utss"]["delta1_err"] > 0.05
