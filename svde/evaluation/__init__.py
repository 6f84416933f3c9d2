"""Zero-shot evaluation: the paper's metrics, per-dataset protocols and the evaluator.

Example:
    >>> from svde.evaluation import PROTOCOLS, evaluate_model
    >>> PROTOCOLS["sintel"].depth_cap
    72.0
"""

from svde.evaluation.entry import ZERO_SHOT_DATASETS, EvalEntry, evaluate_entry, selection_warning
from svde.evaluation.evaluator import MODES, aggregate, evaluate_model, evaluate_prediction
from svde.evaluation.metrics import (
    METRIC_NAMES,
    align_lstsq_disparity,
    align_median_log,
    backproject,
    depth_metrics,
    geometry_error,
    whdr,
)
from svde.evaluation.paper import PAPER_DATASETS, PAPER_MODELS, load_published, paper_table
from svde.evaluation.protocols import (
    DATASET_PROTOCOLS,
    MIN_VALID_PIXELS,
    PROTOCOLS,
    Protocol,
    get_protocol,
    network_size,
)
from svde.evaluation.report import format_table, write_results

__all__ = [
    "DATASET_PROTOCOLS",
    "EvalEntry",
    "METRIC_NAMES",
    "MIN_VALID_PIXELS",
    "MODES",
    "PAPER_DATASETS",
    "PAPER_MODELS",
    "PROTOCOLS",
    "Protocol",
    "ZERO_SHOT_DATASETS",
    "aggregate",
    "align_lstsq_disparity",
    "align_median_log",
    "backproject",
    "depth_metrics",
    "evaluate_entry",
    "evaluate_model",
    "evaluate_prediction",
    "format_table",
    "geometry_error",
    "selection_warning",
    "get_protocol",
    "load_published",
    "network_size",
    "paper_table",
    "whdr",
    "write_results",
]
