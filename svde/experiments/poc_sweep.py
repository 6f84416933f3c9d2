"""The proof of concept's sweep: every run of :mod:`svde.experiments.poc`, then ``results.json``
(curves, paired differences), Fig. 2 and the table.

Example:
    >>> _mean_std([1.0, 3.0])
    (2.0, 1.4142135623730951)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from svde.atomic import atomic_path, write_json
from svde.device import resolve_device
from svde.experiments.poc import (LABELS, UTS, UTSS, PocConfig, _jsonable, _kinds, build_heldout, build_runs,
                                  build_source, do_run, evaluate_heldout, partition)

log = logging.getLogger(__name__)

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
        r.update(n_uts=parts[r["percent"]][UTS], n_utss=parts[r["percent"]][UTSS] if r["kind"] == "mixture" else 0)
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
    with atomic_path(path) as tmp:  # atomic, like every file svde writes
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def summary_table(summary: dict[str, Any]) -> str:
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
        log.info("[%d/%d] %s: rel %.2f %%, delta1_err %.2f %%, geometry_err %s (%s)", i, len(runs), run.name,
                 100 * result["rel"], 100 * result["delta1_err"], "n/a" if geo is None else f"{100 * geo:.2f} %",
                 state)
        results.append(result)
    counts = {p: {UTS: len(v[UTS]), UTSS: len(v[UTSS])} for p, v in parts.items()}
    baseline = constant_baseline(cfg, heldout, str(resolve_device(runs[0].config.train.device)))
    summary = summarize(cfg, results, n_source, counts, baseline)
    write_json(out_dir / "results.json", summary, indent=1)
    plot_fig2(summary, out_dir / "fig2.png")
    return summary


