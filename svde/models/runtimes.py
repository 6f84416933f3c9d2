"""Running an exported depth network in ONNX Runtime or OpenVINO on the CPU, as a module.

:func:`onnx_runner` gives a function (B, 3, H, W) float32 -> (B, 1, H, W) log-disparity for an
ONNX file in either runtime (OpenVINO at an inference precision, fp32 or bf16, compiled per
input shape); :func:`fastest_runner` times the runtimes on this machine and keeps the faster;
:class:`RuntimeModel` wraps a runner as a parameter-free module that :func:`svde.models.predict`
runs like the PyTorch network. OpenVINO is an optional extra (:data:`OPENVINO_EXTRA`).
:mod:`svde.models.precision` builds on these.

Example:
    >>> run = onnx_runner("mn.onnx", "onnxruntime")  # doctest: +SKIP
    >>> run(x).shape                                  # doctest: +SKIP
    (1, 1, 384, 384)
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from svde.errors import UserError, unknown_name

OPENVINO_EXTRA = "pip install 'svde[openvino]' (or: pip install openvino)"


class MissingRuntime(UserError):
    """A precision needs a runtime that is not installed (an optional extra)."""


def openvino_installed() -> bool:
    """Whether OpenVINO can be imported."""
    try:
        require_openvino()
    except MissingRuntime:
        return False
    return True


def require_openvino() -> Any:
    """The ``openvino`` module, or a :class:`MissingRuntime` error naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise MissingRuntime(f"--precision bf16 runs in OpenVINO, which is not installed: {OPENVINO_EXTRA}") from None
    return openvino


def onnxruntime_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (default: PyTorch's count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OpenVinoRunner:
    """An ONNX file compiled by OpenVINO for the CPU at one inference precision, per input shape.

    ``precision`` is ``"bf16"`` or ``"fp32"`` (OpenVINO's ``INFERENCE_PRECISION_HINT``); each new
    input shape is compiled once (static shapes run fastest) and cached.
    """

    def __init__(self, path: str | os.PathLike, precision: str = "bf16", threads: int | None = None) -> None:
        ov = require_openvino()
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.config = {"INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[precision],
                       "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                       "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self.compiled: dict[tuple[int, ...], Any] = {}

    def compiled_for(self, shape: tuple[int, ...]) -> Any:
        """The model compiled for inputs of ``shape``."""
        if shape not in self.compiled:
            model = self.model.clone()
            model.reshape({model.inputs[0].any_name: list(shape)})
            self.compiled[shape] = self.core.compile_model(model, "CPU", self.config)
        return self.compiled[shape]

    def inference_precision(self, shape: tuple[int, ...]) -> str:
        """The precision OpenVINO actually computes in (``bf16`` or ``f32``) for ``shape``."""
        value = self.compiled_for(shape).get_property("INFERENCE_PRECISION_HINT")
        return value.to_string() if hasattr(value, "to_string") else str(value)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled_for(tuple(x.shape))(x)[0])


def onnx_runner(path: str | os.PathLike, runtime: str, precision: str = "fp32",
                threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function (B, 3, H, W) float32 -> (B, 1, H, W) log-disparity running ``path`` in ``runtime``
    (``onnxruntime`` or ``openvino``, the latter at ``precision`` fp32 or bf16)."""
    if runtime == "openvino":
        return OpenVinoRunner(path, precision, threads)
    if runtime != "onnxruntime":
        raise unknown_name("runtime", runtime, ("onnxruntime", "openvino"))
    session = onnxruntime_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


class RuntimeModel(nn.Module):
    """A depth network run by ONNX Runtime or OpenVINO: (B, 3, H, W) tensor -> (B, 1, H, W) log-disparity.

    What :func:`runtime_model` returns; :func:`svde.models.predict` runs it like the PyTorch
    network. It holds no parameters (the weights live in the runtime) and runs on the CPU.
    """

    def __init__(self, runner: Callable[[np.ndarray], np.ndarray], name: str, precision: str, runtime: str) -> None:
        super().__init__()
        self.runner, self.name, self.precision, self.runtime = runner, name, precision, runtime
        self.timings: dict[str, float] = {}  # ms per runtime when the runtime was chosen by timing

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(np.ascontiguousarray(self.runner(x), dtype=np.float32))

    def extra_repr(self) -> str:
        return f"{self.name}, {self.precision} in {self.runtime}"


def fastest_runner(path: str | os.PathLike, shape: tuple[int, ...], runtimes: Sequence[str],
                   threads: int | None = None, rounds: int = 3) -> tuple[str, Callable[[np.ndarray], np.ndarray],
                                                                   dict[str, float]]:
    """The runtime of ``runtimes`` that runs the ONNX file ``path`` fastest on inputs of ``shape``
    here: each is timed in turn (``rounds`` rounds after one untimed call, best time kept).
    Returns its name, its runner and every runtime's milliseconds."""
    runners = {r: onnx_runner(path, r, "fp32", threads) for r in runtimes}
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    best = {r: float("inf") for r in runners}
    for i in range(rounds + 1):
        for r, run in runners.items():
            start = time.perf_counter()
            run(x)
            if i:
                best[r] = min(best[r], (time.perf_counter() - start) * 1000.0)
    name = min(best, key=best.__getitem__)
    return name, runners[name], best
