"""The fast inference paths compute the same function as the straightforward network (issue 9)."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import svde.models.decoder as decoder_module
from svde.models import (
    MODELS,
    InferenceModel,
    build_model,
    fold_batchnorm,
    load_model,
    optimize_for_inference,
    save_checkpoint,
)
from svde.models.layers import max_pool5, max_pool5_separable


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so that folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model


def plain_max_pool(monkeypatch) -> None:
    """From here on the decoder calls F.max_pool2d(x, 5, 1, 2) itself, as the authors wrote it."""
    monkeypatch.setattr(decoder_module, "max_pool5", lambda t: F.max_pool2d(t, 5, 1, 2))


def straightforward(model: nn.Module) -> nn.Module:
    """The same weights as usually run: NCHW, BatchNorm layers, no folded copy."""
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def distinct_values(*shape, channels_last=False):
    """A tensor without ties (a permutation), so max-pool gradients have one answer."""
    x = torch.randperm(torch.Size(shape).numel(), generator=torch.Generator().manual_seed(1)).float()
    x = (x / x.numel() - 0.5).reshape(shape)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 4, 1, 3), (1, 2, 5, 2), (1, 16, 12, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_separable_max_pool_values_and_gradients(shape, channels_last):
    x = distinct_values(*shape, channels_last=channels_last).requires_grad_(True)
    ref = F.max_pool2d(x, 5, 1, 2)
    out = max_pool5_separable(x)
    assert torch.equal(out, ref)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    (ga,) = torch.autograd.grad(out, x, g)
    (gb,) = torch.autograd.grad(ref, x, g)
    # Same elements receive the same terms; only the summation order may differ.
    assert torch.allclose(ga, gb, rtol=1e-6, atol=1e-6)
    assert torch.equal(ga != 0, gb != 0)


def test_max_pool5_training_gradients_exact_even_with_ties():
    # Values with many ties: with autograd on, max_pool5 is F.max_pool2d itself.
    x = torch.randint(0, 3, (2, 3, 10, 10)).float().requires_grad_(True)
    g = torch.randn(2, 3, 10, 10)
    (ga,) = torch.autograd.grad(max_pool5(x), x, g)
    (gb,) = torch.autograd.grad(F.max_pool2d(x, 5, 1, 2), x, g)
    assert torch.equal(ga, gb)
    with torch.no_grad():
        assert torch.equal(max_pool5(x), F.max_pool2d(x, 5, 1, 2))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*\(3, 10, 10\)"):
        max_pool5_separable(x[0])


# B1-B5 run the same code as B0 at larger sizes: CI checks mn/lite0/b0, `-m slow` the rest.
ALL_MODELS = [n if n in ("mn_lrn4", "lite0_lrn4", "b0_lrn4") else pytest.param(n, marks=pytest.mark.slow) for n in MODELS]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fast_model_matches_straightforward_form(name, monkeypatch):
    model = randomize(build_model(name)).eval()
    assert model.is_channels_last()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = optimize_for_inference(model)(x)
        plain_max_pool(monkeypatch)
        ref = straightforward(model)(x)
    assert fast.shape == ref.shape == (1, 1, 64, 96)
    assert (fast - ref).abs().max().item() <= 1e-4
    # Every BatchNorm of every encoder was folded (the fast path is really taken).
    _, folded = fold_batchnorm(model)
    assert folded == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _train_step(model, size=64, monkeypatch=None):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    target = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    dtype = next(model.parameters()).dtype
    if monkeypatch is not None:
        plain_max_pool(monkeypatch)
    torch.manual_seed(0)  # EfficientNet-B's drop-connect draws the same masks in both runs
    F.mse_loss(model(x.to(dtype)), target.to(dtype)).backward()
    return {n: p.grad for n, p in model.named_parameters()}, dict(model.named_buffers())


@pytest.mark.parametrize("name", ["mn_lrn4", "lite0_lrn4", pytest.param("b0_lrn4", marks=pytest.mark.slow)])
def test_training_gradients_identical_to_straightforward_form(name, monkeypatch):
    # In the same memory layout, the training path (max-pool, in-place sums) computes exactly
    # the straightforward network's gradients and running statistics, bit for bit.
    model = randomize(build_model(name), seed=3).train().to(memory_format=torch.contiguous_format)
    ref = straightforward(model)
    grads, buffers = _train_step(model, size=32)
    ref_grads, ref_buffers = _train_step(ref, size=32, monkeypatch=monkeypatch)
    assert all(torch.equal(grads[n], g) for n, g in ref_grads.items())
    assert all(torch.equal(buffers[n], b) for n, b in ref_buffers.items())


@pytest.mark.slow
def test_training_gradients_channels_last(monkeypatch):
    # Channels-last kernels sum in another order; train-mode BatchNorm over the tiny deepest
    # maps amplifies that rounding enormously, so this runs in float64 (slowly).
    model = randomize(build_model("mn_lrn4"), seed=3).train().double()
    assert model.is_channels_last()
    ref = straightforward(model)
    grads, buffers = _train_step(model)
    ref_grads, ref_buffers = _train_step(ref, monkeypatch=monkeypatch)
    for n, g in ref_grads.items():
        # Norms, not elements: some gradients are zero up to rounding (BatchNorm biases whose
        # shift a following train-mode BatchNorm cancels); a wrong gradient is off by O(1).
        error = (grads[n] - g).norm().item()
        assert error <= 1e-4 * g.norm().item() + 1e-12, (n, error, g.norm().item())
    for n, b in ref_buffers.items():
        assert torch.allclose(buffers[n], b, rtol=1e-6, atol=1e-9), n


def test_state_dict_and_training_untouched_by_fast_path():
    torch.manual_seed(0)
    model = randomize(build_model("mn_lrn4"))
    twin = copy.deepcopy(model)  # never goes through eval
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_params = len(list(model.parameters()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        optimize_for_inference(model.eval())(x)
        model(x)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert len(list(model.parameters())) == n_params
    assert not any("folded" in n for n, _ in model.named_modules())

    # Back to training: exactly the same computation as a model that was never in eval mode.
    model.train()
    twin.train()
    out_a, out_b = model(x), twin(x)
    assert torch.equal(out_a, out_b)
    out_a.sum().backward()
    out_b.sum().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(model.parameters(), twin.parameters()))


def test_fast_path_under_inference_mode_and_autocast():
    model = randomize(build_model("mn_lrn4")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = straightforward(model)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # folding must not be abandoned in these contexts
        with torch.inference_mode():
            got = optimize_for_inference(model)(x)
        assert (got - expected).abs().max().item() <= 1e-4
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            low = optimize_for_inference(model)(x)
    assert low.dtype == torch.bfloat16
    assert (low.float() - expected).abs().max().item() <= 0.1 * expected.abs().max().item()


def test_eval_with_autograd_runs_the_module_itself():
    model = randomize(build_model("mn_lrn4")).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    model(x).sum().backward()  # gradients reach the model's own parameters and the input
    assert model.head.conv.weight.grad is not None
    assert model.encoder.layers[1][0][0].weight.grad is not None
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_channels_last_layout_and_checkpoints(tmp_path):
    model = randomize(build_model("mn_lrn4")).eval()
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        loaded = load_model(save_checkpoint(tmp_path / "m.pt", model))
        assert loaded.is_channels_last()
        assert (loaded(x) - expected).abs().max().item() <= 1e-6
        # An NCHW state dict loads into the channels-last model and vice versa.
        nchw = straightforward(model)
        assert not nchw.is_channels_last()
        fresh = build_model("mn_lrn4").eval()
        fresh.load_state_dict(nchw.state_dict())
        assert fresh.is_channels_last()
        assert (fresh(x) - expected).abs().max().item() <= 1e-6
        assert (optimize_for_inference(nchw)(x) - expected).abs().max().item() <= 1e-5


def test_forward_is_the_plain_network():
    # forward means one thing: in eval mode under no_grad every BatchNorm still runs (nothing
    # is folded behind the caller's back) and FLOP counting sees the model's own operations.
    from torch.utils.flop_counter import FlopCounterMode

    model = randomize(build_model("mn_lrn4")).eval()
    calls = []
    handles = [m.register_forward_hook(lambda *a: calls.append(1)) for m in model.modules()
               if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    for h in handles:
        h.remove()
    assert len(calls) == len(handles) > 0
    with torch.no_grad(), FlopCounterMode(display=False) as ref_counter:
        ref = straightforward(model)(x)
    assert counter.get_total_flops() == ref_counter.get_total_flops() > 0
    assert (out - ref).abs().max().item() <= 1e-5


def test_for_inference_and_the_input_contract():
    import numpy as np

    from svde.models.fast import for_inference

    model = randomize(build_model("mn_lrn4")).eval()
    fast = for_inference(model)
    assert isinstance(fast, InferenceModel) and for_inference(fast) is fast
    assert (fast.stride, fast.mean, fast.std, fast.name) == (32, model.mean, model.std, "mn_lrn4")
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    x = fast.prepare_input(rgb)
    assert tuple(x.shape) == (1, 3, 64, 64) and fast.input_size(480, 500, 384) == (384, 384)
    # uint8 and float [0, 1] give the same network input
    assert torch.allclose(x, model.prepare_input(rgb.astype(np.float32) / 255.0), atol=1e-6)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-5
    plain = nn.Conv2d(3, 1, 1).train()
    assert for_inference(plain) is plain and not plain.training


class _ConvBNShared(nn.Module):
    """conv -> BN, but the conv output is also added back: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(3, track_running_stats=False)

    def forward(self, x):
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


def test_fold_only_where_exact():
    model = randomize(_ConvBNShared()).eval()
    folded, n = fold_batchnorm(model)
    assert n == 0  # shared conv output, and a BatchNorm using batch statistics in eval
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn2, nn.BatchNorm2d)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))


def test_optimize_for_inference_snapshot():
    model = randomize(build_model("lite0_lrn4")).eval()
    fast = optimize_for_inference(model)
    assert isinstance(fast, InferenceModel) and not fast.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert all(k.startswith("module.") for k in fast.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    assert (fast(x) - expected).abs().max().item() <= 1e-5
    assert not fast(x).requires_grad
    with torch.no_grad():
        model.head.conv.bias.add_(1.0)  # a snapshot: later changes do not reach it
    assert (fast(x) - expected).abs().max().item() <= 1e-5
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fast.train()
    with pytest.raises(ValueError, match="cuda_graphs=True needs compile=True"):
        optimize_for_inference(model, cuda_graphs=True)
    with pytest.raises(ValueError, match="CUDA device.*cpu"):
        optimize_for_inference(model, compile=True, cuda_graphs=True)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        fast(torch.zeros(1, 1, 64, 64))


@pytest.mark.slow
def test_compiled_path_matches():
    model = randomize(build_model("mn_lrn4")).eval()
    fast = optimize_for_inference(model, compile=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    assert (fast(x) - expected).abs().max().item() <= 1e-4
