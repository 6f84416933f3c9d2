"""The typed training config: dataclasses, YAML composition and dotted command-line overrides.

A config file may name ``base:`` files (paths relative to itself) that are merged first, in
order, and then overridden by the file's own keys; ``key.sub=value`` overrides come last.
Dicts merge key by key, everything else (lists included) is replaced. The result is checked
against the dataclasses below before any work starts: an unknown or misspelled key, or a value
of the wrong type, is a :class:`ConfigError` naming it and the valid keys.

Example:
    >>> cfg = build_config({"model": {"name": "b0_lrn4"}}, ["train.steps=10"])
    >>> cfg.model.name, cfg.train.steps
    ('b0_lrn4', 10)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from svde.device import AMP_DTYPES, DEVICE_NAMES, valid_device_name
from svde.errors import UnknownName, UserError, did_you_mean
from svde.preprocess import STRIDE
from svde.types import SCALE_INVARIANT, DepthType

# What ``convert`` may turn a dataset's depth into (None: keep it).
DEPTH_CONVERSIONS = (None, DepthType.UTS, DepthType.UTSS)
AMP_MODES = ("none", *AMP_DTYPES)
# The names svde.training.optim builds (the keys of its OPTIMIZERS and SCHEDULES; a test keeps them
# equal): named here so that the config checks them without importing the layer above it.
OPTIMIZER_NAMES = ("ranger", "adam", "adamw", "sgd")
SCHEDULE_NAMES = ("constant", "cosine", "linear")


class ConfigError(UserError):
    """A config file, key or value is not what the training config expects."""


@dataclass
class ModelConfig:
    """Which network to build: one of ``svde.models.MODELS``."""

    name: str = "mn_lrn4"
    encoder_weights: str | None = None  # None (random) or "imagenet"


@dataclass
class DatasetEntry:
    """One dataset of a training mixture or the validation set.

    ``convert`` turns the dataset's depth into a weaker type on the fly (``"uts"``: random
    depth scale; ``"utss"``: random disparity scale and shift), as in the paper's §4.4.1.
    """

    name: str = "synthetic"
    root: str | None = None
    split: str | None = None
    weight: float = 1.0
    convert: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # [start, end] fractions of the dataset to train on (svde.training.trainer.take_subset);
    # [0, p] and [p, 1] partition it exactly (the §4.4.1 UTS / UTSS split).
    subset: list[float] | None = None


@dataclass
class DataConfig:
    """Training mixture, crop size and loader settings.

    ``batch_size`` and ``epoch_length`` count samples over all processes together (the paper's
    batch of 32 stays 32 on any number of GPUs); each process loads ``batch_size / world size``.
    """

    train: list[DatasetEntry] = field(default_factory=lambda: [DatasetEntry()])
    height: int = 384
    width: int = 512
    augment: bool = True
    # colour jitter + normalisation, and the crop's resampling, in the "workers" or on the batch on the "device"
    # (svde.data.colour, svde.data.warp; warp_on: device needs the colour there too); auto: device on CUDA
    colour_on: str = "auto"
    warp_on: str = "auto"
    batch_size: int = 8
    num_workers: int = 0
    epoch_length: int = 1000  # samples drawn from the mixture per epoch (all processes together)


@dataclass
class LossConfig:
    """Eq. 5: ``si_weight * I[type in si_types] * L_SI + ssi_weight * L_SSI``; ``si_reduction``:
    how SI is averaged over a batch (``svde.losses.mixture_loss``; both measured in docs/poc.md)."""

    si_weight: float = 1.0
    ssi_weight: float = 1.0
    si_types: list[str] = field(default_factory=lambda: [t.value for t in SCALE_INVARIANT])  # plain names (YAML)
    si_reduction: str = "si_samples"


@dataclass
class OptimConfig:
    """Optimiser (one of :data:`OPTIMIZER_NAMES`), LR schedule and gradient clipping."""

    name: str = "ranger"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"  # one of SCHEDULE_NAMES
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # final lr / lr for decaying schedules
    grad_clip: float | None = None  # max global gradient norm; None = off


@dataclass
class TrainConfig:
    """Loop length, precision, logging and checkpoint cadence (all in optimiser steps)."""

    steps: int = 1000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (CUDA only)
    channels_last: bool = True  # NHWC weights and inputs (the models' default: faster on CPU and GPU)
    compile: bool = False
    log_every: int = 10
    image_every: int = 100
    checkpoint_every: int = 100
    max_nonfinite: int = 5  # consecutive non-finite losses before the run stops
    # Divergence (svde.training.state.DivergenceMonitor; null: off): the run stops on a loss above diverge_factor
    # x its running level in diverge_patience of the last 2 x patience steps, a global weight norm above
    # diverge_norm_factor x its start, or a prediction's |log-disparity| above diverge_output_bound.
    diverge_factor: float | None = 100.0
    diverge_patience: int = 10
    diverge_norm_factor: float | None = 10.0
    diverge_output_bound: float | None = 50.0
    ddp_timeout_s: float = 300.0  # process-group timeout: a frozen peer stops the others after this


@dataclass
class EvalSettings:
    """How a dataset entry is evaluated (``svde.evaluation.evaluate_entry``): the keys that the
    training config's ``val`` and the proof of concept's ``heldout`` share."""

    dataset: DatasetEntry | None = None
    protocol: str | None = None  # svde.evaluation protocol; None = the dataset's own
    short_side: int | None = None  # input resolution override (the protocol's 384 is slow on CPU)
    batch_size: int = 8
    max_images: int | None = None

    def problems(self, where: str) -> list[str]:
        """What is wrong with the batch size, image count and resolution (empty: nothing)."""
        rules = {"batch_size": (self.batch_size > 0, "> 0"),
                 "max_images": (self.max_images is None or self.max_images >= 1, "null (all) or >= 1"),
                 "short_side": (self.short_side is None or self.short_side >= STRIDE,
                                f"null or >= {STRIDE} (the encoder stride)")}
        return [f"{where}.{key} must be {rule}, got {getattr(self, key)}" for key, (ok, rule) in rules.items() if not ok]


@dataclass
class ValConfig(EvalSettings):
    """Periodic validation with ``svde.evaluation.evaluate_entry``; ``every: 0`` turns it off.

    Validation runs on ``dataset``, or, with ``holdout: N`` and ``dataset: null``, on N samples
    kept out of training of each training set with depth ground truth (absolute, UTS; not UTSS)
    (:func:`svde.training.loaders.val_sets`), scored by the mean ``metric``. ``best.pt``
    records which data selected it (``selected_on``).
    """

    dataset: DatasetEntry | None = field(default_factory=lambda: DatasetEntry(split="val", options={"length": 32}))
    holdout: int = 0  # samples of each depth training set kept out for validation (0: validate on `dataset`)
    every: int = 100
    metric: str = "delta1_err"  # key of the "uts" results (svde.evaluation.METRIC_NAMES ...); lower is better


@dataclass
class Config:
    """The single source of truth for a training run; stored as a plain dict in checkpoints."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/``torch.save``-safe)."""
        return dataclasses.asdict(self)


# ---- composition ---------------------------------------------------------------------------
def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two dicts: nested dicts merge, any other value in ``override`` replaces.

    Example:
        >>> merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}})
        {'a': {'x': 1, 'y': 3}}
    """
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config file and its ``base:`` files (relative to it) into one raw dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"config files include each other in a loop: {chain}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc  # one line
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(raw).__name__}")
    return merge_bases(raw, path, (*_seen, resolved))


def merge_bases(raw: dict[str, Any], path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``raw`` (a config mapping read from ``path``) merged over its ``base:`` files, in order.

    Example:
        >>> merge_bases({"train": {"steps": 3}}, "configs/x.yaml")
        {'train': {'steps': 3}}
    """
    path = Path(path)
    raw = dict(raw)
    bases = raw.pop("base", None) or []
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a file name or a list of file names, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge(merged, read_yaml(path.parent / base, _seen))
    return merge(merged, raw)


def apply_override(raw: dict[str, Any], override: str) -> dict[str, Any]:
    """Apply one ``key.sub=value`` override (value parsed as YAML; list items by index).

    Example:
        >>> apply_override({"train": {"steps": 5}}, "train.steps=7")
        {'train': {'steps': 7}}
        >>> apply_override({"data": {"train": [{"root": None}]}}, "data.train.0.root=/d")
        {'data': {'train': [{'root': '/d'}]}}
    """
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    dotted, text = override.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {override!r}: empty key in {dotted!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({exc})") from exc
    node: Any = raw
    default: Any = Config().to_dict()
    for i, key in enumerate(keys[:-1]):
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            index = _list_index(node, key, where)
            node, default = node[index], None
        else:
            default = default.get(key) if isinstance(default, dict) else None
            if not isinstance(node.get(key), (dict, list)):
                # Not in the files: start from the dataclass default, so that e.g.
                # ``data.train.0.root=...`` reaches the default list's first entry.
                node[key] = copy.deepcopy(default) if isinstance(default, (dict, list)) else {}
            node = node[key]
    node[_list_index(node, keys[-1], dotted) if isinstance(node, list) else keys[-1]] = value
    return raw


def _list_index(node: list, key: str, where: str) -> int:
    if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
        raise ConfigError(f"override key {where!r}: {key!r} is not an index of a list of {len(node)} items")
    return int(key)


# ---- typed conversion ----------------------------------------------------------------------
def _check_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            raise ConfigError(f"unknown config key '{where}{key}'{did_you_mean(key, valid)}; valid keys here: "
                              f"{', '.join(valid)}")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}, got {value!r}")
        return from_dict(tp, value, where + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    if tp is Any:
        return value
    if tp is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a raw dict, checking every key and value type."""
    _check_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    kwargs = {key: _convert(hints[key], value, f"{where}{key}") for key, value in data.items()}
    return cls(**kwargs)


def validate(cfg: Config) -> Config:
    """Check the values that types alone cannot (names, ranges); returns ``cfg``."""
    # Local imports: keep ``import svde.config`` light.
    from svde.data.colour import COLOUR_PLACES
    from svde.data.warp import WARP_PLACES
    from svde.data.registry import DATASETS, option_problems
    from svde.data.sampling import subset_problem
    from svde.losses import SI_REDUCTIONS, SI_TYPES
    from svde.models import MODELS

    problems = []
    if cfg.model.name not in MODELS:
        problems.append(f"model.name {cfg.model.name!r} is not one of {', '.join(MODELS)}")
    if cfg.model.encoder_weights not in (None, "imagenet"):
        problems.append(f"model.encoder_weights must be null or 'imagenet', got {cfg.model.encoder_weights!r}")
    if not cfg.data.train:
        problems.append("data.train is empty: name at least one dataset")
    entries = [(f"data.train.{i}", e) for i, e in enumerate(cfg.data.train)]
    if cfg.val.dataset is not None:
        entries.append(("val.dataset", cfg.val.dataset))
    for where, entry in entries:
        if entry.name not in DATASETS:
            problems.append(f"{where}.name {entry.name!r} is not one of {', '.join(DATASETS)}")
        if entry.convert not in DEPTH_CONVERSIONS:
            problems.append(f"{where}.convert must be null, {' or '.join(map(repr, DEPTH_CONVERSIONS[1:]))}, "
                            f"got {entry.convert!r}")
        if not entry.weight > 0:
            problems.append(f"{where}.weight must be > 0, got {entry.weight}")
        problems += [p for p in [subset_problem(entry.subset, where)] if p]
    for key in ("height", "width"):
        value = getattr(cfg.data, key)
        if value <= 0 or value % STRIDE:
            problems.append(f"data.{key} must be a positive multiple of {STRIDE} (the encoder stride), got {value}")
    for where, value in (("data.batch_size", cfg.data.batch_size), ("data.epoch_length", cfg.data.epoch_length),
                         ("train.steps", cfg.train.steps), ("train.log_every", cfg.train.log_every),
                         ("train.checkpoint_every", cfg.train.checkpoint_every),
                         ("train.max_nonfinite", cfg.train.max_nonfinite)):
        if value <= 0:
            problems.append(f"{where} must be > 0, got {value}")
    if cfg.loss.si_weight < 0 or cfg.loss.ssi_weight < 0 or cfg.loss.si_weight + cfg.loss.ssi_weight == 0:
        problems.append(f"loss weights must be >= 0 and not both 0, got si_weight={cfg.loss.si_weight}, "
                        f"ssi_weight={cfg.loss.ssi_weight}")
    bad_types = [t for t in cfg.loss.si_types if t not in SI_TYPES]
    if bad_types:
        problems.append(f"loss.si_types may hold {list(SI_TYPES)} only (SI needs unbiased depth), got {bad_types}")
    if cfg.data.warp_on == "device" and cfg.data.colour_on == "workers":  # the jitter reads the warped crop
        problems.append("data.warp_on: device needs the colour on the device too (data.colour_on: device, or auto on CUDA)")
    for where, value, names in (("train.amp", cfg.train.amp, AMP_MODES), ("data.colour_on", cfg.data.colour_on,
                                 COLOUR_PLACES), ("data.warp_on", cfg.data.warp_on, WARP_PLACES),
                                ("loss.si_reduction", cfg.loss.si_reduction, SI_REDUCTIONS),
                                ("optim.name", cfg.optim.name, OPTIMIZER_NAMES),
                                ("optim.schedule", cfg.optim.schedule, SCHEDULE_NAMES)):
        if value not in names:
            problems.append(f"{where} {value!r} is not one of {', '.join(names)}")
    if cfg.optim.warmup_steps < 0 or not 0 <= cfg.optim.min_lr_ratio <= 1:
        problems.append(f"optim.warmup_steps must be >= 0 and optim.min_lr_ratio in [0, 1], got "
                        f"{cfg.optim.warmup_steps} and {cfg.optim.min_lr_ratio}")
    problems += [f"{where} must be a finite number, got {value}" for where, value in _floats(cfg.to_dict())
                 if not math.isfinite(value)]
    if not (math.isfinite(cfg.optim.lr) and cfg.optim.lr > 0):
        problems.append(f"optim.lr must be > 0 and finite, got {cfg.optim.lr}")
    if not cfg.optim.weight_decay >= 0:
        problems.append(f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
    if cfg.optim.grad_clip is not None and not cfg.optim.grad_clip > 0:
        problems.append(f"optim.grad_clip must be null or > 0, got {cfg.optim.grad_clip}")
    problems += _check_ranges(cfg) + _check_val(cfg)
    for where, entry in entries:  # options of unknown datasets: their name is reported above
        problems += option_problems(entry.name, entry.options, where) if entry.name in DATASETS else []
    reported: set[str] = set()  # one problem per key (a NaN fails both "finite" and its range)
    problems = [p for p in problems if not (p.split(" ", 1)[0] in reported or reported.add(p.split(" ", 1)[0]))]
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return cfg


def _floats(data: Any, where: str = "") -> list[tuple[str, float]]:
    """Every float in a nested config dict, with its dotted key."""
    if isinstance(data, float):
        return [(where, data)]
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, list) else ()
    return [f for key, value in items for f in _floats(value, f"{where}.{key}" if where else str(key))]


def _check_ranges(cfg: Config) -> list[str]:
    t, problems = cfg.train, []
    if not valid_device_name(t.device):
        problems.append(f"train.device must be one of {DEVICE_NAMES}, got {t.device!r}")
    for where, value in (("train.seed", t.seed), ("train.image_every", t.image_every), ("val.every", cfg.val.every),
                         ("data.num_workers", cfg.data.num_workers)):
        if value < 0:
            problems.append(f"{where} must be >= 0{' (0 = off)' if where == 'val.every' else ''}, got {value}")
    if not t.ddp_timeout_s > 0:
        problems.append(f"train.ddp_timeout_s must be > 0 (seconds), got {t.ddp_timeout_s}")
    for key in ("diverge_factor", "diverge_norm_factor", "diverge_output_bound"):
        if getattr(t, key) is not None and not getattr(t, key) > 1:
            problems.append(f"train.{key} must be null (off) or > 1, got {getattr(t, key)}")
    if t.diverge_patience < 1:
        problems.append(f"train.diverge_patience must be >= 1, got {t.diverge_patience}")
    return problems


def _check_val(cfg: Config) -> list[str]:
    """Validation settings: image count, resolution, protocol and metric names."""
    from svde.evaluation import DATASET_PROTOCOLS, METRIC_NAMES, PROTOCOLS
    from svde.evaluation.protocols import protocol_name

    v, problems = cfg.val, cfg.val.problems("val")
    if v.holdout < 0:
        problems.append(f"val.holdout must be >= 0 (0: validate on val.dataset), got {v.holdout}")
    if v.holdout > 0 and v.dataset is not None:
        problems.append("val.holdout and val.dataset exclude each other: set val.dataset to null to validate on "
                        "held-out training samples, or val.holdout to 0")
    # The protocol validation runs: val.protocol, else "folder" on held-out samples (depth, no cap), else the dataset's
    name = v.protocol or ("folder" if v.holdout > 0 else v.dataset.name if v.dataset is not None and v.every else None)
    protocol = None
    try:
        protocol = PROTOCOLS[protocol_name(name)] if name is not None else None
    except UnknownName:
        if v.protocol is not None:
            problems.append(f"val.protocol {v.protocol!r} is not a protocol"
                            f"{did_you_mean(v.protocol, [*PROTOCOLS, *DATASET_PROTOCOLS])}; valid: "
                            f"{', '.join(PROTOCOLS)} or a dataset name ({', '.join(DATASET_PROTOCOLS)})")
        else:
            problems.append(f"val.dataset.name {v.dataset.name!r} has no evaluation protocol of its own: set "
                            f"val.protocol to one of {', '.join(PROTOCOLS)}")
    metrics = ("whdr",) if protocol is not None and protocol.ordinal else (*METRIC_NAMES, "geometry_err")
    valid = metrics if protocol is not None else (*METRIC_NAMES, "geometry_err", "whdr")
    if v.metric not in valid:
        problems.append(f"val.metric {v.metric!r} is not a validation metric{did_you_mean(v.metric, valid)}; "
                        f"valid: {', '.join(valid)}")
    return problems


def build_config(raw: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> Config:
    """Typed, validated :class:`Config` from a raw dict plus dotted overrides.

    Example:
        >>> build_config({"train": {"steps": 3}}, ["optim.lr=0.01"]).optim.lr
        0.01
    """
    data = copy.deepcopy(dict(raw or {}))  # overrides edit nested dicts in place: never the caller's
    for override in overrides:
        data = apply_override(data, override)
    return validate(from_dict(Config, data))


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read ``path`` (with its ``base:`` files), apply overrides, check; ``name`` defaults to the file stem."""
    raw = read_yaml(path)
    raw.setdefault("name", Path(path).stem)
    return build_config(raw, overrides)
