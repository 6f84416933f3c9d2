"""docs/poc_synthetic_reductions.png: the mixture curve under both SI reductions, and UTS only.

usage: python docs/plot_poc_reductions.py runs/poc/synthetic_batch/results.json docs/poc_si_samples_curve.json docs/poc_synthetic_reductions.png
Each *_RESULTS is a results.json of `svde poc` (only "curves" and "baseline" are read; the
UTS-only curve and the constant baseline come from the first one).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

batch, si_samples = (json.load(open(p)) for p in sys.argv[1:3])
curves = [(si_samples["curves"]["mixture"], "mixture, si_samples", "o-"),
          (batch["curves"]["mixture"], "mixture, batch", "s-"),
          (batch["curves"]["uts_only"], "UTS only (either)", "^--")]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, (metric, log) in zip(axes, (("rel", False), ("rel", True), ("geometry_err", True))):
    for c, label, style in curves:
        err = [100 * s for s in c["rel_std"]] if metric == "rel" else None
        ax.errorbar(c["percent"], [100 * v for v in c[metric]], yerr=err, fmt=style, capsize=3, label=label)
    ax.axhline(100 * batch["baseline"][metric], color="grey", lw=0.8, ls=":", label="constant prediction")
    ax.set_xlabel("p, % of UTS data")
    ax.set_ylabel("rel, %" if metric == "rel" else "geom err, %")
    if log:
        ax.set_xscale("log")
    ax.set_title(("rel, mean ± std" if metric == "rel" else "geometry error, mean") + (", log p" if log else ""))
    ax.grid(True, alpha=0.3, which="both")
axes[0].legend(fontsize=7)
fig.suptitle("synthetic rooms, 1200 steps, 2 seeds: held-out scores (UTS mode) by SI batch reduction", fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[3], dpi=72)
