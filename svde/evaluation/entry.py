"""One dataset to evaluate, one schema: :class:`EvalEntry` and :func:`evaluate_entry`.

The same entry describes the eval command's ``--config`` datasets, the training config's
validation set (``val.dataset`` with ``val.protocol``) and the proof of concept's held-out
set, and one function evaluates it, so a score means the same thing wherever it is printed.

Keys: ``name`` (the dataset's registry name), ``root``, ``split``, ``protocol`` (default: the
dataset's own, :data:`~svde.evaluation.protocols.DATASET_PROTOCOLS`), ``depth_cap`` (overrides
the protocol's), ``options`` (passed to the dataset) and ``subset`` (a ``[start, end]``
fraction, :func:`svde.data.sampling.take_subset`).

Example:
    >>> from svde.models import build_model
    >>> entry = EvalEntry.from_mapping({"name": "synthetic", "split": "val", "options": {"length": 2}})
    >>> res = evaluate_entry(build_model("mn_lrn4"), entry, short_side=64)
    >>> res["dataset"], res["n_images"]
    ('synthetic', 2)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from svde.data.registry import DATASETS, build_dataset, option_problems
from svde.data.sampling import subset_problem, take_subset
from svde.errors import SvdeError, UnknownName, UserError
from svde.evaluation.evaluator import evaluate_model
from svde.evaluation.protocols import PROTOCOLS, Protocol, get_protocol, protocol_name
from svde.types import DepthType

# The sets the paper evaluates zero-shot (§4.2, Tables 1-3; KITTI in the supplementary): no model
# meant to be judged on them may be selected on them (svde.training's validation warns).
ZERO_SHOT_DATASETS = ("nyu", "tum", "tum_raw", "kitti", "sintel", "diw", "eth3d")

# The generated set needs no root; unless an entry says otherwise it is 100 test scenes.
DEFAULT_SPLITS = {"synthetic": "test"}
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"synthetic": {"length": 100}}


@dataclass
class EvalEntry:
    """A dataset to evaluate (see the module docstring for the keys)."""

    name: str = "synthetic"
    root: str | None = None
    split: str | None = None
    protocol: str | None = None
    depth_cap: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    subset: list[float] | None = None

    KEYS = ("name", "root", "split", "protocol", "depth_cap", "options", "subset")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "dataset", defaults: bool = True) -> "EvalEntry":
        """An entry from a YAML mapping; unknown keys and bad values are one :class:`UserError`.

        ``type`` is accepted for ``name`` (the eval config's older spelling). With ``defaults``
        the synthetic set gets its ``test`` split and 100 scenes unless the mapping says otherwise.
        """
        if not isinstance(raw, Mapping):
            raise UserError(f"{where}: expected a mapping of settings, got {raw!r}")
        raw = dict(raw)
        if "type" in raw:
            if "name" in raw and raw["name"] != raw["type"]:
                raise UserError(f"{where}: 'type' ({raw['type']!r}) and 'name' ({raw['name']!r}) disagree; give one")
            raw["name"] = raw.pop("type")
        if not isinstance(raw.get("options") or {}, Mapping):
            raise UserError(f"{where}.options: expected a mapping of option -> value, got {raw['options']!r}")
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown:
            raise UserError(f"{where}: unknown keys {unknown}; valid keys: {', '.join(cls.KEYS)}")
        entry = cls(**raw)
        if defaults:
            entry.split = entry.split if "split" in raw else DEFAULT_SPLITS.get(entry.name)
            entry.options = {**DEFAULT_OPTIONS.get(entry.name, {}), **(entry.options or {})}
        entry.check(where)
        return entry

    def problems(self, where: str = "dataset") -> list[str]:
        """Everything wrong with the entry, checked before any data is read (empty: nothing)."""
        problems = option_problems(self.name, self.options, where)
        if self.name in DATASETS and self.name != "synthetic" and not self.root:
            problems.append(f"{where}.root: dataset {self.name!r} needs its root folder")
        protocol = self.protocol or self.name  # every registered dataset has a protocol of its own
        try:
            protocol_name(protocol)
        except UnknownName:
            if self.name in DATASETS:
                problems.append(f"{where}.protocol: unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)} "
                                f"or a dataset name")
        if self.depth_cap is not None and not (isinstance(self.depth_cap, (int, float))
                                               and math.isfinite(self.depth_cap) and self.depth_cap > 0):
            problems.append(f"{where}.depth_cap: expected a finite number > 0, got {self.depth_cap!r}")
        subset = subset_problem(self.subset, where)
        return problems + ([subset] if subset else [])

    @classmethod
    def from_dataset(cls, entry: Any, protocol: str | None = None) -> "EvalEntry":
        """The evaluation entry of a training config's dataset entry (``svde.config.DatasetEntry``:
        name, root, split, options, subset), evaluated under ``protocol`` (None: the dataset's own).

        Example:
            >>> from svde.config import DatasetEntry
            >>> EvalEntry.from_dataset(DatasetEntry(name="nyu", root="/d", split="test"), "folder").protocol
            'folder'
        """
        return cls(name=entry.name, root=entry.root, split=entry.split, protocol=protocol,
                   options=dict(entry.options), subset=entry.subset)

    def check(self, where: str = "dataset") -> None:
        """Raise one :class:`UserError` listing :meth:`problems`, if any."""
        problems = self.problems(where)
        if problems:
            raise UserError("; ".join(problems))

    def protocol_for(self, short_side: int | None = None) -> Protocol:
        """The entry's protocol, with its depth cap and an optional input-size override."""
        return get_protocol(self.protocol or self.name, depth_cap=self.depth_cap, short_side=short_side)

    def build(self, transform: Any = None) -> Dataset:
        """The dataset (its subset, if any); an empty one is a :class:`UserError` naming the entry."""
        try:
            dataset = build_dataset(self.name, self.root, self.split, transform=transform, **self.options)
        except SvdeError:
            raise  # DataError and friends already name the file and what is wrong
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"dataset {self.name!r} at {self.root}: {exc}") from exc
        dataset = take_subset(dataset, self.subset, self.name)
        if len(dataset) == 0:
            raise UserError(f"dataset {self.name!r} at {self.root} (split {self.split}): no images")
        return dataset

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON/YAML-safe) of the entry."""
        return dataclasses.asdict(self)


def evaluate_entry(model: nn.Module, entry: EvalEntry, *, dataset: Dataset | None = None,
                   modes: Sequence[str] = (DepthType.UTS,), short_side: int | None = None, max_images: int | None = None,
                   batch_size: int = 1, device: str | torch.device = "cpu", progress: bool = False,
                   num_workers: int = 0, strict: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on ``entry`` (built here, unless its ``dataset`` is passed, e.g. built once
    for many evaluations); :func:`~svde.evaluation.evaluate_model`'s result, with ``source``: the entry.
    ``strict=False`` passes over unreadable samples (counted and named in the result).
    """
    results = evaluate_model(model, dataset if dataset is not None else entry.build(),
                             protocol=entry.protocol_for(short_side), modes=modes, batch_size=batch_size,
                             device=device, progress=progress, max_images=max_images, num_workers=num_workers,
                             strict=strict)
    results["dataset"] = entry.name
    results["source"] = entry.to_dict()
    return results


def selection_warning(selected_on: Mapping[str, Any] | None, entry: EvalEntry, weights: str = "the checkpoint") -> str | None:
    """A warning when a checkpoint was selected (``best.pt``'s ``selected_on``) on the data ``entry``
    asks to evaluate: the same dataset and split (a split left unset matches any), or None.

    Example:
        >>> sel = {"metric": "delta1_err", "datasets": [{"name": "nyu", "split": "test", "holdout": None}]}
        >>> selection_warning(sel, EvalEntry(name="nyu", split="test"), "best.pt")[:60]
        'best.pt was selected on nyu (split test) by delta1_err, the '
        >>> selection_warning(sel, EvalEntry(name="tum")) is None
        True
    """
    if not selected_on:
        return None
    for record in selected_on.get("datasets") or []:
        same_split = record.get("split") is None or entry.split is None or record.get("split") == entry.split
        if record.get("name") == entry.name and same_split:
            held = f", {record['holdout']} held-out samples" if record.get("holdout") else ""
            return (f"{weights} was selected on {entry.name} (split {record.get('split')}{held}) by "
                    f"{selected_on.get('metric')}, the data it is now evaluated on: the score is not zero-shot")
    return None

