"""Colour jitter and normalisation on the batch (``data.colour_on``, :mod:`svde.data.colour`).

Independent references: albumentations' own ``ColorJitter.apply`` on float images (the steps the
in-worker path mirrors in uint8) and torchvision's ``adjust_hue`` for the hue turn.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from svde.data import DataError, SyntheticDataset, collate  # noqa: E402
from svde.data.colour import (IDENTITY, apply_colour, encode_colour, finish_batch, jitter_image,  # noqa: E402
                              resolve_colour_place, shift_hue)
from svde.data.transforms import TrainAugment, build_train_transform  # noqa: E402
from svde.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_image  # noqa: E402


def _images(n: int = 6, h: int = 48, w: int = 64) -> list[np.ndarray]:
    ds = SyntheticDataset(length=n, height=h, width=w)
    images = [ds.read(i)["image"] for i in range(n)]
    images.append(np.clip(images[0].astype(np.int32) * 2, 0, 255).astype(np.uint8))  # saturated: clipping matters
    return images


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def test_matches_albumentations_colour_jitter_on_float_images():
    """Every step order and factor, against ``A.ColorJitter.apply`` on the float image."""
    import albumentations as A

    jitter, rng = A.ColorJitter(), np.random.default_rng(0)
    images = _images()
    for i, image in enumerate(images * 3):
        factors = [float(v) for v in rng.uniform(0.8, 1.2, 3)]
        hue, order = float(rng.uniform(-0.05, 0.05)), [int(k) for k in rng.permutation(4)]
        expected = jitter.apply(image.astype(np.float32) / 255.0, *factors, hue, order)
        out = apply_colour(_chw(image)[None], torch.from_numpy(encode_colour((*factors, hue, order)))[None],
                           normalize=False)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(out, expected, atol=2e-6, err_msg=f"image {i}, order {order}")


@pytest.mark.parametrize("shift", [-0.05, 0.013, 0.25, 0.5, -0.4])
def test_hue_turn_matches_torchvision(shift):
    from torchvision.transforms.v2 import functional as TF

    x = torch.stack([_chw(image) for image in _images()]).float() / 255.0
    expected = TF.adjust_hue(x, shift)
    torch.testing.assert_close(shift_hue(x, torch.full((len(x),), shift)), expected, atol=2e-6, rtol=0)
    assert torch.equal(shift_hue(x, torch.zeros(len(x))), x)  # no turn: the very same values


def test_a_batch_mixes_orders_and_untouched_samples():
    """One call for the batch equals each sample alone; identity rows are just normalised."""
    images, rng = _images(), np.random.default_rng(1)
    plans = [None if i % 3 == 0 else (*rng.uniform(0.8, 1.2, 3), float(rng.uniform(-0.05, 0.05)),
                                      [int(k) for k in rng.permutation(4)]) for i in range(len(images))]
    colour = torch.from_numpy(np.stack([encode_colour(p) for p in plans]))
    batch = torch.stack([_chw(image) for image in images])
    out = apply_colour(batch, colour)
    for i, image in enumerate(images):
        alone = apply_colour(batch[i:i + 1], colour[i:i + 1])[0]
        torch.testing.assert_close(out[i], alone, atol=1e-5, rtol=0)
        if plans[i] is None:
            torch.testing.assert_close(out[i], normalize_image(image), atol=1e-5, rtol=0)


def test_agrees_with_the_uint8_worker_path_to_about_one_level():
    """The same drawn parameters in the workers (uint8, rounded after each step) and on the batch
    (float): the change of operations moves pixels by about a level, never by many."""
    aug, diffs = TrainAugment(48, 64), []
    torch.manual_seed(0)
    for image in _images() * 2:
        plan = aug.plan(image.shape)
        worker = jitter_image(image, plan.colour) if plan.colour else image
        device = apply_colour(_chw(image)[None], torch.from_numpy(encode_colour(plan.colour))[None], normalize=False)
        diffs.append(np.abs(device[0].permute(1, 2, 0).numpy() * 255.0 - worker.astype(np.float32)))
    diffs = np.concatenate([d.ravel() for d in diffs])
    assert diffs.mean() < 1.0 and np.percentile(diffs, 99) < 4.0 and diffs.max() < 8.0, (diffs.mean(), diffs.max())


def test_same_draws_same_geometry_in_both_places():
    """colour_on_device changes where the jitter runs, not what is drawn: geometry bit-identical,
    colour parameters those of the in-worker plan, and the next sample's draws unchanged."""
    ds = {place: SyntheticDataset(length=4, height=80, width=100,
                                  transform=build_train_transform(48, 64, colour_on_device=place == "device"))
          for place in ("workers", "device")}
    samples = {}
    for place, dataset in ds.items():
        torch.manual_seed(7)
        samples[place] = [dataset[i] for i in range(4)]
    for worker, device in zip(samples["workers"], samples["device"]):
        assert torch.equal(worker["target"], device["target"]) and torch.equal(worker["mask"], device["mask"])
        assert device["image"].dtype == torch.uint8 and device["image"].shape == (3, 48, 64)
        assert "colour" not in worker and device["colour"].shape == (len(IDENTITY),)
        on_device = finish_batch(collate([device]), "cpu")["image"][0]
        assert (on_device - worker["image"]).abs().mul(torch.from_numpy(IMAGENET_STD).view(3, 1, 1) * 255).mean() < 1.0


def test_finish_batch_and_collate():
    plain = SyntheticDataset(length=2, height=32, width=32)
    deferred = SyntheticDataset(length=2, height=32, width=32,
                                transform=build_train_transform(32, 32, colour_on_device=True))
    batch = collate([plain[0], plain[1]])
    out = finish_batch(batch, "cpu")
    assert torch.equal(out["image"], batch["image"]) and "colour" not in out
    out = finish_batch(collate([deferred[0], deferred[1]]), "cpu")
    assert out["image"].dtype == torch.float32 and "colour" not in out
    assert out["image"].min() >= float((0 - IMAGENET_MEAN.max()) / IMAGENET_STD.min()) - 1e-4
    with pytest.raises(DataError, match="colour_on"):
        collate([plain[0], deferred[1]])


def test_bad_input_is_refused():
    image = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):  # float in [0, 1] is taken (svde.data.warp), integers are not
        apply_colour(image.int(), torch.zeros((2, 9)))
    with pytest.raises(ValueError, match=r"colour \(2, 9\)"):
        apply_colour(image, torch.zeros((3, 9)))
    bad = torch.tensor([IDENTITY, IDENTITY])
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        apply_colour(image, bad)
    with pytest.raises(ValueError, match="permutation"):
        encode_colour((1.0, 1.0, 1.0, 0.0, [0, 0, 1, 2]))
    repeated = torch.tensor([IDENTITY, IDENTITY])
    repeated[0, 0], repeated[0, 5:] = 1.0, torch.tensor([0.0, 0.0, 1.0, 7.0])
    with pytest.raises(ValueError, match="permutation of 0..3"):
        apply_colour(image, repeated)
    with pytest.raises(ValueError, match="legacy"):
        build_train_transform(32, 32, legacy=True, colour_on_device=True)
    with pytest.raises(ValueError, match="not one of auto, workers, device"):
        resolve_colour_place("gpu", "cpu")


def test_auto_picks_the_device_on_cuda_only():
    assert resolve_colour_place("auto", "cpu") == "workers"
    assert resolve_colour_place("auto", torch.device("cuda", 1)) == "device"
    assert resolve_colour_place("device", "cpu") == "device" and resolve_colour_place("workers", "cuda") == "workers"


def test_normalize_image_fast_path_is_bitwise_the_old_one():
    """normalize_image copies planes with cv2.split now: same values as the permute-copy, for
    contiguous, flipped and cropped inputs."""
    from svde.preprocess import _OFFSET, _UINT8_SCALE

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for view in (rgb, rgb[:, ::-1], rgb[5:20, 3:40], rgb[::2]):
        old = torch.from_numpy(np.ascontiguousarray(view)).permute(2, 0, 1).contiguous().float()
        assert torch.equal(normalize_image(view), old.mul_(_UINT8_SCALE).sub_(_OFFSET))


def test_training_with_colour_on_device(tmp_path, monkeypatch, two_step_run):
    """Tiny runs with data.colour_on=workers and =device on the CPU, same seed: the step receives
    uint8 batches with their colour and trains on normalised float images; the first loss is the
    in-worker run's to the change of operations, and the image log shows the jittered input."""
    import svde.training.step as step

    seen, first_loss = [], {}
    original = step.finish_batch

    def spy(batch, device):
        seen.append((batch["image"].dtype, "colour" in batch))
        out = original(batch, device)
        assert out["image"].dtype == torch.float32 and "colour" not in out
        return out

    monkeypatch.setattr(step, "finish_batch", spy)
    for place in ("workers", "device"):
        seen.clear()
        first_loss[place] = two_step_run(tmp_path / place, {"name": "synthetic", "options": {"length": 8}},
                                         {"colour_on": place})
        expected = (torch.uint8, True) if place == "device" else (torch.float32, False)
        assert seen and all(s == expected for s in seen), seen
    assert first_loss["device"] == pytest.approx(first_loss["workers"], rel=0.02)


@pytest.mark.parametrize("transform", ["augment", "augment+utss", "colour_on_device", "legacy", "none"])
def test_png_depth_scaled_after_the_crop_gives_the_same_samples(tmp_path, transform):
    """rgbd_folder's 16-bit PNGs stay uint16 through TrainAugment's warp and are scaled at the
    crop's size (svde.data.io.read_depth_scaled): bit for bit the samples of scaling first, with
    zero pixels, an explicit mask folder, and every transform kind."""
    import cv2

    from svde.data import RGBDFolderDataset
    from svde.data.io import read_depth_any
    from svde.data.transforms import Compose, ToUTSS

    rng = np.random.default_rng(0)
    for sub in ("rgb", "depth", "mask"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "rgb" / f"{i}.png"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
        depth = rng.integers(500, 9000, (60, 80)).astype(np.uint16)
        depth[rng.random((60, 80)) < 0.2] = 0  # holes
        cv2.imwrite(str(tmp_path / "depth" / f"{i}.png"), depth)
        cv2.imwrite(str(tmp_path / "mask" / f"{i}.png"), (rng.random((60, 80)) > 0.1).astype(np.uint8) * 255)
    build = {"augment": lambda: build_train_transform(32, 48),
             "augment+utss": lambda: Compose([build_train_transform(32, 48), ToUTSS()]),
             "colour_on_device": lambda: build_train_transform(32, 48, colour_on_device=True),
             "legacy": lambda: build_train_transform(32, 48, legacy=True), "none": lambda: None}[transform]
    late = RGBDFolderDataset(tmp_path, depth_scale=1000.0, transform=build())
    early = RGBDFolderDataset(tmp_path, depth_scale=1000.0, transform=build())
    read = early.read
    early.read = lambda record: {**read(record), "target": read_depth_any(record[1], 1000.0), "depth_scale": None}
    assert late.read(late.records[0])["target"].dtype == np.uint16
    for i in range(3):
        torch.manual_seed(i)
        a = late[i]
        torch.manual_seed(i)
        b = early[i]
        for key in ("image", "target", "mask"):
            assert torch.equal(a[key], b[key]), (transform, i, key)
        assert a["mask"].any() and not a["mask"].all() and (a["target"][~a["mask"]] == 0).all()
