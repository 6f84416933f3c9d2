"""The paper's proof of concept (§4.4.1, Fig. 2): UTS+UTSS mixtures against UTS data alone.

From an absolute-depth source dataset, for each ``p`` in ``percents``: ``p`` % of the source
samples (a fixed partition, see :func:`svde.training.trainer.take_subset`) become UTS (depth
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

Usage:
    python scripts/experiments/poc.py --config configs/poc/synthetic.yaml [--out DIR] [--threads N]
        [key.sub=value ...]

Examples:
    python scripts/experiments/poc.py --config configs/poc/synthetic.yaml --threads 1
    python scripts/experiments/poc.py --config configs/poc/nyu.yaml source.root=/data/nyu_sync \\
        heldout.dataset.root=/data/nyu
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from svde.config import Config, ConfigError, DatasetEntry, apply_override, build_config, from_dict, merge, merge_bases, read_yaml
from svde.data import DataError, build_dataset
from svde.evaluation import evaluate_model, get_protocol
from svde.models import load_model, read_checkpoint
from svde.training import TrainingError, train
from svde.training.distributed import resolve_device
from svde.training.trainer import take_subset

KINDS = ("mixture", "uts_only", "uts_only_si")  # every kind of run, in table order
DEFAULT_KINDS = ("mixture", "uts_only")
LABELS = {"mixture": "UTS+UTSS mixture", "uts_only": "UTS only", "uts_only_si": "UTS only, SI alone"}
SSI_WEIGHT = {"mixture": 1.0, "uts_only": 1.0, "uts_only_si": 0.0}  # si_weight is 1 for every kind
METRICS = {"rel": "abs_rel", "delta1_err": "delta1_err", "geometry_err": "geometry_err"}  # ours -> evaluator's


class PocError(RuntimeError):
    """The sweep cannot run as configured (a stale run folder, an unusable source, ...)."""


@dataclass
class HeldoutConfig:
    """The held-out absolute-depth set every model is evaluated on (UTS mode)."""

    dataset: DatasetEntry = field(default_factory=lambda: DatasetEntry(split="test", options={"length": 64}))
    protocol: str | None = None  # svde.evaluation protocol; None = the dataset's own
    short_side: int | None = None  # input resolution (None: the protocol's 384)
    batch_size: int = 8
    max_images: int | None = None


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
    try:
        get_protocol(cfg.heldout.protocol or cfg.heldout.dataset.name)
    except (KeyError, ValueError) as exc:
        problems.append(f"heldout.protocol: {exc}")
    if cfg.heldout.batch_size < 1 or (cfg.heldout.max_images is not None and cfg.heldout.max_images < 1):
        problems.append(f"heldout.batch_size and heldout.max_images must be >= 1, got {cfg.heldout.batch_size} "
                        f"and {cfg.heldout.max_images}")
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
            uts = {**source, "convert": "uts", "subset": [0.0, f], "weight": n_uts / n_source}
            utss = {**source, "convert": "utss", "subset": [f, 1.0], "weight": 1.0 - n_uts / n_source}
            for kind in _kinds(cfg):
                raw = copy.deepcopy(cfg.train)
                name = run_name(kind, percent, seed)
                entries = [uts, utss] if kind == "mixture" and n_uts < n_source else [uts]
                loss = {"si_weight": 1.0, "ssi_weight": SSI_WEIGHT[kind], "si_types": ["absolute", "uts"]}
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
    if ds.depth_type != "absolute":
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
    out = {"uts": list(take_subset(source, DatasetEntry(subset=[0.0, f])).indices)}
    out["utss"] = list(take_subset(source, DatasetEntry(subset=[f, 1.0])).indices) if round(f * n) < n else []
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
    entry = cfg.heldout.dataset
    return build_dataset(entry.name, entry.root, entry.split, **entry.options)


def evaluate_heldout(model: torch.nn.Module, cfg: PocConfig, dataset: Dataset, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model`` on the held-out set in UTS mode: the evaluator's results and our METRICS of them."""
    res = evaluate_model(model, dataset, protocol=cfg.heldout.protocol or cfg.heldout.dataset.name,
                         modes=("uts",), batch_size=cfg.heldout.batch_size, device=device,
                         max_images=cfg.heldout.max_images, short_side=cfg.heldout.short_side)
    return res, {ours: res["uts"].get(theirs) for ours, theirs in METRICS.items()}


def evaluate_run(checkpoint: Path, cfg: PocConfig, dataset: Dataset, device: str) -> dict[str, Any]:
    """Evaluate a checkpoint on the held-out set in UTS mode: rel, delta1_err, geometry_err and per-image rel."""
    res, out = evaluate_heldout(load_model(checkpoint), cfg, dataset, device)
    for key in ("rel", "delta1_err"):
        if out[key] is None or not math.isfinite(out[key]):
            raise PocError(f"evaluating {checkpoint}: {key} is {out[key]} (no usable held-out image?)")
    if out["geometry_err"] is not None and not math.isfinite(out["geometry_err"]):
        raise PocError(f"evaluating {checkpoint}: geometry_err is {out['geometry_err']}")
    used = [r for r in res["per_image"] if not r["skipped"]]
    out["per_image_rel"] = [r["uts"]["abs_rel"] for r in used]
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
    tmp = result_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_path)  # a result.json is always complete: it marks the run as done
    return {**result, "reused": False}


# ---- summary -----------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(cfg: PocConfig, results: list[dict[str, Any]], n_source: int,
              parts: dict[float, dict[str, int]], baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """``results.json``: the runs, one curve per kind (mean and std over seeds) and paired differences.

    ``paired_rel_diff``: per baseline ``kind`` (every kind but the mixture), ``p`` and seed,
    rel(kind) - rel(mixture) on each held-out image, averaged, with its standard error over
    images (> 0: the mixture is better); ``paired_rel_diff_by_p``: those means averaged over
    seeds, their std over seeds and the number of seeds where the mixture won and where both
    scored the same on every image (``identical``: at ``p = 100 %``, ``uts_only`` and the
    mixture are the same run). ``baseline``: a constant prediction, for scale.
    """
    runs = [{k: v for k, v in r.items() if k not in ("config", "heldout", "per_image_rel", "reused")} for r in results]
    for r in runs:
        r.update(n_uts=parts[r["percent"]]["uts"], n_utss=parts[r["percent"]]["utss"] if r["kind"] == "mixture" else 0)
    kinds = _kinds(cfg)
    curves: dict[str, dict[str, list]] = {}
    for kind in kinds:
        curve: dict[str, list] = {"percent": [], "rel": [], "rel_std": [], "delta1_err": [], "geometry_err": []}
        for p in sorted(cfg.percents):
            mine = [r for r in results if r["kind"] == kind and r["percent"] == p]
            curve["percent"].append(p)
            mean, std = _mean_std([r["rel"] for r in mine])
            curve["rel"].append(mean)
            curve["rel_std"].append(std)
            curve["delta1_err"].append(_mean_std([r["delta1_err"] for r in mine])[0])
            geo = [r["geometry_err"] for r in mine if r["geometry_err"] is not None]
            curve["geometry_err"].append(_mean_std(geo)[0] if geo else None)
        curves[kind] = curve
    paired, by_p = [], []
    for kind in kinds[1:]:
        for p in sorted(cfg.percents):
            for seed in cfg.seeds:
                pair = {r["kind"]: r["per_image_rel"] for r in results if r["percent"] == p and r["seed"] == seed}
                diffs = [u - m for u, m in zip(pair[kind], pair["mixture"], strict=True)]
                mean, std = _mean_std(diffs)
                sem = None if std is None else std / math.sqrt(len(diffs))
                paired.append({"kind": kind, "percent": p, "seed": seed, "mean": mean, "sem": sem,
                               "n_images": len(diffs), "identical": all(d == 0 for d in diffs)})
            mine = [d for d in paired if d["kind"] == kind and d["percent"] == p]
            mean, std = _mean_std([d["mean"] for d in mine])
            by_p.append({"kind": kind, "percent": p, "mean": mean, "std_over_seeds": std, "n_seeds": len(mine),
                         "mixture_wins": sum(d["mean"] > 0 for d in mine),
                         "identical": sum(d["identical"] for d in mine)})
    return {"name": cfg.name, "n_source": n_source, "percents": sorted(cfg.percents), "seeds": cfg.seeds,
            "kinds": kinds,
            "metrics": "UTS mode (median-log scale alignment); rel = abs_rel, as fractions",
            "baseline": baseline, "curves": curves, "paired_rel_diff": paired, "paired_rel_diff_by_p": by_p,
            "runs": runs, "poc_config": _jsonable(dataclasses.asdict(cfg))}


class ConstantDepth(torch.nn.Module):
    """A model that predicts the same depth everywhere: the score of having learnt nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 1, *x.shape[2:])


def constant_baseline(cfg: PocConfig, heldout: Dataset, device: str) -> dict[str, Any]:
    """rel, delta1_err and geometry_err of :class:`ConstantDepth` on the held-out set."""
    return {"model": "constant depth", **evaluate_heldout(ConstantDepth(), cfg, heldout, device)[1]}


def plot_fig2(summary: dict[str, Any], path: str | Path) -> Path:
    """Fig. 2: rel (%) against p (%), one curve per kind; left linear, right log-x."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, log in zip(axes, (False, True)):
        for kind, style in zip(summary["kinds"], ("o-", "s--", "^:")):
            curve = summary["curves"][kind]
            rel = [100 * v for v in curve["rel"]]
            err = None if any(s is None for s in curve["rel_std"]) else [100 * s for s in curve["rel_std"]]
            ax.errorbar(curve["percent"], rel, yerr=err, fmt=style, capsize=3, label=LABELS[kind])
        ax.set_xlabel("p, % of UTS data")
        ax.set_ylabel("rel, %")
        if log:
            ax.set_xscale("log")
            ax.set_title("log scale")
        else:
            ax.set_title("linear scale")
        ax.grid(True, alpha=0.3, which="both")
    axes[0].legend()
    seeds = len(summary["seeds"])
    title = (f"{summary['name']}: held-out rel (UTS mode), {summary['n_source']} source samples, "
             + (f"mean ± std of {seeds} seeds" if seeds > 1 else "1 seed"))
    if summary.get("baseline"):
        title += f"; constant prediction: {100 * summary['baseline']['rel']:.1f} %"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def format_table(summary: dict[str, Any]) -> str:
    """Markdown table of the curves (in %, mean ± std over seeds) and the paired differences.

    The last columns are rel(baseline) - rel(mixture) for each baseline kind, image by image:
    with one seed, ± its standard error over held-out images; with several, ± its std over
    seeds, and how many seeds the mixture won.
    """
    seeds, kinds = len(summary["seeds"]), summary["kinds"]
    names = {k: "mixture" if k == "mixture" else LABELS[k] for k in kinds}
    head = ["p, %", "UTS / UTSS samples"] + [f"{metric} {names[k]}" for metric in ("rel", "δ1 err", "geom err")
                                             for k in kinds]
    head += [f"paired rel diff ({names[k]} − mixture)" for k in kinds[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    curves = summary["curves"]

    def pct(v: float | None, std: float | None = None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")

    def diff(kind: str, p: float) -> str:
        if seeds == 1:
            d = next(d for d in summary["paired_rel_diff"] if d["kind"] == kind and d["percent"] == p)
            if d["identical"]:
                return "0, identical on every image"
            return (f"{100 * d['mean']:+.2f} ± {100 * d['sem']:.2f} (SE over images)" if d["sem"] is not None
                    else f"{100 * d['mean']:+.2f}")
        d = next(d for d in summary["paired_rel_diff_by_p"] if d["kind"] == kind and d["percent"] == p)
        if d["identical"] == seeds:
            return f"0, identical on every image in {seeds}/{seeds} seeds"
        return (f"{100 * d['mean']:+.2f} ± {100 * d['std_over_seeds']:.2f}, "
                f"mixture better in {d['mixture_wins']}/{seeds}")

    for i, p in enumerate(curves["mixture"]["percent"]):
        counts = next((f"{r['n_uts']} / {r['n_utss']}" for r in summary["runs"]
                       if r["percent"] == p and r["kind"] == "mixture"), "?")
        cells = [f"{p:g}", counts] + [pct(curves[k]["rel"][i], curves[k]["rel_std"][i]) for k in kinds]
        cells += [pct(curves[k][metric][i]) for metric in ("delta1_err", "geometry_err") for k in kinds]
        cells += [diff(k, p) for k in kinds[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    if summary.get("baseline"):
        b = summary["baseline"]
        lines.append(f"\nConstant prediction (nothing learnt): rel {pct(b['rel'])}, δ1 err {pct(b['delta1_err'])}, "
                     f"geom err {pct(b['geometry_err'])}.")
    return "\n".join(lines)


# ---- the sweep ---------------------------------------------------------------------------------
def run_sweep(cfg: PocConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) every run, then write ``results.json`` and ``fig2.png`` into ``out_dir``.

    Example:
        >>> summary = run_sweep(load_poc_config("configs/poc/synthetic.yaml"), "runs/poc")  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    source = build_source(cfg)
    n_source = len(source)
    runs = build_runs(cfg, n_source)  # every config checked before any training
    heldout = build_heldout(cfg)
    parts = {p: partition(source, p) for p in cfg.percents}
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, run in enumerate(runs, 1):
        result = do_run(run, cfg, out_dir, heldout)
        state = "done earlier" if result["reused"] else f"trained in {result['train_wall_s']:.0f} s"
        geo = result["geometry_err"]
        print(f"[{i}/{len(runs)}] {run.name}: rel {100 * result['rel']:.2f} %, delta1_err "
              f"{100 * result['delta1_err']:.2f} %, geometry_err {'n/a' if geo is None else f'{100 * geo:.2f} %'} "
              f"({state})", flush=True)
        results.append(result)
    counts = {p: {"uts": len(v["uts"]), "utss": len(v["utss"])} for p, v in parts.items()}
    baseline = constant_baseline(cfg, heldout, str(resolve_device(runs[0].config.train.device)))
    summary = summarize(cfg, results, n_source, counts, baseline)
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out_dir / "results.json")
    plot_fig2(summary, out_dir / "fig2.png")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="sweep YAML (configs/poc/*.yaml)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/poc/<config name>)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, applied last")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # before albumentations loads: no network check
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    try:
        cfg = load_poc_config(args.config, args.overrides)
        out_dir = args.out if args.out is not None else Path("runs") / "poc" / cfg.name
        summary = run_sweep(cfg, out_dir)
    except (ConfigError, DataError, TrainingError, PocError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    print(format_table(summary))
    print(f"results: {out_dir / 'results.json'}\nfigure:  {out_dir / 'fig2.png'}\n"
          f"wall time: {time.perf_counter() - tic:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
