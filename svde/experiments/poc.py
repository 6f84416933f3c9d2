"""The paper's proof of concept (§4.4.1, Fig. 2): UTS+UTSS mixtures against UTS data alone.

From an absolute-depth source dataset, for each ``p`` in ``percents``: ``p`` % of the source
samples (a fixed partition, see :func:`svde.data.sampling.take_subset`) become UTS (depth
times a random factor) and the rest UTSS (disparity times a random scale plus a random shift).
One run per ``p``, seed and kind, all with the same model, steps, batch size, seed and
(except for ``uts_only_si``) loss, eq. 5 (``L = I_UTS * L_SI + L_SSI``):

* ``mixture``: the whole mixture, eq. 5;
* ``uts_only``: the UTS part alone, the same eq. 5 loss (on UTS samples: ``L_SI + L_SSI``). At
  ``p = 100 %`` the UTSS part is empty and this is the mixture run itself: same data, same
  order, same seed, same loss, so the same weights and the same held-out score;
* ``uts_only_si`` (optional, not in the default ``kinds``): the UTS part alone with SI alone,
  which changes the loss as well as the data.

Each model is then evaluated on the same held-out absolute set in UTS mode (``rel`` = abs_rel,
``delta1_err`` and the geometry error). Writes ``<out>/<run>/`` (a training run plus its
``result.json``), ``<out>/results.json`` and ``<out>/fig2.png`` (rel against p, linear and
log-x). Resumable: a run with a ``result.json`` is not redone, an interrupted one continues
from its ``last.pt``; a stored run whose config differs from the current one is an error.

Run it with ``svde poc --config configs/poc/synthetic.yaml --threads 1`` (or
``python scripts/experiments/poc.py ...``); :mod:`svde.experiments.poc_sweep` runs the sweep and summarises the
runs, draws Fig. 2 and prints the table.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from svde.atomic import write_json
from svde.config import (
    Config,
    ConfigError,
    DatasetEntry,
    EvalSettings,
    apply_override,
    build_config,
    from_dict,
    merge,
    merge_bases,
    read_yaml,
)
from svde.data import build_dataset
from svde.data.sampling import take_subset
from svde.device import resolve_device
from svde.errors import RunFailed
from svde.evaluation import EvalEntry, evaluate_entry
from svde.models import load_model, read_checkpoint
from svde.training import train
from svde.types import SCALE_INVARIANT, DepthType


log = logging.getLogger(__name__)
KINDS = ("mixture", "uts_only", "uts_only_si")  # every kind of run, in table order
DEFAULT_KINDS = ("mixture", "uts_only")
LABELS = {"mixture": "UTS+UTSS mixture", "uts_only": "UTS only", "uts_only_si": "UTS only, SI alone"}
SSI_WEIGHT = {"mixture": 1.0, "uts_only": 1.0, "uts_only_si": 0.0}  # si_weight is 1 for every kind
METRICS = {"rel": "abs_rel", "delta1_err": "delta1_err", "geometry_err": "geometry_err"}  # ours -> evaluator's
# The two parts of the source (what each is converted to; also the results' part names and the
# evaluation's UTS mode), as the plain names that configs and results.json hold.
UTS, UTSS = DepthType.UTS.value, DepthType.UTSS.value


class PocError(RunFailed):
    """The sweep cannot run as configured (a stale run folder, an unusable source, ...)."""


@dataclass
class HeldoutConfig(EvalSettings):
    """The held-out absolute-depth set every model is evaluated on (UTS mode): the keys of the
    training config's validation set (``svde.config.EvalSettings``: ``dataset``, ``protocol``,
    ``short_side`` (None: the protocol's 384), ``batch_size``, ``max_images``)."""

    dataset: DatasetEntry = field(default_factory=lambda: DatasetEntry(split="test", options={"length": 64}))


@dataclass
class PocConfig:
    """A proof-of-concept sweep; ``train`` is a training config (svde.config) whose ``data.train``,
    ``loss`` weights and ``train.seed`` are set per run."""

    name: str = "poc"
    percents: list[float] = field(default_factory=lambda: [5.0, 10.0, 25.0, 50.0, 100.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))  # "mixture" and baselines of KINDS
    source: DatasetEntry = field(default_factory=lambda: DatasetEntry(split="train", options={"length": 320}))
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """One training run of the sweep."""

    name: str
    kind: str  # one of KINDS
    percent: float
    seed: int
    config: Config


# ---- config ----------------------------------------------------------------------------------
def load_poc_config(path: str | Path, overrides: Sequence[str] = ()) -> PocConfig:
    """Read a sweep config: its own ``base:`` files, then the ``train:`` block's ``base:`` files
    (relative to ``path``), then ``key.sub=value`` overrides; every value is checked.

    Example:
        >>> cfg = load_poc_config("configs/poc/synthetic.yaml", ["percents=[50, 100]"])  # doctest: +SKIP
        >>> cfg.percents  # doctest: +SKIP
        [50.0, 100.0]
    """
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    block = raw.get("train") or {}
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: 'train' must be a mapping (a training config), got {block!r}")
    raw["train"] = merge_bases(block, path)
    for override in overrides:
        raw = apply_override(raw, override)
    cfg = from_dict(PocConfig, raw)
    check_poc_config(cfg)
    return cfg


def check_poc_config(cfg: PocConfig) -> PocConfig:
    """Check what types alone cannot: percents in (0, 100], distinct; known kinds with the mixture
    among them; a plain source entry."""
    problems = []
    if ("mixture" not in cfg.kinds or len(cfg.kinds) < 2 or len(set(cfg.kinds)) != len(cfg.kinds)
            or any(k not in KINDS for k in cfg.kinds)):
        problems.append(f"kinds must hold 'mixture' and at least one baseline of {list(KINDS[1:])}, without "
                        f"repeats, got {cfg.kinds}")
    if not cfg.percents or any(not 0 < p <= 100 for p in cfg.percents):
        problems.append(f"percents must be a non-empty list of values in (0, 100], got {cfg.percents}")
    if len(set(cfg.percents)) != len(cfg.percents) or len(set(cfg.seeds)) != len(cfg.seeds) or not cfg.seeds:
        problems.append(f"percents and seeds must be non-empty lists without repeats, got {cfg.percents} "
                        f"and {cfg.seeds}")
    if cfg.source.convert is not None or cfg.source.subset is not None:
        problems.append(f"source must be the plain absolute-depth dataset (the sweep sets convert and subset), "
                        f"got convert={cfg.source.convert!r}, subset={cfg.source.subset}")
    if _same_data(cfg.source, cfg.heldout.dataset):
        problems.append("heldout.dataset is the source dataset itself: evaluate on another split (or seed)")
    problems += heldout_entry(cfg).problems("heldout.dataset") + cfg.heldout.problems("heldout")
    if problems:
        raise ConfigError("invalid proof-of-concept config:\n  " + "\n  ".join(problems))
    return cfg


def _same_data(a: DatasetEntry, b: DatasetEntry) -> bool:
    return (a.name, a.root, a.split, a.options) == (b.name, b.root, b.split, b.options)


def run_name(kind: str, percent: float, seed: int) -> str:
    """Folder name of one run, e.g. ``p5_mixture_s0``.

    Example:
        >>> run_name("uts_only", 12.5, 1)
        'p12.5_uts_only_s1'
    """
    return f"p{percent:g}_{kind}_s{seed}"


def build_runs(cfg: PocConfig, n_source: int) -> list[Run]:
    """Every run of the sweep with its full, validated training config.

    The UTS part is ``subset [0, p]`` of the ``n_source`` source samples with ``convert: uts``,
    the UTSS part ``subset [p, 1]`` with ``convert: utss``; in the mixture each part is weighted
    by its number of samples, so every source sample is drawn equally often. When ``p`` covers
    the whole source the UTSS part is left out, not added empty, so the mixture's config (data
    entries, weights, loss, seed) is exactly the ``uts_only`` run's: only the names differ.

    Example:
        >>> runs = build_runs(PocConfig(percents=[50.0]), n_source=320)
        >>> [(r.name, len(r.config.data.train), r.config.loss.ssi_weight) for r in runs]
        [('p50_mixture_s0', 2, 1.0), ('p50_uts_only_s0', 1, 1.0)]
    """
    source = dataclasses.asdict(cfg.source)
    runs = []
    for seed in cfg.seeds:
        for percent in sorted(cfg.percents):
            f = percent / 100.0
            n_uts = round(f * n_source)  # as svde.training.trainer.take_subset rounds
            if n_uts == 0:
                raise ConfigError(f"percents: {percent:g} % of {n_source} source samples is no sample at all; "
                                  f"use a larger source or a larger p")
            uts = {**source, "convert": UTS, "subset": [0.0, f], "weight": n_uts / n_source}
            utss = {**source, "convert": UTSS, "subset": [f, 1.0], "weight": 1.0 - n_uts / n_source}
            for kind in _kinds(cfg):
                raw = copy.deepcopy(cfg.train)
                name = run_name(kind, percent, seed)
                entries = [uts, utss] if kind == "mixture" and n_uts < n_source else [uts]
                loss = {"si_weight": 1.0, "ssi_weight": SSI_WEIGHT[kind], "si_types": [t.value for t in SCALE_INVARIANT]}
                raw = merge(raw, {"name": name, "data": {"train": copy.deepcopy(entries)}, "loss": loss,
                                  "train": {"seed": seed}})
                try:
                    runs.append(Run(name, kind, percent, seed, build_config(raw)))
                except ConfigError as exc:
                    raise ConfigError(f"the train: block does not give a valid training config for run {name}: "
                                      f"{exc}") from None
    return runs


def _kinds(cfg: PocConfig) -> list[str]:
    """``cfg.kinds`` in the order of KINDS (the mixture first)."""
    return [k for k in KINDS if k in cfg.kinds]


def build_source(cfg: PocConfig) -> Dataset:
    """The source dataset, checked to hold absolute depth."""
    ds = build_dataset(cfg.source.name, cfg.source.root, cfg.source.split, **cfg.source.options)
    if ds.depth_type != DepthType.ABSOLUTE:
        raise PocError(f"source {cfg.source.name!r} gives {ds.depth_type!r} depth; the proof of concept needs "
                       f"absolute depth to make both UTS and UTSS data from it")
    return ds


def partition(source: Dataset, percent: float) -> dict[str, list[int]]:
    """Source indices of the UTS and UTSS parts for ``percent``, as the trainer selects them.

    Example:
        >>> from svde.data.synthetic import SyntheticDataset
        >>> parts = partition(SyntheticDataset(length=20, height=32, width=32), 25)
        >>> len(parts["uts"]), len(parts["utss"])
        (5, 15)
    """
    f, n = percent / 100.0, len(source)
    out = {UTS: list(take_subset(source, [0.0, f]).indices)}
    out[UTSS] = list(take_subset(source, [f, 1.0]).indices) if round(f * n) < n else []
    return out


# ---- one run -----------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{where}{key}.")
        return out
    return [] if a == b else [f"{where[:-1]}: {a!r} there, {b!r} now"]


def _check_same(stored: dict[str, Any], current: dict[str, Any], what: Path) -> None:
    diff = _differences(_jsonable(stored), _jsonable(current))
    if diff:
        raise PocError(f"{what} was made with another config ({'; '.join(diff[:5])}); delete that run folder "
                       f"or use another --out")


def build_heldout(cfg: PocConfig) -> Dataset:
    """The held-out evaluation set (built before any training, so that a bad root fails early)."""
    entry = heldout_entry(cfg)
    entry.check("heldout.dataset")
    return entry.build()


def heldout_entry(cfg: PocConfig) -> EvalEntry:
    """The held-out set as the evaluation's one dataset entry (svde.evaluation.entry)."""
    return EvalEntry.from_dataset(cfg.heldout.dataset, cfg.heldout.protocol)


def evaluate_heldout(model: torch.nn.Module, cfg: PocConfig, dataset: Dataset, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model`` on the held-out set in UTS mode: the evaluator's results and our METRICS of them."""
    res = evaluate_entry(model, heldout_entry(cfg), dataset=dataset, modes=(UTS,), batch_size=cfg.heldout.batch_size,
                         device=device, max_images=cfg.heldout.max_images, short_side=cfg.heldout.short_side)
    return res, {ours: res[UTS].get(theirs) for ours, theirs in METRICS.items()}


def evaluate_run(checkpoint: Path, cfg: PocConfig, dataset: Dataset, device: str) -> dict[str, Any]:
    """Evaluate a checkpoint on the held-out set in UTS mode: rel, delta1_err, geometry_err and per-image rel."""
    res, out = evaluate_heldout(load_model(checkpoint), cfg, dataset, device)
    for key in ("rel", "delta1_err"):
        if out[key] is None or not math.isfinite(out[key]):
            raise PocError(f"evaluating {checkpoint}: {key} is {out[key]} (no usable held-out image?)")
    if out["geometry_err"] is not None and not math.isfinite(out["geometry_err"]):
        raise PocError(f"evaluating {checkpoint}: geometry_err is {out['geometry_err']}")
    used = [r for r in res["per_image"] if not r["skipped"]]
    out["per_image_rel"] = [r[UTS]["abs_rel"] for r in used]
    out["n_images"] = res["n_images"]
    return out


def do_run(run: Run, cfg: PocConfig, out_dir: Path, heldout: Dataset | None = None) -> dict[str, Any]:
    """Train and evaluate one run into ``out_dir/run.name`` unless its ``result.json`` exists."""
    run_dir = out_dir / run.name
    result_path = run_dir / "result.json"
    config, heldout_cfg = run.config.to_dict(), dataclasses.asdict(cfg.heldout)
    if result_path.is_file():
        stored = json.loads(result_path.read_text())
        # Config has no "heldout" key: one flat comparison names e.g. "optim.lr" or "heldout.short_side".
        _check_same({**(stored.get("config") or {}), "heldout": stored.get("heldout")},
                    {**config, "heldout": heldout_cfg}, result_path)
        return {**stored, "reused": True}
    tic = time.perf_counter()
    last = run_dir / "last.pt"
    if last.is_file():  # interrupted earlier: continue, unless training had finished
        ckpt = read_checkpoint(last)
        _check_same(ckpt.get("config") or {}, config, last)
        if ckpt["step"] < run.config.train.steps:
            train(run.config, run_dir, resume=True)
    else:
        train(run.config, run_dir)
    train_s = time.perf_counter() - tic
    tic = time.perf_counter()
    heldout = heldout if heldout is not None else build_heldout(cfg)
    metrics = evaluate_run(last, cfg, heldout, str(resolve_device(run.config.train.device)))
    result = {"run": run.name, "kind": run.kind, "percent": run.percent, "seed": run.seed,
              "steps": run.config.train.steps,
              "train_wall_s": round(train_s, 1), "eval_wall_s": round(time.perf_counter() - tic, 1),
              **metrics, "config": config, "heldout": heldout_cfg}
    write_json(result_path, result, indent=1)  # atomic: a result.json is always complete, it marks the run done
    return {**result, "reused": False}
