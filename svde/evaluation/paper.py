"""Paper-table mode: measured results of the released models next to the published ones.

One call evaluates any set of the eight models on any set of the five datasets of the
authors' evaluation (:data:`PAPER_DATASETS`), with both alignment modes, and sets the measured
headline metric beside the published numbers and their difference. The published numbers are
data in this package (``published.json``), each with its source:

* ``readme``: the table of the authors' README (SamsungLabs/geometry-preserving-de ``README.md``),
  the released checkpoints on NYU, TUM, Sintel, DIW and ETH3D;
* ``paper_table3``: Table 3 of the paper (arXiv:2009.12419), NYU, TUM, KITTI, Sintel and DIW.

Both report UTS metrics (the paper's Table 3 caption), so the difference is taken against the
measured UTS value; the UTSS value is shown beside it. Units follow the sources: delta1 error and
WHDR in %, AbsRel as a fraction.

Example:
    >>> published_value("b5_lrn4", "nyu", "readme")
    10.64
"""

from __future__ import annotations

import json
import logging
import math
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn
from torch.utils.data import Dataset

from svde.evaluation.evaluator import MODES, check_modes, evaluate_model
from svde.evaluation.protocols import get_protocol
from svde.atomic import write_text
from svde.models import DepthModel, build_model
from svde.models.loading import load
from svde.models.released import RELEASED
from svde.errors import unknown_name
from svde.types import DepthType

log = logging.getLogger(__name__)

PAPER_DATASETS = ("nyu", "tum", "sintel", "eth3d", "diw")
PAPER_MODELS = tuple(RELEASED)  # the models with released weights (a new model joins with its release)
SOURCES = ("readme", "paper_table3")
# the authors' data folder (their config.py): dataset -> sub-folder, "" for the folder itself
AUTHORS_LAYOUT = {"nyu": "", "tum": "TUM", "sintel": "sintel", "diw": "DIW", "eth3d": "ETH3D"}


@lru_cache(maxsize=1)
def _published_text() -> str:
    return resources.files("svde.evaluation").joinpath("published.json").read_text()


def load_published(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The published numbers with their sources (``published.json`` of this package by default).

    Raises ``ValueError`` naming the file and key when the data does not have the expected shape.
    """
    where = str(path) if path is not None else "svde/evaluation/published.json"
    text = Path(path).read_text() if path is not None else _published_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    for key in ("metrics", "sources"):
        if not isinstance(data.get(key), dict):
            raise ValueError(f"{where}: expected a {key!r} mapping")
    for src in SOURCES:
        entry = data["sources"].get(src)
        if not isinstance(entry, dict) or entry.get("mode") not in MODES or not isinstance(entry.get("values"), dict):
            raise ValueError(f"{where}: sources.{src} needs 'mode' (one of {MODES}) and 'values'")
        for model, row in entry["values"].items():
            for dataset, value in row.items():
                if dataset not in data["metrics"] or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{where}: sources.{src}.values.{model}.{dataset} must be a finite number "
                                     f"of a dataset listed in 'metrics', got {value!r}")
    return data


def published_value(model: str, dataset: str, source: str, published: Mapping[str, Any] | None = None) -> float | None:
    """The published headline value of ``model`` on ``dataset`` in ``source`` (None where not published)."""
    published = published or load_published()
    if source not in SOURCES:
        raise unknown_name("source", source, SOURCES)
    return published["sources"][source]["values"].get(model, {}).get(dataset)


def check_names(models: Sequence[str], datasets: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate model and dataset names (non-empty, known); returns them as tuples.

    Example:
        >>> check_names(["mn_lrn4"], ["nyu"])
        (('mn_lrn4',), ('nyu',))
    """
    models, datasets = tuple(models), tuple(datasets)
    bad_m = [m for m in models if m not in PAPER_MODELS]
    if bad_m or not models:
        raise KeyError(f"unknown model(s) {bad_m or '(none given)'}; valid models: {', '.join(PAPER_MODELS)}")
    bad_d = [d for d in datasets if d not in PAPER_DATASETS]
    if bad_d or not datasets:
        raise KeyError(f"unknown dataset(s) {bad_d or '(none given)'}; valid datasets: {', '.join(PAPER_DATASETS)}")
    return models, datasets


def load_weights(name: str, path: str | os.PathLike) -> DepthModel:
    """Model ``name`` with the weights of ``path``, an authors' released ``.pth`` or an svde
    checkpoint, through :func:`svde.load` (a file holding another model is refused)."""
    check_names([name], PAPER_DATASETS[:1])
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights of {name}: {path} does not exist")
    return load(path, model=name)


def _in_unit(value: float | None, unit: str) -> float | None:
    if value is None:
        return None
    return 100.0 * value if unit == "%" else value


def compare(model: str, dataset: str, result: Mapping[str, Any],
            published: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One row: the measured headline (per mode, in the published unit), the published values
    and ``measured - published`` (against the mode each source reports)."""
    published = published or load_published()
    spec = published["metrics"][dataset]
    metric, unit = spec["metric"], spec["unit"]
    if result["headline"]["metric"] != metric:
        raise ValueError(f"{model}/{dataset}: measured headline is {result['headline']['metric']!r}, "
                         f"published is {metric!r}")
    measured = {m: _in_unit(result["headline"].get(m), unit) for m in result["modes"]}
    row: dict[str, Any] = {"model": model, "dataset": dataset, "metric": metric, "unit": unit,
                           "n_images": result["n_images"], "n_skipped": result["n_skipped"],
                           "measured": measured, "published": {}, "difference": {}}
    for src in SOURCES:
        value = published_value(model, dataset, src, published)
        mode = published["sources"][src]["mode"]
        row["published"][src] = value
        got = measured.get(mode)
        row["difference"][src] = None if value is None or got is None else got - value
    return row


def paper_table(models: Mapping[str, nn.Module], datasets: Mapping[str, Dataset], *,
                modes: Sequence[str] = MODES, published: Mapping[str, Any] | None = None,
                **evaluate_kwargs: Any) -> dict[str, Any]:
    """Evaluate every model on every dataset (the datasets' own protocols) and compare.

    ``models`` maps a model name (one of :data:`PAPER_MODELS`) to its network, ``datasets`` a
    dataset name (one of :data:`PAPER_DATASETS`) to a dataset in the sample contract of
    :mod:`svde.data.base`; ``evaluate_kwargs`` go to :func:`~svde.evaluation.evaluate_model`
    (``device``, ``batch_size``, ``max_images``, ...). Returns ``{"sources", "metrics", "rows",
    "results"}``; ``results`` holds the aggregate of each run (no per-image records).
    """
    check_names(list(models), list(datasets))
    modes = check_modes(modes)
    if DepthType.UTS not in modes:
        raise ValueError("paper-table mode needs the 'uts' mode: the published numbers are UTS metrics")
    published = published or load_published()
    rows, results = [], []
    for model_name, net in models.items():
        for ds_name, dataset in datasets.items():
            log.info("evaluating %s on %s", model_name, ds_name)
            res = evaluate_model(net, dataset, protocol=get_protocol(ds_name), modes=modes, **evaluate_kwargs)
            res = {k: v for k, v in res.items() if k != "per_image"}
            res.update(model=model_name, dataset=ds_name)
            results.append(res)
            rows.append(compare(model_name, ds_name, res, published))
    sources = {k: {f: v for f, v in s.items() if f != "values"} for k, s in published["sources"].items()}
    return {"sources": sources, "metrics": published["metrics"], "rows": rows, "results": results}


def _fmt(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    digits = 2 if unit == "%" else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_markdown(table: Mapping[str, Any]) -> str:
    """Markdown: one row per model and dataset, measured UTS/UTSS, published values and differences.

    Example:
        >>> print(format_markdown({"rows": [], "sources": {}}).splitlines()[0])  # doctest: +ELLIPSIS
        | model | dataset | metric | images | skipped | UTS | UTSS | README | ...
    """
    head = ["model", "dataset", "metric", "images", "skipped", "UTS", "UTSS",
            "README", "UTS - README", "paper T3", "UTS - paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["rows"]:
        u = r["unit"]
        cells = [r["model"], r["dataset"], f"{r['metric']} ({u})", str(r["n_images"]), str(r["n_skipped"]),
                 _fmt(r["measured"].get(DepthType.UTS), u), _fmt(r["measured"].get(DepthType.UTSS), u),
                 _fmt(r["published"]["readme"], u), _fmt(r["difference"]["readme"], u, signed=True),
                 _fmt(r["published"]["paper_table3"], u), _fmt(r["difference"]["paper_table3"], u, signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    srcs = table.get("sources", {})
    if srcs:
        lines.append("")
        for key, s in srcs.items():
            where = (f"{s['repo']} {s['path']} @ {s['commit'][:12]}" if "repo" in s
                     else f"{s.get('paper', '')}, {s.get('table', '')}")
            lines.append(f"- {key}: {s.get('title', '')} ({where}); {s.get('mode', '').upper()} metrics. "
                         f"{s.get('note', '')}".rstrip())
        lines.append("- images: evaluated images; skipped: images with <= 10 valid pixels (DIW: without a pair), "
                     "not averaged in")
    return "\n".join(lines)


def write_json(table: Mapping[str, Any], path: str | os.PathLike, run_info: Mapping[str, Any] | None = None) -> Path:
    """Write the table (and ``run_info``) as JSON, atomically; no NaN or inf is written."""
    text = json.dumps({"run": dict(run_info or {}), **table}, indent=2, default=str, allow_nan=False)
    return write_text(path, text + "\n")


def authors_roots(data_dir: str | os.PathLike, datasets: Sequence[str]) -> dict[str, Path]:
    """Each dataset's root under the authors' data folder (their ``config.py`` layout:
    ``nyu_depth_v2_labeled.mat`` at the top, ``TUM/``, ``sintel/``, ``DIW/``, ``ETH3D/``).

    Example:
        >>> authors_roots("/data", ["nyu", "diw"])
        {'nyu': PosixPath('/data'), 'diw': PosixPath('/data/DIW')}
    """
    check_names(PAPER_MODELS[:1], datasets)
    return {d: Path(data_dir) / AUTHORS_LAYOUT[d] if AUTHORS_LAYOUT[d] else Path(data_dir) for d in datasets}


def resolve_weights(models: Sequence[str], weights: Mapping[str, str | os.PathLike] | None = None,
                    weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The weight file of each model: ``weights[name]``, else ``<weights_dir>/<name>.pth`` (the
    authors' release names). Every file is checked to exist before any work starts."""
    models, _ = check_names(models, PAPER_DATASETS[:1])
    weights = dict(weights or {})
    extra = sorted(set(weights) - set(models))
    if extra:
        raise KeyError(f"weights given for models not requested: {extra}; requested: {', '.join(models)}")
    out = {}
    for name in models:
        if name in weights:
            path = Path(weights[name])
        elif weights_dir is not None:
            path = Path(weights_dir) / f"{name}.pth"
        else:
            raise ValueError(f"no weights for {name}: give NAME=PATH or a folder with {name}.pth")
        if not path.is_file():
            raise FileNotFoundError(f"weights of {name}: {path} does not exist")
        out[name] = path
    return out


def load_models(models: Sequence[str], weight_files: Mapping[str, Path] | None) -> dict[str, nn.Module]:
    """Load each model's weights (``weight_files=None``: random weights, for smoke tests)."""
    if weight_files is None:
        return {name: build_model(name).eval() for name in models}
    return {name: load_weights(name, weight_files[name]) for name in models}
