"""Checkpoints: the authors' released files and the project's own format.

The project's checkpoint is a dict ``{"format": "svde", "version": 1, "model_name": ...,
"model": state_dict, "config": resolved config or None, ...}``, written atomically, so any
script can rebuild the network from the file alone (:func:`load_model`).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from svde.atomic import atomic_path
from svde.errors import RunFailed, UserError, unknown_name
from svde.models.model import DepthModel
from svde.models.registry import MODELS, build_model

FORMAT = "svde"
VERSION = 1

_CRP_ADAPT = re.compile(r"^branches\.1\.up_branch\.(\d+)\.0\.adapt\.(.+)$")
_CRP_STAGE = re.compile(r"^branches\.1\.up_branch\.(\d+)\.0\.(\d+)_outvar_dimred\.(.+)$")
_FUSION = re.compile(r"^branches\.1\.adapters\.(\d+)\.0\.(.+)$")
_HEAD = re.compile(r"^branches\.1\.final_decoder\.0\.(.+)$")


class CheckpointError(UserError):
    """A checkpoint file cannot be read or does not fit the requested model."""


class NonFiniteStateError(RunFailed):
    """Refused to save a checkpoint: some of its tensors hold NaN or inf (the run diverged)."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path, self.names = path, names
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        super().__init__(f"refused to write {path}: {len(names)} tensor(s) hold NaN/inf ({shown})")


class CheckpointWriteError(RunFailed):
    """A checkpoint could not be written (a full disk, a quota, an I/O error); the file is untouched."""

    def __init__(self, path: Path, exc: BaseException) -> None:
        self.path = path
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
        else:  # torch.save reports a failed write as a RuntimeError of its C++ stream writer
            try:
                free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
            except OSError:
                free = "free space unknown"
            reason = f"the write failed ({' '.join(str(exc).split())[:120]}; {free}: is the disk full?)"
        super().__init__(f"cannot write {path}: {reason}")


def nonfinite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in ``obj`` (nested dicts/lists) holding NaN or inf.

    Example:
        >>> nonfinite_tensors({"model": {"w": torch.ones(2), "b": torch.tensor([float("nan")])}, "step": 3})
        ['model.b']
    """
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            return [prefix or "<tensor>"]
        return []
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return []
    return [name for key, value in items for name in nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))]


def _unpickling_reason(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to turn the safety off."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if line.startswith(("Trying to load", "Unsupported"))]
    return detail[0].rstrip(".") if detail else "unsupported pickle content"


def _read(path_or_state: str | os.PathLike | Mapping[str, Any], what: str,
          source: str | None = None) -> tuple[Mapping[str, Any], str]:
    """``(the checkpoint's dict, the name to give it in errors)``; ``source`` names an already read dict."""
    if isinstance(path_or_state, Mapping):
        return path_or_state, source or "<state dict>"
    path = Path(path_or_state)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # A pickle of arbitrary Python objects (possibly malicious, possibly a foreign format):
        # never loaded, and never the advice to load it unsafely that torch's message carries.
        raise CheckpointError(
            f"{what} {path} is not a safe checkpoint (it holds Python objects that weights_only loading "
            f"refuses: {_unpickling_reason(exc)}); only files of tensors and plain values are read") from None
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        text = str(exc).strip()
        first = text.split(". ")[0].splitlines()[0][:160] if text else type(exc).__name__
        raise CheckpointError(
            f"cannot read {what} {path} ({path.stat().st_size} bytes): truncated or not a PyTorch file ({first})"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what} {path} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj, str(path)


def official_to_svde(state: Mapping[str, torch.Tensor], model: DepthModel) -> dict[str, torch.Tensor]:
    """Rename a released state dict (``branches.0``/``branches.1``) to this project's names.

    The decoder's second copy of the encoder (``branches.1.backbone.*``) and the encoders'
    classification heads are dropped; any other unknown entry is kept under its own name, so
    that the caller's key check reports it.
    """
    enc = model.encoder
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("branches.1.backbone."):
            continue
        if key.startswith("branches.0."):
            rest = key[len("branches.0."):]
            if rest.startswith(enc.released_unused):
                continue
            out[f"encoder.{enc.released_prefix}{rest}"] = value
        elif m := _CRP_ADAPT.match(key):
            out[f"decoder.crp.{m[1]}.adapt.{m[2]}"] = value
        elif m := _CRP_STAGE.match(key):
            out[f"decoder.crp.{m[1]}.stages.{int(m[2]) - 1}.{m[3]}"] = value
        elif m := _FUSION.match(key):
            out[f"decoder.fusion.{m[1]}.conv.{m[2]}"] = value
        elif m := _HEAD.match(key):
            out[f"head.conv.{m[1]}"] = value
        else:
            out[key] = value
    return out


def _mismatches(state: Mapping[str, torch.Tensor], model: torch.nn.Module) -> list[str]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            problems.append(f"{len(items)} {label} (e.g. {'; '.join(items[:3])})")
    return problems


def _guess_official_name(state: Mapping[str, torch.Tensor]) -> str | None:
    for name in MODELS:
        with torch.device("meta"):  # keys and shapes only: no weights allocated or initialised
            candidate = build_model(name)
        if not _mismatches(official_to_svde(state, candidate), candidate):
            return name
    return None


def _unwrap(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("state_dict", "model"):
        if key in obj and isinstance(obj[key], Mapping):
            return obj[key]
    return obj


def load_official_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, Any], name: str,
                             source: str | None = None) -> DepthModel:
    """Build ``name`` and load the authors' released weights into it; returns it in eval mode
    (``source`` names an already read dict in errors).

    Example:
        >>> model = load_official_checkpoint("weights/mn_lrn4.pth", "mn_lrn4")  # doctest: +SKIP
    """
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    raw, source = _read(path_or_state_dict, "released checkpoint", source)
    if raw.get("format") == FORMAT:
        raise CheckpointError(f"{source} is an svde checkpoint, not an authors' release: "
                              "use load_model(path) or --checkpoint PATH")
    state = _unwrap(raw)
    model = build_model(name)
    mapped = official_to_svde(state, model)
    problems = _mismatches(mapped, model)
    if problems:
        guess = _guess_official_name(state)
        hint = f" It looks like a {guess} checkpoint: pass name={guess!r}." if guess and guess != name else ""
        raise CheckpointError(f"{source} does not fit {name}: {', '.join(problems)}.{hint}")
    backbone_copy = {k[len("branches.1.backbone."):]: v for k, v in state.items() if k.startswith("branches.1.backbone.")}
    differing = [k for k, v in backbone_copy.items() if f"branches.0.{k}" in state and not torch.equal(v, state[f"branches.0.{k}"])]
    if differing:
        warnings.warn(f"{source}: the decoder's encoder copy differs from branches.0 in {len(differing)} entries; using branches.0")
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def save_checkpoint(path: str | os.PathLike, model: DepthModel, config: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    """Write ``model`` (and the resolved config, training state in ``extra``) atomically.

    Every floating-point tensor written (weights, BatchNorm statistics, optimiser state, ...) is
    checked first: if any holds NaN or inf, nothing is written and :class:`NonFiniteStateError`
    names them. The file goes through :func:`svde.atomic.atomic_path` (temporary in the same
    folder, fsync, rename), so a crash never leaves a half-written checkpoint behind; a failed
    write (a full disk) is a :class:`CheckpointWriteError` naming ``path``, which is left as it was.
    """
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP
    payload = {"format": FORMAT, "version": VERSION, "model_name": model.name, "model": model.state_dict(),
               "config": dict(config) if config is not None else None, **extra}
    bad = nonfinite_tensors(payload)
    if bad:
        raise NonFiniteStateError(path, bad)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as exc:
        raise CheckpointWriteError(path, exc) from None
    return path


def read_checkpoint(path: str | os.PathLike | Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """Read a project checkpoint and check its format (clear error for released files; ``source``
    names an already read dict in errors)."""
    obj, source = _read(path, "checkpoint", source)
    if obj.get("format") != FORMAT:
        hint = (" It looks like an authors' release: use load_official_checkpoint(path, name) or "
                "--official PATH --model NAME.") if any(str(k).startswith("branches.") for k in _unwrap(obj)) else ""
        raise CheckpointError(f"{source} is not an svde checkpoint (no format={FORMAT!r} entry).{hint}")
    if obj.get("model_name") not in MODELS:
        raise CheckpointError(f"{source}: model_name {obj.get('model_name')!r} is not one of {', '.join(MODELS)}")
    return dict(obj)


def peek_checkpoint(path: str | os.PathLike) -> Any:
    """A checkpoint file's object with its tensors memory-mapped, not read: for the small entries
    of a file that is (or will be) loaded anyway. A file torch cannot map (the legacy format) is
    read whole; an unreadable one raises :class:`CheckpointError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not mappable (legacy format) or unreadable: the full read explains
        return _read(path, "checkpoint")[0]


def checkpoint_selection(path: str | os.PathLike) -> dict[str, Any] | None:
    """What selected a project checkpoint (``best.pt``'s ``selected_on``: the validation metric and
    datasets), or None: ``last.pt``, older checkpoints and the authors' files record none
    (:func:`peek_checkpoint`: called beside a load of the same file, ``svde eval``, ``svde paper-table``).
    """
    obj = peek_checkpoint(path)
    if not isinstance(obj, Mapping):
        return None
    selected = obj.get("selected_on") if obj.get("format") == FORMAT else None
    return dict(selected) if isinstance(selected, Mapping) else None


def load_model(path: str | os.PathLike | Mapping[str, Any], source: str | None = None) -> DepthModel:
    """Rebuild the network stored in a project checkpoint (a path, or its already read dict;
    ``source`` names it in errors); returns it in eval mode.

    Example:
        >>> model = load_model("runs/quickstart/best.pt")  # doctest: +SKIP
    """
    ckpt = read_checkpoint(path, source)
    model = build_model(ckpt["model_name"])
    problems = _mismatches(ckpt["model"], model)
    if problems:
        raise CheckpointError(f"{source or path} does not fit {ckpt['model_name']}: {', '.join(problems)}")
    model.load_state_dict(ckpt["model"])
    return model.eval()


def convert_official(src: str | os.PathLike, name: str, dst: str | os.PathLike) -> Path:
    """Convert a released file to the project's checkpoint format (loadable by :func:`load_model`)."""
    model = load_official_checkpoint(src, name)
    return save_checkpoint(dst, model, config=None, source=str(src))
