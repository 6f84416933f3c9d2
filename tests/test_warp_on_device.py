"""The crop's resampling on the batch (``data.warp_on``, :mod:`svde.data.warp`).

Independent reference: ``cv2.warpAffine`` (``WARP_INVERSE_MAP``, ``BORDER_CONSTANT`` 0), which
the in-worker path uses, on random images and a real NYUv2 frame from ``../shared`` (skipped
without it). The device path differs from it only where cv2 rounds (bilinear positions to 1/32
pixel, nearest to 1/1024, the image to uint8): these tests measure by how much.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from svde.config import ConfigError, build_config  # noqa: E402
from svde.data import DataError, RGBDFolderDataset, SyntheticDataset, collate  # noqa: E402
from svde.data.colour import finish_batch  # noqa: E402
from svde.data.transforms import Compose, ToUTS, ToUTSS, TrainAugment, build_train_transform  # noqa: E402
from svde.data.warp import (MAX_SOURCE_RATIO, WARP_FIELDS, finish_warp, resolve_warp_place,  # noqa: E402
                            warp_vector)

SHARED_NYU = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "nyuv2"


def _pair(warp: bool, interpolation: int = cv2.INTER_LINEAR, **kwargs) -> TrainAugment:
    return TrainAugment(48, 64, interpolation=interpolation, colour_on_device=True, warp_on_device=warp, **kwargs)


def _finished(dataset, seeds) -> dict:
    samples = []
    for seed in seeds:
        torch.manual_seed(seed)
        samples.append(dataset[seed % len(dataset)])
    batch = collate(samples)
    colour = batch.pop("colour")  # compare the geometry: the colour is the same function of it on both paths
    out = finish_batch({**batch, "colour": torch.zeros_like(colour)}, "cpu")
    if "warp" in batch:  # which path each sample took: resampled on the device (> 0) or in the worker
        out["resampled"] = batch["warp"][:, 0] > 0
    return out


def _compare(worker: dict, device: dict, levels: float, exact_depth: bool = True) -> None:
    """Images within ``levels`` grey levels at the 99.9th percentile (mean under a quarter level);
    mask (and depth, if ``exact_depth``) equal at >= 99.9 % of pixels (cv2 quantises nearest
    positions to 1/1024 pixel)."""
    step = float(torch.tensor(1 / 255.0) / torch.tensor([0.229, 0.224, 0.225]).min())  # one level, normalised
    diff = (worker["image"] - device["image"]).abs() / step
    assert float(diff.mean()) < 0.25, float(diff.mean())
    assert float(diff.flatten().quantile(0.999)) <= levels, float(diff.flatten().quantile(0.999))
    assert float((worker["mask"] == device["mask"]).float().mean()) >= 0.999
    assert not exact_depth or float((worker["target"] == device["target"]).float().mean()) >= 0.999
    assert worker["mask"].any() and (device["target"][~device["mask"]] == 0).all()


@pytest.mark.parametrize("interpolation", [cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.INTER_CUBIC])
def test_device_warp_matches_the_workers_cv2_warp(interpolation):
    """30 random plans (scales, pads, crops, rotations, flips) of 60x80 renders cropped to 48x64."""
    worker = SyntheticDataset(length=6, height=60, width=80, transform=_pair(False, interpolation))
    device = SyntheticDataset(length=6, height=60, width=80, transform=_pair(True, interpolation))
    seeds = range(30)
    a, b = _finished(worker, seeds), _finished(device, seeds)
    assert b["resampled"].all()  # every sample took the device path
    _compare(a, b, levels=0.0 if interpolation == cv2.INTER_NEAREST else 2.0)
    if interpolation == cv2.INTER_NEAREST:  # nearest: the very pixels, no rounding anywhere
        assert torch.equal(a["image"], b["image"])


def test_finish_warp_against_cv2_warpaffine_directly():
    """A hand-made rotation + scale + flip, the whole source sent: cv2's float result to 1/32 px."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), (5, 5), 1.5)
    depth = rng.uniform(0.5, 5.0, (70, 90)).astype(np.float32)
    angle, scale = np.radians(7.0), 0.83
    m = np.array([[-scale * np.cos(angle), scale * np.sin(angle), 80.3], [scale * np.sin(angle), scale * np.cos(angle),
                                                                          3.7], [0, 0, 1]])  # output -> source
    m[:2, 2] += 1e-6
    for interpolation in (cv2.INTER_LINEAR, cv2.INTER_CUBIC):
        expected = cv2.warpAffine(image.astype(np.float32), m[:2], (64, 48), flags=interpolation | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        vector = torch.tensor(warp_vector(interpolation + 1, (48, 64), m, (0, 70, 0, 90)))[None]
        out, target, mask = finish_warp([torch.from_numpy(image)], [torch.from_numpy(depth)], vector, "cpu")
        got = out[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(got - expected).max() < 4.0 and np.abs(got - expected).mean() < 0.3
    nearest = cv2.warpAffine(depth, m[:2], (64, 48), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert (target[0, 0].numpy() == nearest).mean() >= 0.999
    assert torch.equal(mask[0, 0], torch.from_numpy(nearest > 0)) or (mask[0, 0].numpy() == (nearest > 0)).mean() >= 0.999


@pytest.mark.parametrize("convert", [None, "uts", "utss"])
def test_png_depth_mask_and_conversions_match(tmp_path, convert):
    """rgbd_folder's uint16 PNGs (holes and a mask folder), scaled and converted on the device:
    the worker path's samples (UTSS: the crop's median, as np.median takes it)."""
    rng = np.random.default_rng(1)
    for sub in ("rgb", "depth", "mask"):
        (tmp_path / sub).mkdir()
    for i in range(4):
        cv2.imwrite(str(tmp_path / "rgb" / f"{i}.png"), cv2.GaussianBlur(rng.integers(0, 256, (60, 80, 3), np.uint8),
                                                                         (3, 3), 1))
        depth = rng.integers(500, 9000, (60, 80)).astype(np.uint16)
        depth[rng.random((60, 80)) < 0.2] = 0
        cv2.imwrite(str(tmp_path / "depth" / f"{i}.png"), depth)
        cv2.imwrite(str(tmp_path / "mask" / f"{i}.png"), (rng.random((60, 80)) > 0.1).astype(np.uint8) * 255)
    then = {None: None, "uts": ToUTS(), "utss": ToUTSS()}[convert]
    worker = RGBDFolderDataset(tmp_path, depth_scale=1000.0, transform=Compose([_pair(False), then]))
    device = RGBDFolderDataset(tmp_path, depth_scale=1000.0, transform=Compose([_pair(True), then]))
    sample = device[0]
    assert sample["target"].dtype == torch.int16 and sample["image"].shape == (60, 80, 3) and "mask" not in sample
    a, b = _finished(worker, range(12)), _finished(device, range(12))
    assert b["resampled"].all()
    assert a["depth_type"] == b["depth_type"] == [convert or "absolute"] * 12
    _compare(a, b, levels=2.0, exact_depth=convert != "utss")  # UTSS: float32 medians taken differently
    both = a["mask"] & b["mask"]
    torch.testing.assert_close(b["target"][both], a["target"][both], rtol=1e-5, atol=0)


def test_a_large_source_is_warped_in_the_worker():
    """A source over MAX_SOURCE_RATIO times the crop is warped where it is read (warp[0] == 0);
    the device then only scales and masks: the same batch."""
    size = (160, 200)
    assert size[0] * size[1] > MAX_SOURCE_RATIO * 48 * 64
    worker = SyntheticDataset(length=4, height=size[0], width=size[1], transform=_pair(False))
    device = SyntheticDataset(length=4, height=size[0], width=size[1], transform=_pair(True))
    torch.manual_seed(0)
    assert float(device[0]["warp"][0]) == 0 and device[0]["image"].shape == (48, 64, 3)
    a, b = _finished(worker, range(8)), _finished(device, range(8))
    assert not b["resampled"].any()
    for key in ("image", "target", "mask"):
        assert torch.equal(a[key], b[key]), key


@pytest.mark.skipif(not (SHARED_NYU / "rgb").is_dir(), reason="../shared/data/real/nyuv2 is absent")
def test_real_nyu_frame_matches(tmp_path):
    """A real NYUv2 frame (8-bit RGB, 16-bit millimetre depth with holes) at the paper's crop."""
    rgb = sorted((SHARED_NYU / "rgb").glob("*"))[0]
    depth = sorted((SHARED_NYU / "depth").glob("*.png"))[0]
    (tmp_path / "rgb").mkdir(), (tmp_path / "depth").mkdir()
    (tmp_path / "rgb" / "a.png").write_bytes(cv2.imencode(".png", cv2.imread(str(rgb)))[1].tobytes())
    (tmp_path / "depth" / "a.png").write_bytes(depth.read_bytes())
    transforms = [TrainAugment(384, 512, colour_on_device=True, warp_on_device=w) for w in (False, True)]
    worker, device = (RGBDFolderDataset(tmp_path, depth_scale=1000.0, transform=t) for t in transforms)
    _compare(_finished(worker, range(6)), _finished(device, range(6)), levels=2.0)


def test_bad_input_and_places_are_refused():
    with pytest.raises(ValueError, match="warp_on_device needs colour_on_device"):
        TrainAugment(32, 32, warp_on_device=True)
    with pytest.raises(ValueError, match="warp_on_device needs"):
        TrainAugment(32, 32, interpolation=cv2.INTER_LANCZOS4, colour_on_device=True, warp_on_device=True)
    with pytest.raises(ValueError, match="legacy"):
        build_train_transform(32, 32, legacy=True, warp_on_device=True)
    vector = torch.tensor(warp_vector(2, (2, 2), np.eye(3), (0, 2, 0, 2)))[None]
    image, depth = [torch.zeros(2, 2, 3, dtype=torch.uint8)], [torch.ones(2, 2)]
    for bad in (float("nan"), 7.0):
        broken = vector.clone()
        broken[0, 0 if bad == 7.0 else 5] = bad
        with pytest.raises(ValueError, match="NaN, inf or an unknown resampling"):
            finish_warp(image, depth, broken, "cpu")
    with pytest.raises(ValueError, match=f"rows of {WARP_FIELDS}"):
        finish_warp(image, depth, vector[:, :5], "cpu")
    plain = SyntheticDataset(length=2, height=60, width=80, transform=_pair(False))
    warped = SyntheticDataset(length=2, height=60, width=80, transform=_pair(True))
    with pytest.raises(DataError, match="warp_on"):
        collate([warped[0], plain[1]])
    assert resolve_warp_place("auto", "device", "cuda") == "device"
    assert resolve_warp_place("auto", "workers", "cuda") == resolve_warp_place("auto", "device", "cpu") == "workers"
    with pytest.raises(ValueError, match="not one of auto, workers, device"):
        resolve_warp_place("gpu", "device", "cpu")
    with pytest.raises(ConfigError, match="data.warp_on: device needs the colour on the device too"):
        build_config({"data": {"warp_on": "device", "colour_on": "workers"}})
    cfg = build_config({"data": {"warp_on": "device"}})  # colour_on: auto is the device on CUDA ...
    from svde.training.distributed import DistContext
    from svde.training.loaders import build_train_loader

    with pytest.raises(ConfigError, match="needs the colour jitter on the device too"):  # ... not on a CPU
        build_train_loader(cfg, DistContext(device=torch.device("cpu")))
    from svde.training import train

    missing = build_config({"data": {"warp_on": "device", "train": [{"name": "rgbd_folder", "root": "/no/such/dir"}]},
                            "train": {"device": "cpu"}})
    with pytest.raises(ConfigError, match="needs the colour jitter on the device too"):  # before any data is read
        train(missing, Path("/no/such/run"))
    with pytest.raises(ConfigError, match="data.warp_on 'gpu' is not one of"):
        build_config({"data": {"warp_on": "gpu"}})


def test_training_with_warp_on_device(tmp_path, monkeypatch, two_step_run):
    """A tiny run with data.warp_on=device on the CPU: the step receives the workers' source
    arrays and warp vectors, trains on the cropped, normalised float batch, and its first loss is
    the in-worker run's to the change of operations."""
    import svde.training.step as step

    seen, first_loss = [], {}
    original = step.finish_batch

    def spy(batch, device):
        seen.append(("warp" in batch, "sources" in batch and "image" not in batch))
        out = original(batch, device)
        assert out["image"].dtype == torch.float32 and out["image"].shape[-2:] == (64, 64) and "warp" not in out
        return out

    monkeypatch.setattr(step, "finish_batch", spy)
    entry = {"name": "synthetic", "convert": "utss", "options": {"length": 8, "height": 72, "width": 96}}
    for place in ("workers", "device"):
        seen.clear()
        first_loss[place] = two_step_run(tmp_path / place, entry, {"colour_on": "device", "warp_on": place})
        assert seen and all(s == ((True, True) if place == "device" else (False, False)) for s in seen), seen
    assert first_loss["device"] == pytest.approx(first_loss["workers"], rel=0.02)


def _collate_in_worker(samples):
    batch = collate(samples)
    batch["allocated_shared"] = torch.tensor(batch["sources"].is_shared())
    return batch


def test_batches_travel_packed_from_workers():
    """A batch of deferred samples is a fixed number of tensors whatever its size (each tensor in
    flight holds a file descriptor: 2 per sample ran out at `ulimit -n` 1024 with batch 64 and 8
    workers), allocated in shared memory inside the worker, and unpacks to the very arrays."""
    from torch.utils.data import DataLoader

    ds = SyntheticDataset(length=8, height=60, width=80, transform=Compose([_pair(True), ToUTSS()]))
    for size in (2, 8):
        batch = collate([ds[i] for i in range(size)])
        assert sorted(k for k, v in batch.items() if torch.is_tensor(v)) == ["colour", "layout", "sources", "warp"]
    from svde.data.warp import pack_sources, unpack_sources

    images = [torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8), torch.randint(0, 256, (3, 2, 3), dtype=torch.uint8)]
    targets = [torch.randint(-9, 9, (5, 7), dtype=torch.int16), torch.randn(3, 2)]
    back = unpack_sources(*pack_sources(images, targets), "cpu")
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(images + targets, back[0] + back[1]))
    with pytest.raises(ValueError, match="cannot pack"):
        pack_sources([torch.zeros(2, 2)], [torch.zeros(2, 2)])
    loader = DataLoader(ds, batch_size=4, num_workers=1, collate_fn=_collate_in_worker)
    batch = next(iter(loader))
    assert bool(batch.pop("allocated_shared"))
    out = finish_batch(batch, "cpu")
    assert out["image"].shape == (4, 3, 48, 64) and out["mask"].any() and out["depth_type"] == ["utss"] * 4


def test_float_depth_with_nan_inf_and_negatives_is_masked():
    depth = torch.tensor([[1.0, float("nan")], [float("inf"), -2.0]])
    vector = torch.tensor(warp_vector(2, (2, 2), np.eye(3), (0, 2, 0, 2)))[None]
    _, target, mask = finish_warp([torch.zeros(2, 2, 3, dtype=torch.uint8)], [depth], vector, "cpu")
    assert mask.flatten().tolist() == [True, False, False, False] and target.flatten().tolist() == [1.0, 0, 0, 0]
