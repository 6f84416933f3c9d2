"""Reduced-precision CPU inference: bf16 in OpenVINO, int8 (static QDQ) in ONNX Runtime or OpenVINO.

PyTorch's own reduced precision pays little for these networks on a CPU (``torch.autocast``
bf16 gained 1.2x on an AVX512-BF16 machine); the runtimes made for it do: OpenVINO runs the fp32
ONNX file with bf16 arithmetic (``INFERENCE_PRECISION_HINT=bf16``), and ONNX Runtime runs an
int8 file quantized statically (QDQ, per-channel int8 weights, uint8 activations calibrated on
images; :func:`quantize_int8`), which is also the file a mobile or edge user ships; OpenVINO
runs the same file, faster for some models, so :func:`runtime_model` times both and keeps the
faster. Both start from svde's ONNX export (:func:`svde.models.export.export_onnx`).
docs/benchmarks.md, "Reduced precision", has the measured speed and accuracy per model.

Each precision pays only on a CPU with the units for it (:func:`cpu_features`, read at run
time): bf16 needs AVX512-BF16 or AMX-BF16 (without them OpenVINO computes in fp32);
int8 needs VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8) to beat fp32 clearly.
:func:`precision_problem` says why a precision does not pay on this machine.

``fp32`` is PyTorch's default path (:func:`svde.models.for_inference`); :func:`runtime_model`
wraps a bf16 or int8 runtime as a module that :func:`svde.models.predict` runs like the network.

Example:
    >>> from svde.models import build_model
    >>> net = runtime_model(build_model("mn_lrn4"), "int8", height=64, width=64, count=1)  # doctest: +SKIP
    >>> predict(net, photo)                                                                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from svde.errors import UserError, unknown_name
from svde.models.export import ExportError, export_onnx
from svde.models.runtimes import (  # noqa: F401 - re-exported: the runners are part of this module's API
    OPENVINO_EXTRA,
    MissingRuntime,
    OpenVinoRunner,
    RuntimeModel,
    fastest_runner,
    onnx_runner,
    onnxruntime_session,
    openvino_installed,
    require_openvino,
)

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
# Where each precision runs (fp32: PyTorch, svde's default path; int8: the faster of the two here).
RUNTIMES = {"fp32": "pytorch", "bf16": "openvino", "int8": "onnxruntime or openvino"}
# Calibration photos: a few are enough for the activation ranges (min/max per tensor).
CALIBRATION_COUNT = 8
LOG_DELTA1 = float(np.log(1.25))


# ---- what this CPU has -----------------------------------------------------------------------
def _proc_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # not Linux
        pass
    return set()


def _torch_says(name: str) -> bool:
    probe = getattr(torch.cpu, name, None)  # private run-time cpuid probes (torch >= 2.3)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means "not known to be there"
        return False


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's reduced-precision units, read at run time (cpuid through PyTorch, and Linux's flags).

    Example:
        >>> isinstance(cpu_features().bf16, bool)
        True
    """

    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx_bf16: bool
    avx512_vnni: bool
    avx_vnni: bool
    amx_int8: bool

    @property
    def bf16(self) -> bool:
        """bf16 arithmetic units (AVX512-BF16 or AMX-BF16)."""
        return self.avx512_bf16 or self.amx_bf16

    @property
    def vnni(self) -> bool:
        """int8 dot-product units (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
        return self.avx512_vnni or self.avx_vnni or self.amx_int8

    def describe(self) -> str:
        """One line: the units found, e.g. ``avx2 avx512 avx512_bf16 avx512_vnni (no amx_bf16 ...)``."""
        names = ("avx2", "avx512", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8")
        have = [n for n in names if getattr(self, n)]
        lack = [n for n in names if not getattr(self, n)]
        return " ".join(have) + (f" (no {', '.join(lack)})" if lack else "") if have else "none of " + ", ".join(names)


def cpu_name() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``, else :func:`platform.processor`)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_features() -> CpuFeatures:
    """This CPU's vector and reduced-precision units (x86; on other CPUs all are ``False``)."""
    flags = _proc_flags()
    return CpuFeatures(
        avx2=_torch_says("_is_avx2_supported") or "avx2" in flags,
        avx512=_torch_says("_is_avx512_supported") or "avx512f" in flags,
        avx512_bf16=_torch_says("_is_avx512_bf16_supported") or "avx512_bf16" in flags,
        amx_bf16="amx_bf16" in flags or (_torch_says("_is_amx_tile_supported") and not flags),
        avx512_vnni=_torch_says("_is_vnni_supported") or "avx512_vnni" in flags,
        avx_vnni="avx_vnni" in flags,
        amx_int8="amx_int8" in flags or (_torch_says("_is_amx_tile_supported") and not flags),
    )


def check_precision_name(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else the one unknown-name error."""
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    return precision


def precision_problem(precision: str, features: CpuFeatures | None = None) -> str | None:
    """Why ``precision`` is not expected to be faster than fp32 on this CPU; ``None`` when it should be.

    Example:
        >>> precision_problem("fp32") is None
        True
    """
    check_precision_name(precision)
    f = features or cpu_features()
    if precision == "bf16" and not f.bf16:
        return (f"this CPU has no bf16 units (AVX512-BF16 or AMX-BF16; found: {f.describe()}): "
                f"OpenVINO would compute in fp32, no faster")
    if precision == "int8" and not f.vnni:
        return (f"this CPU has no int8 dot-product units (AVX512-VNNI, AVX-VNNI or AMX-INT8; found: {f.describe()}): "
                f"int8 may be no faster than fp32 here")
    return None


# ---- comparing a reduced-precision output with fp32 -------------------------------------------
def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """delta1 (%) and abs-rel of ``other`` against ``reference``, both log-disparity of the same image.

    Depth is exp(-log-disparity), so the depth ratio is exp(reference - other): delta1 is the
    percentage of pixels where it is within 1.25 either way, abs-rel the mean of
    |depth_other - depth_ref| / depth_ref. No alignment: the same network at two precisions
    predicts at the same scale. Identical maps give 100 and 0.

    Example:
        >>> agreement(np.zeros((2, 2)), np.full((2, 2), np.log(1.1)))["delta1"]
        100.0
    """
    ref, out = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"agreement: shapes differ, {ref.shape} and {out.shape}")
    diff = ref - out
    return {"delta1": float(np.mean(np.abs(diff) < LOG_DELTA1) * 100.0),
            "abs_rel": float(np.mean(np.abs(np.expm1(diff)))), "pixels": int(diff.size)}


def pooled_agreement(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """:func:`agreement` over several images, every pixel weighted alike."""
    parts = [agreement(r, o) for r, o in pairs]
    total = sum(p["pixels"] for p in parts)
    return {"delta1": sum(p["delta1"] * p["pixels"] for p in parts) / total,
            "abs_rel": sum(p["abs_rel"] * p["pixels"] for p in parts) / total, "pixels": total, "images": len(parts)}


# ---- calibration images ----------------------------------------------------------------------
def calibration_inputs(folder: str | os.PathLike | None = None, count: int = CALIBRATION_COUNT,
                       height: int = 384, width: int = 384, split: str = "calibration") -> list[np.ndarray]:
    """Network inputs, float32 (1, 3, height, width), for int8 calibration.

    From up to ``count`` photos of ``folder`` (spread over its sorted photos, subfolders too; each
    resized to height x width) or, without a folder, ``count`` synthetic rooms
    (:mod:`svde.data.synthetic`, split ``split``: works offline). Calibrate on photos like the ones
    the model will see when you can.
    """
    from svde.data.io import read_image
    from svde.data.layout import list_images
    from svde.data.synthetic import SyntheticDataset
    from svde.preprocess import prepare_input

    if count < 1:
        raise UserError(f"calibration: need at least 1 image, got {count}")
    if folder is None:
        rooms = SyntheticDataset(split=split, length=count, height=height, width=width)
        images = [rooms.render(i)["image"] for i in range(count)]
    else:
        paths, _ = list_images(folder, recursive=True)
        if not paths:
            raise UserError(f"--calibration {folder}: no photos there (png, jpg, ...)")
        picks = sorted({int(i) for i in np.linspace(0, len(paths) - 1, min(count, len(paths)))})
        images = [read_image(paths[i]) for i in picks]
    return [prepare_input(image, size=(height, width)).numpy().astype(np.float32) for image in images]


# ---- int8: static quantization with ONNX Runtime ----------------------------------------------
def fp32_nodes(model_path: str | os.PathLike) -> list[str]:
    """Names of the nodes :func:`quantize_int8` keeps in fp32: the first convolution and what leads
    to it from the image (3 input channels, about 1 % of the work; in int8 it cost lite0_lrn4 0.3
    points of delta1 against fp32 on the real frames) and the nodes from the last convolution to the output (an 8-bit output
    would round log-disparity to 256 levels, for a negligible gain in time)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    names, frontier = [], [o.name for o in graph.output]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in names:
            continue
        names.append(node.name)
        if node.op_type != "Conv":
            frontier.extend(i for i in node.input[:1] if i in producer)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        if node.input:
            consumers.setdefault(node.input[0], []).append(node)
    frontier = [i.name for i in graph.input]  # the data path from the image (e.g. Pad) to each first Conv
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in names:
                names.append(node.name)
                if node.op_type != "Conv":
                    frontier.extend(node.output[:1])
    return names


@contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs every bias copy and scale fix to the root logger at INFO, and
    numpy warns on constant tensors (zero range, handled by the quantizer): keep them out of the
    user's terminal (warnings and errors still show)."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        logging.disable(previous)


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, inputs: Sequence[np.ndarray],
                  input_name: str = "image") -> None:
    """Quantize an fp32 ONNX file to int8 with ONNX Runtime's static QDQ quantization.

    Weights int8 per output channel (symmetric), activations uint8 per tensor, their ranges
    (min/max) calibrated on ``inputs``; the first convolution, the last one and what follows it
    stay fp32 (:func:`fp32_nodes`). The graph is shape-inferred and optimised first (ONNX Runtime's
    ``quant_pre_process``). ``out_path`` is written atomically; it runs in any ONNX runtime
    with QDQ support (ONNX Runtime, OpenVINO, TensorRT, ...).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from svde.atomic import atomic_path

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(list(inputs))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.pending, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory(prefix="svde-int8-") as work, _quiet():
        with atomic_path(Path(work) / "pre.onnx") as pre:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        prepared = Path(work) / "pre.onnx"
        with atomic_path(out_path) as tmp:
            quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=fp32_nodes(prepared),
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def runtime_model(model: nn.Module, precision: str, height: int = 384, width: int = 384,
                  calibration: str | os.PathLike | None = None, count: int = CALIBRATION_COUNT,
                  threads: int | None = None, runtime: str | None = None) -> RuntimeModel:
    """``model`` exported to ONNX (free input size) and run at ``precision`` (``bf16`` or ``int8``).

    bf16: OpenVINO on the fp32 file. int8: the file :func:`quantize_int8` makes, calibrated on
    ``count`` photos of ``calibration`` (default: synthetic rooms) at height x width, run in
    ``runtime``: ``onnxruntime``, ``openvino``, or by default the faster of the two here
    (:func:`fastest_runner` at height x width; ONNX Runtime alone without OpenVINO). The chosen
    runtime and the timings are the result's ``runtime`` and ``timings``. The files live in a
    temporary folder, removed before returning (the sessions hold what they need). Export and
    calibration take a few seconds (more for the big models).
    """
    check_precision_name(precision)
    if precision == "fp32":
        raise UserError("fp32 runs in PyTorch (svde.models.for_inference); runtime_model is for bf16 and int8")
    if precision == "bf16" or runtime == "openvino":
        require_openvino()
    if runtime is None:
        runtimes = ["onnxruntime"] + (["openvino"] if openvino_installed() else [])
    elif runtime in ("onnxruntime", "openvino"):
        runtimes = [runtime]
    else:
        raise unknown_name("runtime", runtime, ("onnxruntime", "openvino"))
    # the photos first: an empty or unreadable --calibration fails before any export
    samples = calibration_inputs(calibration, count, height, width) if precision == "int8" else []
    name = getattr(model, "name", type(model).__name__)
    with tempfile.TemporaryDirectory(prefix="svde-precision-") as work:
        fp32 = Path(work) / f"{name}.onnx"
        export_onnx(model, fp32, height=height, width=width, dynamic=True)
        if precision == "bf16":
            runner = onnx_runner(fp32, "openvino", "bf16", threads)
            runner.compiled_for((1, 3, height, width))  # compile now: the file goes with the folder
            return RuntimeModel(runner, name, "bf16", "openvino")
        int8 = Path(work) / f"{name}.int8.onnx"
        quantize_int8(fp32, int8, samples)
        if len(runtimes) == 1:  # nothing to choose: no timing
            chosen, runner, timings = runtimes[0], onnx_runner(int8, runtimes[0], "fp32", threads), {}
        else:
            chosen, runner, timings = fastest_runner(int8, (1, 3, height, width), runtimes, threads, rounds=3)
        if isinstance(runner, OpenVinoRunner):
            runner.compiled_for((1, 3, height, width))  # compile now: the file goes with the folder
        net = RuntimeModel(runner, name, "int8", chosen)
        net.timings = timings
        return net


# ---- svde export --precision int8 -------------------------------------------------------------
def check_inputs(count: int, height: int, width: int) -> list[np.ndarray]:
    """Held-out inputs for checking an int8 file against fp32: synthetic rooms of the ``val`` split
    (never the calibration rooms)."""
    return calibration_inputs(None, count, height, width, split="val")


def export_int8(model: nn.Module, path: str | os.PathLike, height: int = 384, width: int = 384,
                dynamic: bool = False, batch: int = 1, opset: int = 17, atol: float = 1e-4,
                calibration: str | os.PathLike | None = None, count: int = CALIBRATION_COUNT,
                checks: int = 4) -> dict[str, Any]:
    """Export ``model`` to an int8 ONNX file, as :func:`svde.models.export.export_onnx` then :func:`quantize_int8`.

    The fp32 export is checked against PyTorch (``atol``) as usual; the int8 file is then run in
    ONNX Runtime on ``checks`` held-out synthetic rooms and compared with PyTorch's fp32 output
    (:func:`agreement`: delta1 % and abs-rel), which is returned and stored in the file's metadata
    (``svde_int8_delta1``, ``svde_int8_abs_rel``) next to the fp32 file's (model, preprocessing)
    and ``svde_precision`` = ``int8``. Non-finite outputs raise :class:`ExportError` and nothing
    is written; an agreement below 99 % delta1 is logged as a warning (calibrate on photos like
    the ones the model will see: ``calibration``).

    Example:
        >>> export_int8(build_model("mn_lrn4").eval(), "mn.int8.onnx", 64, 64)["delta1"]  # doctest: +SKIP
        100.0
    """
    import onnx

    from svde.atomic import atomic_path

    name = getattr(model, "name", type(model).__name__)
    model = model.cpu().float().eval()
    samples = calibration_inputs(calibration, count, height, width)  # before the export: a bad folder fails first
    with tempfile.TemporaryDirectory(prefix="svde-int8-") as work:
        fp32, int8 = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        diff = export_onnx(model, fp32, height=height, width=width, dynamic=dynamic, batch=batch, opset=opset,
                           atol=atol)
        tile = (lambda x: x) if dynamic else (lambda x: np.repeat(x, batch, axis=0))
        quantize_int8(fp32, int8, [tile(x) for x in samples])
        run = onnx_runner(int8, "onnxruntime")
        pairs = []
        for x in check_inputs(checks, height, width):
            with torch.no_grad():
                ref = model(torch.from_numpy(tile(x))).numpy()
            out = np.asarray(run(tile(x)))
            if out.shape != ref.shape or not np.isfinite(out).all():
                raise ExportError(f"int8 export of {name}: output of shape {out.shape} with "
                                  f"{int((~np.isfinite(out)).sum())} non-finite values; nothing was written")
            pairs.append((ref, out))
        result = {**pooled_agreement(pairs), "fp32_max_abs_diff": diff, "calibration": (
            f"{count} synthetic rooms" if calibration is None else f"up to {count} photos of {calibration}")}
        proto = onnx.load(str(int8))
        meta = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
        meta.update({"svde_precision": "int8", "svde_calibration": result["calibration"],
                     "svde_int8_delta1": f"{result['delta1']:.4f}", "svde_int8_abs_rel": f"{result['abs_rel']:.6f}"})
        del proto.metadata_props[:]
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
    if result["delta1"] < 99.0:
        log.warning("int8 export of %s: delta1 agreement with fp32 is %.2f %% (< 99 %%) on held-out rooms; "
                    "calibrate on photos like yours (--calibration DIR)", name, result["delta1"])
    log.debug("wrote %s (int8; delta1 %.2f %%, abs-rel %.4f against fp32)", path, result["delta1"], result["abs_rel"])
    return result
