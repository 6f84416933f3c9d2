"""Share trained models the way the field does: ``save_pretrained`` / ``from_pretrained``.

A folder holds ``config.json`` (model name, svde version, input contract, output domain),
``model.safetensors`` (the weights; ``config.json`` records its sha256, which
:func:`from_pretrained` checks) and a model card ``README.md``: the file names of the
Hugging Face hub (``huggingface_hub``'s ``PyTorchModelHubMixin``), so the folder can be
uploaded as a model repository as it is. ``PyTorchModelHubMixin`` itself is not used: it
rebuilds a model as ``cls(**config)`` (our models are built by name around an encoder module)
and loads weights with ``strict=False``.

Example:
    >>> from svde.models import build_model
    >>> save_pretrained(build_model("mn_lrn4"), "shared/mn")  # doctest: +SKIP
    >>> model = from_pretrained("shared/mn")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from svde.atomic import atomic_path, write_json, write_text
from svde.download import sha256_of
from svde.errors import RunFailed, UserError
from svde.models.checkpoint import CheckpointError, _mismatches
from svde.models.model import DepthModel
from svde.models.pretrained import PretrainedWeightsUnavailable
from svde.models.registry import MODELS, build_model

PRETRAINED_FORMAT = "svde-pretrained"
PRETRAINED_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

log = logging.getLogger(__name__)


def _svde_version() -> str:
    from svde import __version__

    return __version__


def pretrained_config(model: DepthModel) -> dict[str, Any]:
    """The JSON config :func:`save_pretrained` writes: model, svde version, input contract, output."""
    if model.name not in MODELS:
        raise UserError(f"save_pretrained needs one of the named models ({', '.join(MODELS)}), "
                        f"this one is named {model.name!r}")
    return {
        "format": PRETRAINED_FORMAT,
        "version": PRETRAINED_VERSION,
        "library_name": "svde",
        "svde_version": _svde_version(),
        "model_name": model.name,
        "architecture": {"encoder": MODELS[model.name], "crp_stages": len(model.decoder.crp[0].stages)},
        "input": {
            "color": "RGB", "value_range": [0.0, 1.0], "layout": "NCHW",
            "mean": list(model.mean), "std": list(model.std), "stride": model.stride,
            "size_rule": "height and width multiples of stride; svde.preprocess.network_size "
                         "(optional short side, then Python round to the stride); bilinear, align_corners=False",
        },
        "output": {"domain": model.output_domain, "shape": "(B, 1, H, W) at the input size"},
    }


def save_pretrained(model: DepthModel, folder: str | os.PathLike, notes: str | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` into ``folder``.

    The layout of the Hugging Face hub (the file names of ``huggingface_hub``'s
    ``PyTorchModelHubMixin``), so the folder can be uploaded as a model repository as it
    is. Every file is written atomically; non-finite weights are refused. ``config.json`` records
    the sha256 of ``model.safetensors`` (``weights.sha256``), so that :func:`from_pretrained`
    refuses weights changed or damaged after saving. ``notes`` (e.g. the training data) is added
    to the model card. Returns the folder.

    Example:
        >>> from svde.models import build_model
        >>> build_model("mn_lrn4").save_pretrained("shared/mn")  # doctest: +SKIP
    """
    config = pretrained_config(model)
    tensors = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise RunFailed(f"save_pretrained: {key} holds non-finite values; refusing to save {model.name}")
        tensors[key] = value.detach().cpu().clone(memory_format=torch.contiguous_format)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt", "model_name": model.name})
        config["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_of(tmp)}
    write_json(folder / CONFIG_FILE, config)
    write_text(folder / CARD_FILE, _model_card(config, notes))
    return folder


def from_pretrained(folder_or_repo_id: str | os.PathLike, revision: str | None = None,
                    map_location: str | torch.device = "cpu") -> DepthModel:
    """Load a model written by :func:`save_pretrained`, from a folder or a Hugging Face repo id.

    The config must be an svde one whose model, architecture, input contract and output
    domain this version builds, and the weights must fit that model exactly (every key and
    shape, finite values) and have the sha256 the config records (``weights.sha256``; a folder
    written before svde recorded it loads with a warning that its content is unchecked);
    otherwise a :class:`~svde.models.CheckpointError` names the file and the difference. A repo
    id (``owner/name``) is fetched with ``huggingface_hub`` (cached; ``HF_HUB_OFFLINE=1`` uses the
    cache only). Returns the model in eval mode.

    Example:
        >>> model = from_pretrained("shared/mn")  # doctest: +SKIP
    """
    config_path, weights_path = _pretrained_files(folder_or_repo_id, revision)
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not a readable JSON config ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != PRETRAINED_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{config_path}: expected format {PRETRAINED_FORMAT!r} (written by "
                              f"save_pretrained), found {found!r}")
    if config.get("version") != PRETRAINED_VERSION:
        raise CheckpointError(f"{config_path}: version {config.get('version')!r}, this svde reads "
                              f"version {PRETRAINED_VERSION}")
    name = config.get("model_name")
    if name not in MODELS:
        raise CheckpointError(f"{config_path}: model_name {name!r} is not one of {', '.join(MODELS)}")
    model = build_model(name)
    expected = pretrained_config(model)
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
    _check_sha256(config, Path(config_path), Path(weights_path))
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def _check_sha256(config: dict[str, Any], config_path: Path, weights_path: Path) -> None:
    """The weights file must have the sha256 that ``config`` records (``weights.sha256``)."""
    weights = config.get("weights")
    if weights is None:
        log.warning("%s records no sha256 of %s (written by an older svde): its content is not checked",
                    config_path, weights_path.name)
        return
    recorded = weights.get("sha256") if isinstance(weights, dict) else None
    if not (isinstance(recorded, str) and re.fullmatch(r"[0-9a-fA-F]{64}", recorded)):
        raise CheckpointError(f"{config_path}: weights {weights!r} is not {{file, sha256}} with a hex sha256 "
                              "(as save_pretrained writes it)")
    actual = sha256_of(weights_path)
    if actual != recorded.lower():
        raise CheckpointError(f"{weights_path}: sha256 {actual} differs from the {recorded} that {config_path.name} "
                              "records; the weights were changed or damaged after save_pretrained wrote them, "
                              "refusing them")


def _pretrained_files(source: str | os.PathLike, revision: str | None) -> tuple[Path, Path]:
    """(config, weights) paths of a save_pretrained folder or a hub repo id."""
    path = Path(source)
    if path.is_dir():
        files = path / CONFIG_FILE, path / WEIGHTS_FILE
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{path}: missing {', '.join(missing)} (a save_pretrained folder has "
                                  f"{CONFIG_FILE} and {WEIGHTS_FILE})")
        return files
    if path.exists() or not _REPO_ID.match(str(source)):
        raise CheckpointError(f"{source}: not a folder written by save_pretrained, nor a Hugging Face "
                              "repo id (owner/name)")
    from huggingface_hub import hf_hub_download

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
        "```python", "from svde.models import from_pretrained", "",
        'model = from_pretrained("<this folder or repo id>")',
        'depth = model.infer_image(rgb_uint8, domain="depth")  # (H, W), up to scale', "```",
    ]
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"
