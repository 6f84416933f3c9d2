"""The authors' released weights by name: download once, verify, load.

The paper's authors published their eight final models (trained on ReDWeb + DIML Indoor +
MegaDepth + stereo movies) as GitHub release ``v1.0`` of ``saic-vul/geometry-preserving-de``
(source: SamsungLabs/geometry-preserving-de, README.md, section "Checkpoints"). :data:`RELEASED`
lists them with the metrics that README publishes. :func:`load_released` returns a ready
:class:`~svde.models.DepthModel`:

* the file is downloaded once into torch.hub's cache, ``torch.hub.get_dir()/checkpoints/``
  (``$TORCH_HOME/hub/checkpoints``, the folder ``torch.hub.load_state_dict_from_url`` uses),
  with a progress bar, to a temporary name that is renamed only after verification
  (:func:`svde.download.download_verified`: at most :func:`max_file_bytes` bytes, stopped when it
  stalls for ``SVDE_DOWNLOAD_STALL_S`` or runs past ``SVDE_DOWNLOAD_TIMEOUT_S`` seconds);
* ``SVDE_WEIGHTS_URL`` replaces the release's base URL (a mirror, a local web server, or a
  ``file:///folder`` on an air-gapped machine); the file name is appended to it;
* before use the file is verified: its sha256 against the one recorded for it (see below), then
  it is read with ``torch.load(weights_only=True)`` and must have exactly the released layout of
  that model (:func:`check_released_layout`, then the exact key and shape check of
  :func:`~svde.models.load_official_checkpoint`) with finite values; a file that fails is
  refused with a message and never kept in the cache;
* offline or unreachable, it fails within seconds (:data:`svde.download.ANSWER_TIMEOUT_S`) with one line
  naming the URL, the cache path where the file can be put by hand, and the variable.

**Content integrity.** The release publishes no checksum, so the first time svde sees a file it
can verify it by its layout and values only: a file with the released layout and other finite
values would pass. svde therefore records each file's sha256 the first time it verifies it, in
:func:`sha256_record_path` (``torch.hub.get_dir()/svde-sha256.json``, beside the cache), and from
then on refuses a file of that name with another sha256 (a cached file that changed is also
removed from the cache). To accept a new file deliberately (the release did change), delete its
entry from that JSON file, or the whole file. A sha256 set in :data:`RELEASED` (``sha256=``) is
checked on every file, recorded or not.

Example:
    >>> sorted(RELEASED)[:3]
    ['b0_lrn4', 'b1_lrn4', 'b2_lrn4']
    >>> RELEASED["b5_lrn4"].metrics["nyu_delta1_err"]
    10.64
    >>> model = load_released("b5_lrn4")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch

from svde.atomic import write_json
from svde.download import ANSWER_TIMEOUT_S, DOWNLOAD_TIMEOUT_S, download_verified, sha256_of  # noqa: F401 (re-exports)
from svde.errors import RunFailed, UserError
from svde.models.checkpoint import CheckpointError, load_official_checkpoint
from svde.models.model import DepthModel
from svde.models.pretrained import PretrainedWeightsUnavailable

log = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/saic-vul/geometry-preserving-de/releases/download/v1.0"
URL_VARIABLE = "SVDE_WEIGHTS_URL"

METRICS_SOURCE = ("SamsungLabs/geometry-preserving-de, README.md, 'Checkpoints' table (GitHub release v1.0 "
                  "of saic-vul/geometry-preserving-de)")
# Metric -> what the README's table reports (its note: "For NYU, TUM datasets delta-1 metrics are
# given, for Sintel, ETH3D - relative errors, DIW - WHDR"); all lower is better.
METRIC_DEFINITIONS: Mapping[str, str] = MappingProxyType({
    "nyu_delta1_err": "NYUv2 test: % of pixels with max(d/d*, d*/d) > 1.25",
    "tum_delta1_err": "TUM (Li et al. subset): % of pixels with max(d/d*, d*/d) > 1.25",
    "sintel_abs_rel": "Sintel: mean |d - d*| / d* (fraction)",
    "diw_whdr": "DIW test: % of point pairs ordered wrongly (WHDR)",
    "eth3d_abs_rel": "ETH3D (authors' rendering): mean |d - d*| / d* (fraction)",
})


class ReleasedWeightsInvalid(PretrainedWeightsUnavailable):
    """A released-weights file was obtained but refused: wrong checksum, layout or values."""


class Sha256RecordUnreadable(RunFailed):
    """The sha256 record of the released files (:func:`sha256_record_path`) cannot be read."""


SHA256_RECORD = "svde-sha256.json"
SHA256_RECORD_FORMAT = "svde-sha256/1"
# The release stores the encoder twice (branches.0 and branches.1.backbone): its files hold 1.75
# (mn_lrn4) to 2.78 (lite0_lrn4) times the bytes of the model's own parameters and buffers.
SIZE_FACTOR = 4
SIZE_SLACK = 1 << 20  # bytes for the pickle's own structure


@dataclass(frozen=True)
class ReleasedWeights:
    """One released file: model name, file name, sha256 (``None``: not recorded) and published metrics."""

    name: str
    filename: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    sha256: str | None = None

    @property
    def url(self) -> str:
        """Where the file is downloaded from (``$SVDE_WEIGHTS_URL/<filename>`` when that is set)."""
        return f"{weights_base_url().rstrip('/')}/{self.filename}"

    @property
    def cache_path(self) -> Path:
        """Where the file is kept: ``torch.hub.get_dir()/checkpoints/<filename>``."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename


def weights_base_url() -> str:
    """The base URL of the released files: ``SVDE_WEIGHTS_URL`` when set, else the release's.

    A value that is no ``http(s)://host/...`` or ``file:///folder`` URL is a
    :class:`~svde.errors.UserError` naming the variable (not a traceback from the URL parser).

    Example:
        >>> weights_base_url() == (os.environ.get(URL_VARIABLE) or RELEASE_URL)
        True
    """
    base = os.environ.get(URL_VARIABLE) or RELEASE_URL
    try:
        parts = urllib.parse.urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        usable = ((parts.scheme in ("http", "https") and bool(parts.hostname))
                  or (parts.scheme == "file" and bool(parts.path)))
    except ValueError:
        usable = False
    if not usable:
        raise UserError(f"{URL_VARIABLE}={base!r} is not a usable base URL for the released weights; expected "
                        f"http://host/path, https://host/path or file:///folder (a mirror, a local server or a "
                        f"folder holding the <model>.pth files)")
    return base


def _published() -> dict[str, Mapping[str, float]]:
    """Each model's metrics as the authors' README publishes them, read from the one copy of the
    published numbers, ``svde/evaluation/published.json`` (source ``readme``; also read by
    :mod:`svde.evaluation.paper`): model -> ``{dataset}_{metric}`` -> value."""
    data = json.loads(resources.files("svde").joinpath("evaluation", "published.json").read_text())
    return {name: MappingProxyType({f"{dataset}_{data['metrics'][dataset]['metric']}": float(value)
                                    for dataset, value in values.items()})
            for name, values in data["sources"]["readme"]["values"].items()}


_METRICS = _published()
# No sha256 is published for the release; set one here to have every download checked against it.
RELEASED: Mapping[str, ReleasedWeights] = MappingProxyType({
    name: ReleasedWeights(name, f"{name}.pth", _METRICS[name])
    for name in ("mn_lrn4", "lite0_lrn4", "b0_lrn4", "b1_lrn4", "b2_lrn4", "b3_lrn4", "b4_lrn4", "b5_lrn4")
})


def released_entry(name: str) -> ReleasedWeights:
    """The registry entry of ``name``; an unknown name is a :class:`~svde.errors.UserError` listing the valid ones."""
    if name not in RELEASED:
        raise UserError(f"no released weights for {name!r}; released models: {', '.join(RELEASED)}")
    return RELEASED[name]


def published_metrics_table() -> str:
    """The published metrics as a Markdown table (one row per released model), with the source."""
    keys = list(METRIC_DEFINITIONS)
    rows = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    # With the source's digits (0.360, 12.80): % metrics to 2 decimals, fractions to 3.
    rows += [f"| {e.name} | " + " | ".join(f"{e.metrics[k]:.{3 if k.endswith('abs_rel') else 2}f}" for k in keys) + " |"
             for e in RELEASED.values()]
    notes = [f"- `{k}`: {v}" for k, v in METRIC_DEFINITIONS.items()]
    return "\n".join(rows + ["", f"Source: {METRICS_SOURCE}."] + notes) + "\n"


def check_released_layout(state: Any, name: str) -> Mapping[str, torch.Tensor]:
    """Check that ``state`` is laid out as the authors' release of a model; returns it.

    The release stores a flat state dict (no wrapper, no ``module.`` prefix) of float32 tensors
    and int64 ``num_batches_tracked`` counters: ``branches.0.*`` (the encoder) and
    ``branches.1.*`` (the decoder), whose ``branches.1.backbone.*`` repeats every ``branches.0.*``
    entry with the same shape (../shared/fixtures/official-lrn4/README.md). Which keys and shapes
    belong to ``name`` is checked afterwards by :func:`~svde.models.load_official_checkpoint`.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"holds a {type(state).__name__}, the release of {name} is a dict of tensors")
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{len(not_tensors)} entries are not tensors (e.g. {not_tensors[0]!r}); "
                              f"the release of {name} is a flat state dict")
    foreign = [k for k in state if not str(k).startswith(("branches.0.", "branches.1."))]
    if foreign:
        raise CheckpointError(f"{len(foreign)} keys outside branches.0/branches.1 (e.g. {foreign[0]!r}); "
                              f"not the released layout of {name}")
    dtypes = [f"{k}: {v.dtype}" for k, v in state.items()
              if v.dtype != (torch.int64 if k.endswith("num_batches_tracked") else torch.float32)]
    if dtypes:
        raise CheckpointError(f"{len(dtypes)} entries of an unexpected dtype (e.g. {dtypes[0]}); the release "
                              "has float32 tensors and int64 num_batches_tracked")
    encoder = {k[len("branches.0."):]: v.shape for k, v in state.items() if k.startswith("branches.0.")}
    copy = {k[len("branches.1.backbone."):]: v.shape for k, v in state.items() if k.startswith("branches.1.backbone.")}
    if encoder != copy:
        odd = sorted(set(encoder) ^ set(copy)) or [k for k in encoder if encoder[k] != copy[k]]
        raise CheckpointError(f"branches.1.backbone does not repeat branches.0 (e.g. {odd[0]!r}); "
                              f"not the released layout of {name}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"non-finite values in {len(bad)} tensors (e.g. {bad[0]!r})")
    return state


@functools.lru_cache(maxsize=None)
def max_file_bytes(name: str) -> int:
    """The most bytes a released file of ``name`` can hold: :data:`SIZE_FACTOR` times the bytes of
    the model's parameters and buffers (as :func:`~svde.models.build_model` builds it), plus
    :data:`SIZE_SLACK`; a download that sends more is stopped (an endless or wrong response).

    Example:
        >>> 30 << 20 < max_file_bytes("mn_lrn4") < 40 << 20  # the file itself: 16.4 MiB
        True
    """
    from svde.models.registry import build_model

    state = build_model(name).state_dict()
    return SIZE_FACTOR * sum(t.numel() * t.element_size() for t in state.values()) + SIZE_SLACK


def sha256_record_path() -> Path:
    """Where the sha256 of each released file is recorded the first time it is verified:
    ``torch.hub.get_dir()/svde-sha256.json`` (beside the ``checkpoints/`` cache)."""
    return Path(torch.hub.get_dir()) / SHA256_RECORD


def _read_record(path: Path) -> dict[str, Any]:
    """The record's ``files`` mapping (file name -> {sha256, recorded, source}); empty when there is none."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not (isinstance(files, dict) and all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                                                for v in files.values())):
            raise ValueError("files is not a mapping of file name -> {sha256: ...}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise Sha256RecordUnreadable(f"{path}: not a readable sha256 record of the released files "
                                     f"({type(exc).__name__}: {exc}); delete it (svde records each file again "
                                     f"the next time it verifies it)") from None
    return files


def recorded_sha256(filename: str) -> str | None:
    """The sha256 recorded for the released file ``filename`` (None: not verified here yet)."""
    found = _read_record(sha256_record_path()).get(filename)
    return found["sha256"] if found else None


def _record_sha256(entry: ReleasedWeights, sha256: str, source: str) -> None:
    """Record ``entry``'s sha256 the first time its file is verified (atomic write; an entry is never replaced).

    Two processes recording different files at the same instant may keep only one of them; the
    other is recorded the next time its file is verified. A record that cannot be written (a
    read-only cache) is a warning: the file was verified, it is only not pinned.
    """
    path = sha256_record_path()
    files = _read_record(path)
    if entry.filename in files:
        return
    files[entry.filename] = {"sha256": sha256, "source": source,
                             "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        write_json(path, {"format": SHA256_RECORD_FORMAT,
                          "note": "sha256 of each released svde weights file when svde first verified it (by layout "
                                  "and values: the release publishes no checksum); a file of that name with another "
                                  "sha256 is refused. Delete an entry to accept a new file deliberately.",
                          "files": dict(sorted(files.items()))})
    except OSError as exc:  # a read-only shared cache: the file was verified, it is only not pinned
        log.warning("cannot record the sha256 of %s in %s (%s); a later different file would not be noticed",
                    entry.filename, path, exc.strerror or exc)
        return
    log.info("recorded the sha256 of %s in %s", entry.filename, path)


def _verify(path: Path, entry: ReleasedWeights, source: str, sha256: str | None = None) -> tuple[DepthModel, str]:
    """Check ``path`` (sha256, layout, values) and load it as ``entry``'s model; (model, sha256)."""
    actual = (sha256 or sha256_of(path)).lower()
    if entry.sha256 is not None and actual != entry.sha256.lower():
        raise ReleasedWeightsInvalid(f"{source}: sha256 {actual} differs from the recorded {entry.sha256} "
                                     f"of {entry.filename}; refusing it")
    recorded = recorded_sha256(entry.filename)
    if recorded is not None and actual != recorded.lower():
        record = sha256_record_path()
        raise ReleasedWeightsInvalid(
            f"{source}: sha256 {actual} differs from {recorded}, recorded in {record} when svde first verified "
            f"{entry.filename}; refusing it (if the release really changed, delete the {entry.filename!r} entry "
            f"of {record} to accept the new file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated, corrupt or unsafe files
        raise ReleasedWeightsInvalid(f"{source}: not a readable PyTorch weights file ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}); refusing it") from None
    try:
        return load_official_checkpoint(check_released_layout(state, entry.name), entry.name), actual
    except CheckpointError as exc:
        raise ReleasedWeightsInvalid(f"{source}: refused as {entry.name}: {exc}") from None


def _unavailable(entry: ReleasedWeights, url: str, reason: str) -> PretrainedWeightsUnavailable:
    return PretrainedWeightsUnavailable(
        f"cannot download the released weights of {entry.name} from {url} ({reason}); "
        f"put {entry.filename} at {entry.cache_path} by hand, or set {URL_VARIABLE} to a base URL "
        f"(mirror, local server or file:///folder) that holds {entry.filename}")


def _download(entry: ReleasedWeights, progress: bool) -> DepthModel:
    """Download, verify and keep ``entry``'s file; nothing lands in the cache unless it is valid."""
    url = entry.url
    model, sha256 = download_verified(url, entry.cache_path, progress=progress, max_bytes=max_file_bytes(entry.name),
                                      verify=lambda tmp, sha256: _verify(tmp, entry, source=url, sha256=sha256),
                                      unavailable=lambda reason: _unavailable(entry, url, reason))
    _record_sha256(entry, sha256, url)
    return model


def _obtain(name: str, progress: bool) -> tuple[Path, DepthModel]:
    entry = released_entry(name)
    path = entry.cache_path
    if path.is_file():
        try:
            model, sha256 = _verify(path, entry, source=str(path))
        except ReleasedWeightsInvalid as exc:
            path.unlink(missing_ok=True)
            raise ReleasedWeightsInvalid(f"{exc} (removed it from the cache; the next call downloads it again)") from None
        _record_sha256(entry, sha256, str(path))
        return path, model
    return path, _download(entry, progress)


def released_path(name: str, progress: bool = True) -> Path:
    """The verified local file of ``name``'s released weights, downloaded first if needed."""
    return _obtain(name, progress)[0]


def load_released(name: str, progress: bool = True) -> DepthModel:
    """``name`` with the authors' released weights, in eval mode (downloaded once, verified).

    Raises :class:`~svde.models.PretrainedWeightsUnavailable` (one line: URL, cache path,
    ``SVDE_WEIGHTS_URL``) when the file is not cached and cannot be downloaded (unreachable,
    too large, stalled, too slow), and :class:`ReleasedWeightsInvalid` when the file is not the
    release of ``name`` or differs from the sha256 recorded when its file was first verified
    (see the module's "Content integrity").

    Example:
        >>> model = load_released("mn_lrn4")  # doctest: +SKIP
        >>> depth = model.infer_image(rgb)  # doctest: +SKIP
    """
    return _obtain(name, progress)[1]
