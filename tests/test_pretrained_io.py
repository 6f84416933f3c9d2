"""DepthModel.infer_image (photo in, depth out) and save_pretrained / from_pretrained."""

import json

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from svde import preprocess
from svde.errors import RunFailed, UserError
from svde.models import (CheckpointError, PretrainedWeightsUnavailable, build_model, from_pretrained,
                         save_pretrained)


def _photo(h=50, w=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def varied():
    """An mn_lrn4 with random BatchNorm statistics and a head whose output spans several units."""
    torch.manual_seed(3)
    model = build_model("mn_lrn4")
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
        model.head.conv.weight.mul_(200.0)
    return model.eval()


def test_infer_image_at_input_resolution_in_every_domain(varied):
    rgb = _photo()
    out = {d: varied.infer_image(rgb, domain=d) for d in ("log_disparity", "disparity", "depth", "log_depth")}
    for value in out.values():
        assert value.shape == (50, 70) and value.dtype == np.float32 and np.isfinite(value).all()
    assert np.ptp(out["log_disparity"]) > 1.0  # the test model's output varies over several units
    assert np.allclose(out["disparity"], np.exp(out["log_disparity"]), rtol=1e-5, atol=0)
    assert np.allclose(out["depth"], 1.0 / out["disparity"], rtol=1e-5, atol=0)
    assert np.array_equal(out["log_depth"], -out["log_disparity"])
    assert np.array_equal(varied.infer_image(rgb, domain="log-depth"), out["log_depth"])
    with pytest.raises(ValueError, match="unknown output domain 'metric'; valid domains: log_disparity"):
        varied.infer_image(rgb, domain="metric")


def test_infer_image_uses_the_input_contract_and_upsamples_log_disparity(varied):
    rgb = _photo(45, 77)
    got = varied.infer_image(rgb, domain="disparity", short_side=64)
    x = preprocess.prepare_input(rgb, short_side=64)
    assert tuple(x.shape[-2:]) == varied.input_size(45, 77, short_side=64) == (64, 96)
    with torch.no_grad():
        log_disp = varied(x).double()  # the plain network, not the folded snapshot
    # As svde's (and the authors') UTS evaluation: log-disparity is upsampled, then exponentiated.
    expected = F.interpolate(log_disp, size=(45, 77), mode="bilinear", align_corners=False).exp()[0, 0].numpy()
    assert np.allclose(got, expected, rtol=1e-4, atol=0)
    # Upsampling the disparity would be a different answer: the test tells them apart.
    in_disp = F.interpolate(log_disp.exp(), size=(45, 77), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert not np.allclose(in_disp, expected, rtol=1e-2, atol=0)


def test_infer_image_keeps_the_model_and_follows_weight_changes():
    torch.manual_seed(5)
    model = build_model("mn_lrn4").train()
    rgb = _photo(32, 32)
    first = model.infer_image(rgb, domain="log_disparity")
    assert model.training and all(p.grad is None for p in model.parameters())
    assert np.array_equal(model.infer_image(rgb, domain="log_disparity"), first)
    with torch.no_grad():
        model.head.conv.bias.add_(1.0)  # in place: the cached snapshot must be rebuilt
    assert np.allclose(model.infer_image(rgb, domain="log_disparity"), first + 1.0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:BatchNorm folding changes the output")
def test_infer_image_refuses_non_finite_and_overflowing_output():
    torch.manual_seed(6)
    model = build_model("mn_lrn4").eval()
    with torch.no_grad():
        model.head.conv.weight.zero_()
        model.head.conv.bias.fill_(-100.0)  # log-disparity -100: depth e^100 overflows float32
    assert np.allclose(model.infer_image(_photo(32, 32), domain="log_depth"), 100.0)
    with pytest.raises(RunFailed, match="depth: 1024 values overflow float32.*use a log domain"):
        model.infer_image(_photo(32, 32), domain="depth")
    with torch.no_grad():
        model.head.conv.bias.fill_(float("nan"))
    with pytest.raises(RunFailed, match="mn_lrn4 produced 1024 non-finite values for a 32x32 image"):
        model.infer_image(_photo(32, 32))


def test_infer_image_rejects_what_is_not_an_rgb_array():
    model = build_model("mn_lrn4").eval()
    rgb = _photo(32, 32)
    # float RGB in [0, 1] is the same image as its uint8 form
    assert np.allclose(model.infer_image(rgb.astype(np.float32) / 255.0), model.infer_image(rgb), rtol=1e-4)
    for bad in (np.zeros((32, 32), np.uint8), torch.zeros(32, 32, 3)):
        with pytest.raises(ValueError, match=r"expected an RGB image: a PIL image or a numpy array of shape \(H, W, 3\)"):
            model.infer_image(bad)


def test_save_pretrained_round_trip(varied, tmp_path):
    folder = save_pretrained(varied, tmp_path / "mn", notes="Trained on nothing; a test.")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_name"] == "mn_lrn4" and config["output"]["domain"] == "log_disparity"
    assert config["input"]["mean"] == list(varied.mean) and config["input"]["stride"] == 32
    assert config["svde_version"] and config["architecture"] == {"encoder": "mobilenet_v2", "crp_stages": 4}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: svde\n") and "a test." in card
    loaded = from_pretrained(folder)
    assert not loaded.training and loaded.is_channels_last() and loaded.name == "mn_lrn4"
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), varied(x))
    assert np.array_equal(loaded.infer_image(_photo()), varied.infer_image(_photo()))
    assert from_pretrained(str(folder)).state_dict().keys() == varied.state_dict().keys()


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("change, message", [
    ({"model_name": "lite0_lrn4"}, "architecture .*mobilenet_v2.* does not match lite0_lrn4"),
    ({"model_name": "lite0_lrn4", "architecture": {"encoder": "efficientnet_lite0", "crp_stages": 4}},
     r"model\.safetensors does not fit lite0_lrn4 \(from .*config.json\): .*missing keys"),
    ({"model_name": "mn_lrn9"}, "model_name 'mn_lrn9' is not one of mn_lrn4"),
    ({"format": "something"}, "expected format 'svde-pretrained'"),
    ({"version": 2}, "version 2, this svde reads version 1"),
    ({"input__std": [1.0, 1.0, 1.0]}, r"input std \[1.0, 1.0, 1.0\], this svde's mn_lrn4 expects"),
    ({"output__domain": "depth"}, "output .* does not match mn_lrn4"),
])
def test_mismatching_config_is_refused(tmp_path, change, message):
    folder = save_pretrained(build_model("mn_lrn4"), tmp_path / "m")
    _edit_config(folder, **change)
    with pytest.raises(CheckpointError, match=message):
        from_pretrained(folder)


def test_mismatching_or_missing_weights_are_refused(tmp_path):
    folder = save_pretrained(build_model("mn_lrn4"), tmp_path / "m")
    weights = folder / "model.safetensors"
    state = safetensors.torch.load_file(str(weights))
    del state["head.conv.bias"]
    safetensors.torch.save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"does not fit mn_lrn4 .*1 missing keys \(e.g. head.conv.bias\)"):
        from_pretrained(folder)
    state = safetensors.torch.load_file(str(save_pretrained(build_model("mn_lrn4"), tmp_path / "n") / "model.safetensors"))
    state["head.conv.bias"] = torch.full_like(state["head.conv.bias"], float("inf"))
    safetensors.torch.save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="non-finite values in 1 tensors"):
        from_pretrained(folder)
    weights.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        from_pretrained(folder)
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        from_pretrained(folder)


def test_from_pretrained_sources(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder written by save_pretrained"):
        from_pretrained(tmp_path / "nothing" / "here")
    # HF_HUB_OFFLINE=1 (tests/conftest.py): a repo id that is not cached fails at once.
    with pytest.raises(PretrainedWeightsUnavailable, match="cannot get someone/svde-mn from the Hugging Face hub"):
        from_pretrained("someone/svde-mn")


def test_save_pretrained_refuses_what_it_cannot_describe(tmp_path):
    model = build_model("mn_lrn4")
    model.name = "custom"
    with pytest.raises(UserError, match="save_pretrained needs one of the named models"):
        save_pretrained(model, tmp_path / "a")
    model.name = "mn_lrn4"
    with torch.no_grad():
        model.head.conv.bias.fill_(float("nan"))
    with pytest.raises(RunFailed, match="head.conv.bias holds non-finite values"):
        save_pretrained(model, tmp_path / "b")
    assert not (tmp_path / "b" / "model.safetensors").exists()
