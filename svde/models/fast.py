"""Inference speed, in one explicit place: BatchNorm folding and the optional compiled path.

:class:`~svde.models.DepthModel`'s ``forward`` is the plain network. For prediction,
:func:`optimize_for_inference` returns an :class:`InferenceModel`: a frozen snapshot with every
BatchNorm that directly follows a convolution folded into that convolution, channels-last, run
without autograd, optionally compiled with ``torch.compile`` (and CUDA graphs on a GPU).
:mod:`svde.api`, the evaluator, the scripts and the benchmarks all get their speed from it;
training never sees it.

Which convolution feeds which BatchNorm is found by running the network once on a small input
(forward hooks plus the autograd graph), so it works for every encoder without per-architecture
code; a pair is folded only when the convolution's output goes to that BatchNorm alone. The
folded copy's output is then compared with the module's on that input, and folding is
abandoned (with a warning) if they differ by more than :data:`FOLD_TOLERANCE`.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections import Counter
from itertools import chain
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

# Largest accepted difference between folded and unfolded outputs, relative to the output's
# magnitude (max(1, max |y|)); rounding alone stays two orders of magnitude below.
FOLD_TOLERANCE = 1e-4
# The probe input: the smallest size all encoders accept (stride 32), to keep folding cheap.
PROBE_SIZE = 32


def _replacement_for(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What a BatchNorm becomes once folded, or ``None`` if it cannot be folded."""
    if bn.running_mean is None or bn.running_var is None:
        return None  # no running statistics: normalises with batch statistics even in eval
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    from timm.layers import BatchNormAct2d

    if type(bn) is BatchNormAct2d:  # timm's BatchNorm + dropout + activation in one module
        return nn.Sequential(bn.drop, bn.act)
    return None


def _conv_bn_pairs(model: nn.Module, probe: torch.Tensor) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """Names of (conv, BatchNorm) pairs where the conv's output feeds that BatchNorm only.

    Runs ``model`` once on ``probe`` with autograd on. A forward hook records each conv's
    output tensor and its autograd node; a pre-hook on each BatchNorm checks whether its input
    is such an output, untouched since (same node, so no in-place op in between). The autograd
    graph then tells how many operations consume each conv output. Modules called more than
    once are left alone. Returns the pairs and the model's output on ``probe``.
    """
    names = {id(m): n for n, m in model.named_modules()}
    conv_out: dict[int, tuple[nn.Module, torch.Tensor, Any]] = {}  # id(out) -> (conv, out, node)
    candidates: list[tuple[nn.Module, nn.Module, Any]] = []
    calls: Counter[int] = Counter()

    def after_conv(module: nn.Module, args: tuple, out: Any) -> None:
        calls[id(module)] += 1
        if isinstance(out, torch.Tensor):
            # Keeping `out` alive keeps its id unique for the whole pass.
            conv_out[id(out)] = (module, out, out.grad_fn)

    def before_bn(module: nn.Module, args: tuple) -> None:
        calls[id(module)] += 1
        x = args[0] if args else None
        hit = conv_out.get(id(x)) if isinstance(x, torch.Tensor) else None
        if hit is not None and hit[2] is not None and x.grad_fn is hit[2]:
            candidates.append((hit[0], module, hit[2]))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.enable_grad():
            out = model(probe.requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()

    consumers: Counter[Any] = Counter()
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for parent, _ in node.next_functions:
            if parent is not None:
                consumers[parent] += 1
                stack.append(parent)
    pairs = [
        (names[id(conv)], names[id(bn)])
        for conv, bn, node in candidates
        if consumers[node] == 1 and calls[id(conv)] == 1 and calls[id(bn)] == 1
    ]
    return pairs, out.detach()


def _fold_pair(model: nn.Module, conv_name: str, bn_name: str) -> bool:
    """Fold BatchNorm ``bn_name`` into conv ``conv_name`` (both in ``model``); False if it cannot be."""
    conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
    replacement = _replacement_for(bn)
    if replacement is None:
        return False
    with torch.no_grad():
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                            bn.eps, bn.weight, bn.bias)
    channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # New Parameters on this module only: the original conv keeps its own weight.
    conv.weight = nn.Parameter(weight.contiguous(memory_format=layout), requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)
    parent, _, child = bn_name.rpartition(".")
    setattr(model.get_submodule(parent), child, replacement)
    return True


def _plain_copy(model: nn.Module, share: bool) -> nn.Module:
    """An eval-mode deep copy of ``model`` (sharing its tensors when ``share``)."""
    memo: dict[int, Any] = {id(t): t for t in chain(model.parameters(), model.buffers())} if share else {}
    return copy.deepcopy(model, memo).eval()


def fold_batchnorm(model: nn.Module, share: bool = True) -> tuple[nn.Module, int]:
    """An eval-mode copy of an image model (input ``(B, 3, H, W)``) with BatchNorms folded
    into the convolutions before them.

    ``model`` itself is not modified. With ``share=True`` the copy shares every tensor that
    folding leaves unchanged (cheap, but in-place updates of those reach the copy); with
    ``share=False`` it is an independent snapshot whose parameters need no gradient.
    Returns the copy and the number of folded pairs (0 when the folded output would differ by
    more than :data:`FOLD_TOLERANCE`; a warning then says so).

    Example:
        >>> from svde.models import build_model
        >>> folded, n = fold_batchnorm(build_model("mn_lrn4"))
        >>> n
        76
    """
    reference = next(chain(model.parameters(), model.buffers()), None)
    if reference is None:
        return _plain_copy(model, share), 0
    dtype = reference.dtype if reference.is_floating_point() else torch.float32
    # The copy and the probe run in full precision and with autograd available, whatever the
    # caller's context (autocast, inference_mode): the pairs are found through the autograd graph.
    with torch.inference_mode(False), torch.autocast(reference.device.type, enabled=False):
        twin = _plain_copy(model, share)
        probe = torch.randn(1, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))
        probe = probe.to(device=reference.device, dtype=dtype)
        pairs, expected = _conv_bn_pairs(twin, probe.clone())
        folded = sum(_fold_pair(twin, conv_name, bn_name) for conv_name, bn_name in pairs)
        with torch.no_grad():
            got = twin(probe)
    scale = max(1.0, expected.abs().max().item())
    error = (got - expected).abs().max().item() if torch.isfinite(got).all() else float("inf")
    if not error <= FOLD_TOLERANCE * scale:
        warnings.warn(f"BatchNorm folding changes the output by {error:.3g} (> {FOLD_TOLERANCE:g} x {scale:.3g}); "
                      "running without folding")
        with torch.inference_mode(False):
            twin, folded = _plain_copy(model, share), 0
    if not share:
        twin.requires_grad_(False)  # its own tensors; shared ones belong to the caller
    return twin, folded


_CONTRACT = ("stride", "mean", "std", "output_domain", "input_size", "prepare_input", "is_channels_last")


class InferenceModel(nn.Module):
    """A frozen model for prediction only: no gradients, channels-last input, optional compile.

    Built by :func:`optimize_for_inference`; ``module`` is the folded snapshot and ``run`` the
    callable actually invoked (the snapshot or its compiled version).
    """

    def __init__(self, module: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], channels_last: bool) -> None:
        super().__init__()
        self.module = module
        # The snapshot keeps the model's name and input contract (stride, mean, std, ...).
        self.name = getattr(module, "name", "")
        # Not registered as a submodule: a compiled wrapper would duplicate the state dict.
        object.__setattr__(self, "_run", run)
        self.channels_last = channels_last

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels_last and image.ndim == 4:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self._run(image)

    def __getattr__(self, name: str) -> Any:
        # The input contract (stride, mean, std, input_size, prepare_input, output_domain) is
        # the wrapped model's; nn.Module's own lookup (parameters, submodules) comes first.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in _CONTRACT:
                return getattr(self._modules["module"], name)
            raise

    def train(self, mode: bool = True) -> "InferenceModel":
        if mode:
            raise RuntimeError("an InferenceModel (optimize_for_inference) cannot be trained; train the original model")
        return super().train(False)


def optimize_for_inference(model: nn.Module, compile: bool = False, cuda_graphs: bool = False,
                           dynamic: bool | None = None) -> InferenceModel:
    """A frozen, BatchNorm-folded, channels-last snapshot of ``model`` for prediction.

    Later changes to ``model`` are not seen by the snapshot. Args:
        compile: ``torch.compile`` it (Inductor, with weight freezing: constant-folds and
            pre-packs the weights). The first calls compile (tens of seconds on CPU); each new
            input size compiles again unless ``dynamic=True``.
        cuda_graphs: replay CUDA graphs (``mode="reduce-overhead"``); needs ``compile=True`` and
            a model on a CUDA device. Fixed input shapes give the full benefit.
        dynamic: passed to ``torch.compile``.

    Example:
        >>> from svde.models import build_model
        >>> fast = optimize_for_inference(build_model("mn_lrn4"))
        >>> fast(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """
    model = getattr(model, "module", model)  # unwrap DDP / a previous InferenceModel
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference expects an nn.Module, got {type(model).__name__}")
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    if cuda_graphs and not compile:
        raise ValueError("cuda_graphs=True needs compile=True (CUDA graphs are captured by torch.compile)")
    if cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs=True needs the model on a CUDA device, it is on {device}")
    snapshot, _ = fold_batchnorm(model, share=False)
    snapshot = snapshot.to(memory_format=torch.channels_last)
    run: Callable[[torch.Tensor], torch.Tensor] = snapshot
    if compile:
        options = {"freezing": True}
        if cuda_graphs:
            options["triton.cudagraphs"] = True
        run = torch.compile(snapshot, options=options, dynamic=dynamic)
    return InferenceModel(snapshot, run, channels_last=True).eval()


def _state_key(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced, moved, cast or modified in place."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in chain(model.parameters(), model.buffers()))


# model -> (state key, snapshot): predicting image after image folds the model once, and any
# change to its weights (an optimiser step, load_state_dict, .to()) makes a new snapshot.
_SNAPSHOTS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, InferenceModel]]" = weakref.WeakKeyDictionary()


def for_inference(model: nn.Module) -> nn.Module:
    """What prediction runs: an :class:`InferenceModel` as is, a DepthModel's (any module with
    the input contract: ``stride``, ``mean``, ``std``, ``output_domain``) folded snapshot
    (:func:`optimize_for_inference`, cached until the model's weights change), any other
    module itself in eval mode.

    The one place the API, the evaluator and the scripts get their default speed from. Edits
    through ``tensor.data`` bypass the version counters the cache relies on: call
    :func:`optimize_for_inference` directly after those.

    Example:
        >>> from svde.models import build_model
        >>> model = build_model("mn_lrn4")
        >>> for_inference(model) is for_inference(model)
        True
    """
    if isinstance(model, InferenceModel):
        return model
    inner = getattr(model, "module", model)  # unwrap DDP
    if not all(hasattr(inner, name) for name in _CONTRACT[:4]):  # not a DepthModel-like network
        return inner.eval()
    if any(t.is_inference() for t in chain(inner.parameters(), inner.buffers())):
        # made under torch.inference_mode(): such tensors have no version counter to key a cache on
        return optimize_for_inference(inner)
    key = _state_key(inner)
    cached = _SNAPSHOTS.get(inner)
    if cached is None or cached[0] != key:
        cached = (key, optimize_for_inference(inner))
        _SNAPSHOTS[inner] = cached
    return cached[1]
