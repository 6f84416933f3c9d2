"""The depth network: encoder -> LRN decoder -> head, joined by a channel contract."""

from __future__ import annotations

import json
import os
import re
import weakref
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svde import preprocess
from svde.errors import RunFailed, UserError
from svde.models.decoder import LRNDecoder
from svde.models.layers import DepthHead

# What :meth:`DepthModel.infer_image` can return; the network itself predicts log-disparity.
DOMAINS = ("log_disparity", "disparity", "depth", "log_depth")

# save_pretrained / from_pretrained: the file names of the Hugging Face hub convention.
PRETRAINED_FORMAT = "svde-pretrained"
PRETRAINED_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# infer_image's folded snapshot per model, with the state it was made from (see _snapshot).
_SNAPSHOTS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()


def check_domain(domain: str) -> str:
    """``domain`` as one of :data:`DOMAINS` (``log-depth`` spellings accepted), else a ``ValueError``."""
    name = str(domain).replace("-", "_")
    if name not in DOMAINS:
        raise ValueError(f"unknown output domain {domain!r}; valid domains: {', '.join(DOMAINS)}")
    return name


def from_log_disparity(log_disparity: torch.Tensor, domain: str) -> torch.Tensor:
    """The network's log-disparity in ``domain``: disparity = exp(x), depth = exp(-x), log-depth = -x.

    Example:
        >>> from_log_disparity(torch.tensor([0.0, 1.0]), "log_depth")
        tensor([-0., -1.])
    """
    domain = check_domain(domain)
    if domain == "log_disparity":
        return log_disparity
    if domain == "log_depth":
        return -log_disparity
    return torch.exp(log_disparity if domain == "disparity" else -log_disparity)


def _svde_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("svde")
    except PackageNotFoundError:
        return "unknown"


class DepthModel(nn.Module):
    """Predicts log-disparity (log inverse depth), (B, 1, H, W), from ImageNet-normalised RGB.

    H and W must be multiples of :attr:`stride` (32, the encoder's output stride); the decoder
    works at stride 2 and the head upsamples bilinearly to the input size. The model owns its
    input contract (:mod:`svde.preprocess`): :attr:`stride`, :attr:`mean`, :attr:`std`,
    :meth:`input_size` and :meth:`prepare_input`.

    ``forward`` is the network and nothing else: the same computation in training, evaluation
    and export. The weights are channels-last (NHWC) from construction and inputs are converted
    to match (several times faster on CPU for these depthwise/1x1-conv networks, and the layout
    tensor cores want); ``model.to(memory_format=torch.contiguous_format)`` switches back.
    For prediction, :func:`svde.models.optimize_for_inference` (used by :mod:`svde.api`, the
    evaluator and the benchmarks) makes a frozen BatchNorm-folded snapshot, optionally compiled.

    Example:
        >>> from svde.models import build_model
        >>> model = build_model("mn_lrn4").eval()
        >>> model(model.prepare_input(np.zeros((50, 70, 3), np.uint8))).shape
        torch.Size([1, 1, 64, 64])
    """

    stride: int = preprocess.STRIDE
    mean: tuple[float, ...] = tuple(float(v) for v in preprocess.IMAGENET_MEAN)
    std: tuple[float, ...] = tuple(float(v) for v in preprocess.IMAGENET_STD)
    output_domain: str = "log_disparity"

    def __init__(self, encoder: nn.Module, crp_stages: int = 4, name: str = "", channels_last: bool = True) -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.decoder = LRNDecoder(encoder.out_channels, crp_stages=crp_stages)
        self.head = DepthHead(self.decoder.out_channels)
        # A weight whose layout tells whether the model is channels-last: the first conv with
        # a spatial kernel and several input channels (NCHW and NHWC strides differ for it).
        self._layout_probe = next(
            (n for n, p in self.named_parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1), None
        )
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def is_channels_last(self) -> bool:
        """Whether the weights are in channels-last layout (inputs are then converted to it)."""
        if self._layout_probe is None:
            return False
        weight = self.get_parameter(self._layout_probe)
        return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    def input_size(self, height: int, width: int, short_side: int | None = None) -> tuple[int, int]:
        """The network size for an image of ``height`` x ``width`` (:func:`svde.preprocess.network_size`)."""
        return preprocess.network_size(height, width, short_side, multiple=self.stride)

    def prepare_input(self, image: np.ndarray | torch.Tensor, size: tuple[int, int] | None = None,
                      short_side: int | None = None) -> torch.Tensor:
        """One image (RGB array, or a dataset's normalised tensor) as a (1, 3, h, w) batch on the model's device."""
        x = preprocess.prepare_input(image, size=size, short_side=short_side)
        ref = next(self.parameters(), None)
        return x if ref is None else x.to(ref.device)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        if self.is_channels_last():
            image = image.contiguous(memory_format=torch.channels_last)
        features = self.encoder(image)
        return self.head(self.decoder(features), size=image.shape[-2:])

    # ---- prediction -------------------------------------------------------------------------
    def _snapshot(self) -> nn.Module:
        """The fast folded snapshot (:func:`svde.models.fast.for_inference`), made once per state.

        It is rebuilt whenever a parameter or buffer was changed in place (optimizer step,
        ``load_state_dict``) or moved (``.to(device)``): the key is every tensor's storage
        address and version counter.
        """
        from svde.models.fast import for_inference

        key = tuple((t.data_ptr(), t._version, t.dtype) for t in chain(self.parameters(), self.buffers()))
        cached = _SNAPSHOTS.get(self)
        if cached is None or cached[0] != key:
            cached = (key, for_inference(self))
            _SNAPSHOTS[self] = cached
        return cached[1]

    def infer_image(self, rgb: np.ndarray, domain: str = "depth", short_side: int | None = None) -> np.ndarray:
        """Predict one photo: RGB uint8 (H, W, 3) in, float32 (H, W) in ``domain`` out.

        The image goes through the model's own input contract (:meth:`prepare_input`: resized
        to :meth:`input_size`, optionally with ``short_side``, e.g. 384 as in the paper's
        evaluation) and the fast BatchNorm-folded snapshot (:func:`svde.models.fast.for_inference`,
        cached between calls) without gradients; the model's own mode is not changed. The
        prediction is resized back to (H, W) bilinearly (``align_corners=False``) in the
        disparity domain, i.e. exponentiated first and then upsampled, as the authors'
        evaluation does for disparity (SamsungLabs/geometry-preserving-de ``eval.py`` passes
        ``pred.exp()`` to ``metrics/disp_metrics.py``, which interpolates it), then converted.

        Args:
            rgb: RGB (not OpenCV's BGR) uint8 image, (H, W, 3).
            domain: one of :data:`DOMAINS`: ``log_disparity`` (the network's output),
                ``disparity`` = exp(log-disparity), ``depth`` = 1 / disparity, ``log_depth``.
                The released models are trained with scale-invariant (UTS) losses, so depth and
                disparity are known only up to an unknown global scale (log domains up to a
                shift): align to metric depth before measuring in metres.
            short_side: rescale the shorter side to this length before rounding to the stride.

        Example:
            >>> from svde.models import build_model
            >>> build_model("mn_lrn4").infer_image(np.zeros((50, 70, 3), np.uint8)).shape
            (50, 70)
        """
        domain = check_domain(domain)
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            what = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"infer_image expects an RGB uint8 numpy array of shape (H, W, 3), got {what}")
        height, width = rgb.shape[:2]
        x = self.prepare_input(rgb, short_side=short_side)
        with torch.no_grad():
            log_disparity = self._snapshot()(x)[:1].double()
            if not torch.isfinite(log_disparity).all():
                bad = int((~torch.isfinite(log_disparity)).sum())
                raise RunFailed(f"{self.name or 'the model'} produced {bad} non-finite values for a {width}x{height} "
                                "image; the weights are probably broken")
            if tuple(log_disparity.shape[-2:]) != (height, width):
                disparity = F.interpolate(log_disparity.exp(), size=(height, width), mode="bilinear",
                                          align_corners=False)
                log_disparity = disparity.log()
            out = from_log_disparity(log_disparity[0, 0], domain).float()
        if not torch.isfinite(out).all():
            raise RunFailed(f"{domain}: {int((~torch.isfinite(out)).sum())} values overflow float32 (log-disparity "
                            f"{float(log_disparity.min()):.3g}..{float(log_disparity.max()):.3g}); use a log domain")
        return out.cpu().numpy()

    # ---- sharing: save_pretrained / from_pretrained -----------------------------------------
    def pretrained_config(self) -> dict[str, Any]:
        """The JSON config :meth:`save_pretrained` writes: model, svde version, input contract, output."""
        from svde.models.registry import MODELS

        if self.name not in MODELS:
            raise UserError(f"save_pretrained needs one of the named models ({', '.join(MODELS)}), "
                            f"this one is named {self.name!r}")
        return {
            "format": PRETRAINED_FORMAT,
            "version": PRETRAINED_VERSION,
            "library_name": "svde",
            "svde_version": _svde_version(),
            "model_name": self.name,
            "architecture": {"encoder": MODELS[self.name], "crp_stages": len(self.decoder.crp[0].stages)},
            "input": {
                "color": "RGB", "value_range": [0.0, 1.0], "layout": "NCHW",
                "mean": list(self.mean), "std": list(self.std), "stride": self.stride,
                "size_rule": "height and width multiples of stride; svde.preprocess.network_size "
                             "(optional short side, then Python round to the stride); bilinear, align_corners=False",
            },
            "output": {"domain": self.output_domain, "shape": "(B, 1, H, W) at the input size"},
        }

    def save_pretrained(self, folder: str | os.PathLike, notes: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` into ``folder``.

        The layout of the Hugging Face hub (the file names of ``huggingface_hub``'s
        ``PyTorchModelHubMixin``), so the folder can be uploaded as a model repository as it
        is. Every file is written atomically; non-finite weights are refused. ``notes`` (e.g.
        the training data) is added to the model card. Returns the folder.

        Example:
            >>> from svde.models import build_model
            >>> build_model("mn_lrn4").save_pretrained("shared/mn")  # doctest: +SKIP
        """
        import safetensors.torch

        from svde.atomic import atomic_path, write_json, write_text

        config = self.pretrained_config()
        tensors = {}
        for key, value in self.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise RunFailed(f"save_pretrained: {key} holds non-finite values; refusing to save {self.name}")
            tensors[key] = value.detach().cpu().clone(memory_format=torch.contiguous_format)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt", "model_name": self.name})
        write_json(folder / CONFIG_FILE, config)
        write_text(folder / CARD_FILE, _model_card(config, notes))
        return folder

    @classmethod
    def from_pretrained(cls, folder_or_repo_id: str | os.PathLike, revision: str | None = None,
                        map_location: str | torch.device = "cpu") -> "DepthModel":
        """Load a model written by :meth:`save_pretrained`, from a folder or a Hugging Face repo id.

        The config must be an svde one whose model, architecture, input contract and output
        domain this version builds, and the weights must fit that model exactly (every key and
        shape, finite values); otherwise a :class:`~svde.models.CheckpointError` names the file
        and the difference. A repo id (``owner/name``) is fetched with ``huggingface_hub``
        (cached; ``HF_HUB_OFFLINE=1`` uses the cache only). Returns the model in eval mode.

        Example:
            >>> model = DepthModel.from_pretrained("shared/mn")  # doctest: +SKIP
        """
        import safetensors.torch

        from svde.models.checkpoint import CheckpointError, _mismatches
        from svde.models.registry import MODELS, build_model

        config_path, weights_path = _pretrained_files(folder_or_repo_id, revision)
        try:
            config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_path}: not a readable JSON config ({exc})") from None
        if not isinstance(config, dict) or config.get("format") != PRETRAINED_FORMAT:
            found = config.get("format") if isinstance(config, dict) else type(config).__name__
            raise CheckpointError(f"{config_path}: expected format {PRETRAINED_FORMAT!r} (written by "
                                  f"DepthModel.save_pretrained), found {found!r}")
        if config.get("version") != PRETRAINED_VERSION:
            raise CheckpointError(f"{config_path}: version {config.get('version')!r}, this svde reads "
                                  f"version {PRETRAINED_VERSION}")
        name = config.get("model_name")
        if name not in MODELS:
            raise CheckpointError(f"{config_path}: model_name {name!r} is not one of {', '.join(MODELS)}")
        model = build_model(name)
        expected = model.pretrained_config()
        for section in ("architecture", "output"):
            if config.get(section) != expected[section]:
                raise CheckpointError(f"{config_path}: {section} {config.get(section)!r} does not match "
                                      f"{name} as this svde builds it ({expected[section]!r})")
        got_input = config.get("input") or {}
        for key in ("color", "value_range", "layout", "mean", "std", "stride"):
            if got_input.get(key) != expected["input"][key]:
                raise CheckpointError(f"{config_path}: input {key} {got_input.get(key)!r}, this svde's "
                                      f"{name} expects {expected['input'][key]!r}")
        try:
            state = safetensors.torch.load_file(str(weights_path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None
        problems = _mismatches(state, model)
        if problems:
            raise CheckpointError(f"{weights_path} does not fit {name} (from {config_path}): {', '.join(problems)}")
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{weights_path}: non-finite values in {len(bad)} tensors (e.g. {bad[0]})")
        model.load_state_dict(state, strict=True)
        return model.to(map_location).eval()


def _pretrained_files(source: str | os.PathLike, revision: str | None) -> tuple[Path, Path]:
    """(config, weights) paths of a save_pretrained folder or a hub repo id."""
    from svde.models.checkpoint import CheckpointError

    path = Path(source)
    if path.is_dir():
        files = path / CONFIG_FILE, path / WEIGHTS_FILE
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{path}: missing {', '.join(missing)} (a DepthModel.save_pretrained folder has "
                                  f"{CONFIG_FILE} and {WEIGHTS_FILE})")
        return files
    if path.exists() or not _REPO_ID.match(str(source)):
        raise CheckpointError(f"{source}: not a folder written by DepthModel.save_pretrained, nor a Hugging Face "
                              "repo id (owner/name)")
    from huggingface_hub import hf_hub_download

    from svde.models.pretrained import PretrainedWeightsUnavailable

    try:
        return tuple(Path(hf_hub_download(str(source), f, revision=revision)) for f in (CONFIG_FILE, WEIGHTS_FILE))
    except Exception as exc:  # offline, unknown repo, missing file: huggingface_hub has many error types
        raise PretrainedWeightsUnavailable(f"cannot get {source} from the Hugging Face hub "
                                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                           "with HF_HUB_OFFLINE=1 only cached repos load; "
                                           f"there is no local folder {source} either") from None


def _model_card(config: dict[str, Any], notes: str | None) -> str:
    """A short model card (README.md with hub metadata) for a save_pretrained folder."""
    name = config["model_name"]
    lines = [
        "---", "library_name: svde", "license: mit", "pipeline_tag: depth-estimation",
        "tags:", "- depth-estimation", "- monocular-depth", f"- {name}", "---", "",
        f"# svde {name}", "",
        f"A light-weight single-view depth network ({config['architecture']['encoder']} encoder, LRN decoder) "
        "from Romanov et al., *Towards General Purpose and Geometry Preserving Single-View Depth Estimation* "
        f"(arXiv:2009.12419), saved with svde {config['svde_version']}.", "",
        "**Input**: RGB in [0, 1], normalised with the ImageNet mean and std, height and width multiples of "
        f"{config['input']['stride']}. **Output**: {config['output']['domain'].replace('_', '-')} "
        "(log inverse depth); after scale-invariant (UTS) training, depth is known up to an unknown scale "
        "(log-disparity up to a shift).", "",
        "```python", "from svde.models import DepthModel", "",
        'model = DepthModel.from_pretrained("<this folder or repo id>")',
        'depth = model.infer_image(rgb_uint8, domain="depth")  # (H, W), up to scale', "```",
    ]
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"
