"""Turn evaluation results into a markdown table, JSON and CSV files."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from svde.atomic import write_text
from svde.evaluation.metrics import METRIC_NAMES
from svde.evaluation.protocols import Protocol

# fractions shown in % in the table (the paper's convention for these columns)
PERCENT = {"delta1_err", "delta2_err", "delta3_err", "whdr"}
COLUMNS = METRIC_NAMES + ("geometry_err", "whdr")


def _csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def column(name: str) -> str:
    """A metric's column title in the table and the CSV files: ``delta1_err (%)``, ``abs_rel``."""
    return f"{name} (%)" if name in PERCENT else name


def shown(name: str, value: float | None) -> float | None:
    """A metric's value in the units of its :func:`column` (the table and the CSVs agree)."""
    return None if value is None else (100.0 * value if name in PERCENT else value)


def _fmt(name: str, value: float | None) -> str:
    value = shown(name, value)
    if value is None:
        return "-"
    return f"{value:.2f}" if name in PERCENT else f"{value:.4f}"


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of evaluation results (one row per dataset and mode), then the protocols.

    The headline column is the paper's (delta1_err in % for NYU/TUM/KITTI, AbsRel for
    Sintel/ETH3D, WHDR in % for DIW); delta errors and WHDR are in %, the others as they are.

    Example:
        >>> print(format_table([]).splitlines()[0])  # doctest: +ELLIPSIS
        | dataset | mode | images | skipped | headline | ...
    """
    head = ["dataset", "mode", "images", "skipped", "headline", "value"] + [column(c) for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        metric = res["headline"]["metric"]
        for mode in res["modes"]:
            row = [res["dataset"], mode, str(res["n_images"]), str(res["n_skipped"]),
                   column(metric), _fmt(metric, res[mode].get(metric))]
            row += [_fmt(c, res[mode].get(c)) for c in COLUMNS]
            lines.append("| " + " | ".join(row) + " |")
    if results:
        lines.append("")
        lines += [f"- {res['dataset']}: {Protocol(**res['protocol']).describe()}" for res in results]
    return "\n".join(lines)


def write_results(results: Sequence[dict[str, Any]], out_dir: str | os.PathLike,
                  run_info: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``results.json`` (everything), ``summary.csv`` (dataset x mode) and ``per_image.csv``, each atomically.

    ``results.json`` keeps the evaluator's fractions; the CSV columns have the table's titles
    and units (``delta1_err (%)`` in %, ``abs_rel`` as a fraction).

    Returns the paths written. ``run_info`` (model, checkpoint, device, ...) goes into the JSON.

    Example:
        >>> write_results([], "/tmp/svde-eval-doc")["json"].name
        'results.json'
    """
    out = Path(out_dir)
    paths = {"json": out / "results.json", "summary": out / "summary.csv", "per_image": out / "per_image.csv"}
    write_text(paths["json"], json.dumps({"run": run_info or {}, "results": list(results)}, indent=2,
                                                default=str, allow_nan=False))
    summary: list[list[Any]] = [["dataset", "protocol", "mode", "n_images", "n_skipped", "headline_metric",
                                 "headline", *map(column, COLUMNS)]]
    per_image: list[list[Any]] = [["dataset", "file", "mode", "n_valid", "skipped", "reason", *map(column, COLUMNS)]]
    for res in results:
        metric = res["headline"]["metric"]
        for mode in res["modes"]:
            summary.append([res["dataset"], res["protocol"]["name"], mode, res["n_images"], res["n_skipped"],
                            column(metric), _csv(metric, res[mode].get(metric)),
                            *(_csv(c, res[mode].get(c)) for c in COLUMNS)])
        for rec in res["per_image"]:
            for mode in res["modes"]:
                values = rec.get(mode, {})
                per_image.append([res["dataset"], rec["file"], mode, rec["n_valid"], rec["skipped"], rec["reason"],
                                  *(_csv(c, values.get(c)) for c in COLUMNS)])
    write_text(paths["summary"], _csv_text(summary))
    write_text(paths["per_image"], _csv_text(per_image))
    return paths


def _csv(name: str, value: float | None) -> str:
    value = shown(name, value)
    return "" if value is None else repr(value)
