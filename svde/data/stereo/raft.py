"""The ``raft`` matcher: torchvision's RAFT optical flow as stereo disparity (the paper, §4.3.3).

The paper computes the disparity of 3D-movie frames with RAFT optical flow (Teed & Deng, ECCV
2020) instead of PWC-Net, following MiDaS. :func:`raft_disparity` runs torchvision's RAFT
(``torchvision/models/optical_flow/raft.py``: ``raft_large`` / ``raft_small``) on the pair
left->right and right->left in one batch and keeps a left pixel when

* the vertical flow is at most ``max_vertical`` px (a rectified pair has none: a check of the
  rectification and of the match),
* the backward flow confirms it (:func:`~svde.data.stereo.matching.left_right_consistent`
  within ``lr_tolerance`` px; a pixel that maps outside the right view is invalid),
* the flow is finite and the left image has texture there (grey-level standard deviation over
  :data:`TEXTURE_WINDOW` px ``>= min_texture``, when > 0).

Negative disparities (converged footage: 3D films put content behind the screen) are kept, as
the ``sgbm`` matcher keeps them.

Sign conventions. torchvision's RAFT returns ``flow = coords1 - coords0`` (``RAFT.forward``),
channel 0 horizontal (``make_coords_grid`` stacks x then y), where ``coords1`` index the
correlation volume of the *second* image (``CorrBlock``): the pixel (x, y) of image 1 moves to
(x + u, y + v) in image 2, the Middlebury/Sintel ``.flo`` convention. With svde's disparity
(``x_right = x_left - d``, larger = closer) the left view's disparity is ``d = -u`` of the flow
left->right, and the right view's is ``d_right = +u`` of the flow right->left
(``x_left = x_right + d_right``); ``tests/test_stereo_raft.py`` checks the correlation indexing
on torchvision's own ``CorrBlock``.

Input. As torchvision's ``OpticalFlow`` preset (``torchvision/transforms/_presets.py``, the
``transforms()`` of ``Raft_Large_Weights``/``Raft_Small_Weights``): float in [0, 1] normalised
with mean 0.5 and std 0.5, i.e. ``2 * x / 255 - 1`` in [-1, 1]. RAFT needs H and W divisible by 8
and at least :data:`MIN_SIZE` (its four-level correlation pyramid); the views are padded at the
bottom/right by replicating the edge, and the flow cropped back.

Weights are never downloaded implicitly. ``settings.raft_weights`` "" means torchvision's
default file of the model (``Raft_Large_Weights.DEFAULT`` / ``Raft_Small_Weights.DEFAULT``), looked
for where torchvision caches it, ``torch.hub.get_dir()/checkpoints/<file name>``;
:func:`fetch_raft_weights` is the opt-in download (``SVDE_RAFT_URL`` replaces the base URL: a
mirror, a local server, ``file:///folder``), verified before it enters the cache: the sha256
must start with the hex digits in torchvision's file name, and the state dict must load
strictly into the model. Any other value of ``raft_weights`` is a local file.

Example:
    >>> default_weights_name("small")
    'raft_small_C_T_V2-01064c6d.pth'
    >>> padded_size(100, 130)
    (128, 136)
    >>> import numpy as np
    >>> forward = np.zeros((2, 1, 6), np.float32); forward[0] = -2.0  # every left pixel 2 px left in the right view
    >>> backward = np.zeros((2, 1, 6), np.float32); backward[0] = 2.0
    >>> gray = np.zeros((1, 6), np.uint8)
    >>> disp, valid = disparity_from_flows(forward, backward, gray, StereoSettings(min_texture=0))
    >>> disp.tolist(), valid.astype(int).tolist()
    ([[0.0, 0.0, 2.0, 2.0, 2.0, 2.0]], [[0, 0, 1, 1, 1, 1]])
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch

from svde.data.stereo.matching import RAFT_MODELS, StereoSettings, left_right_consistent, texture
from svde.download import download_verified, sha256_of
from svde.errors import UnknownName, UserError
from svde.models.pretrained import PretrainedWeightsUnavailable, hash_prefix, load_tensors

log = logging.getLogger(__name__)

URL_VARIABLE = "SVDE_RAFT_URL"
# The most bytes a downloaded weights file may hold (torchvision's files: raft_large 20.1 MiB,
# 5.3 M parameters; raft_small 3.8 MiB, 1.0 M): a download that sends more is stopped.
MAX_WEIGHTS_BYTES = {"large": 64 << 20, "small": 16 << 20}
MIN_SIZE = 128  # torchvision's weights meta "min_size": 8 * 2 * 2**(4 pyramid levels - 1)
TEXTURE_WINDOW = 5


class RaftWeightsUnavailable(PretrainedWeightsUnavailable):
    """torchvision's RAFT weights are not on this machine, or could not be downloaded."""


class RaftWeightsInvalid(PretrainedWeightsUnavailable):
    """A file given or downloaded as RAFT weights is not the state dict of that model."""


def _check_model(model: str) -> None:
    if model not in RAFT_MODELS:
        raise UnknownName(f"unknown RAFT model {model!r}; valid models: {', '.join(RAFT_MODELS)}")


def _default_weights(model: str) -> Any:
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    _check_model(model)
    return (Raft_Large_Weights if model == "large" else Raft_Small_Weights).DEFAULT


def default_weights_name(model: str) -> str:
    """The file name of torchvision's default weights of ``raft_<model>`` (the basename of its URL)."""
    return _default_weights(model).url.rsplit("/", 1)[-1]


def default_weights_path(model: str) -> Path:
    """Where torchvision caches that file: ``torch.hub.get_dir()/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / default_weights_name(model)


def weights_url(model: str) -> str:
    """Where :func:`fetch_raft_weights` downloads from: torchvision's URL, or ``$SVDE_RAFT_URL/<name>``."""
    base = os.environ.get(URL_VARIABLE)
    name = default_weights_name(model)
    return f"{base.rstrip('/')}/{name}" if base else _default_weights(model).url


def build_raft(model: str) -> torch.nn.Module:
    """torchvision's ``raft_<model>`` with randomly initialised weights (nothing is downloaded)."""
    from torchvision.models.optical_flow import raft_large, raft_small

    _check_model(model)
    return (raft_large if model == "large" else raft_small)(weights=None, progress=False)


def _state_problem(state: Any, expected: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` does not load strictly into a model whose state dict is ``expected`` (None: it does)."""
    if not isinstance(state, Mapping):
        return f"it holds a {type(state).__name__}, not a state dict"
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    if missing or unexpected:
        example = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        return f"{len(missing)} keys missing and {len(unexpected)} unexpected (e.g. {example})"
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"{key!r} is {shape}, expected {tuple(ref.shape)}"
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"{key!r} holds non-finite values"
    return None


def load_raft(model: str, path: str | os.PathLike, source: str | None = None) -> torch.nn.Module:
    """torchvision's ``raft_<model>`` with the state dict in ``path`` (``weights_only``, strict), in eval mode.

    A file that is not such a state dict raises :class:`RaftWeightsInvalid` naming ``source``
    (default: the path) and the expected model.
    """
    _check_model(model)
    source = source or str(path)
    try:
        state = load_tensors(path, f"RAFT weights (raft_{model})")
    except PretrainedWeightsUnavailable as exc:  # name the source (a URL), not a download's temporary
        raise RaftWeightsInvalid(str(exc).replace(str(path), source)) from None
    net = build_raft(model)
    problem = _state_problem(state, net.state_dict())
    if problem:
        raise RaftWeightsInvalid(f"{source}: not a state dict of torchvision's raft_{model} ({problem}); "
                                 f"expected the weights of raft_{model} (raft_model={model!r})")
    net.load_state_dict(state, strict=True)
    return net.eval()


@functools.lru_cache(maxsize=2)
def _cached_network(model: str, path: str, stamp: tuple[int, int], device: str) -> torch.nn.Module:
    """One network per (model, file version, device), kept for the process (``stamp``: mtime, size)."""
    return load_raft(model, path).to(device)


def weights_file(settings: StereoSettings) -> Path:
    """The weights file ``settings`` ask for; an error in one line (where it looked, how to get it) if absent."""
    model = settings.raft_model
    if settings.raft_weights:
        path = Path(settings.raft_weights).expanduser()
        if not path.is_file():
            raise UserError(f"raft_weights {path}: no such file; expected torchvision's raft_{model} "
                            "weights (a state dict .pth), or '' for torchvision's default file")
        return path
    path = default_weights_path(model)
    if not path.is_file():
        raise RaftWeightsUnavailable(
            f"torchvision's raft_{model} weights are not at {path} (svde never downloads them by itself); "
            f"download them once with svde.data.stereo.raft.fetch_raft_weights({model!r}) or "
            f"`svde prepare-stereo --matcher raft --download-weights`, or set raft_weights=FILE to a local copy")
    return path


def network(settings: StereoSettings, device: str = "cpu") -> torch.nn.Module:
    """The RAFT network ``settings`` ask for, on ``device`` (loaded once per process)."""
    path = weights_file(settings)
    stat = path.stat()
    return _cached_network(settings.raft_model, str(path.resolve()), (stat.st_mtime_ns, stat.st_size), str(device))


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The size RAFT runs at: each side rounded up to a multiple of 8, and at least :data:`MIN_SIZE`."""
    return tuple(max(MIN_SIZE, -(-n // 8) * 8) for n in (height, width))


def _to_input(images: np.ndarray, device: str) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H', W') in [-1, 1] (torchvision's OpticalFlow preset), edge-padded."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    x = x / 255.0 * 2.0 - 1.0  # convert_image_dtype to [0, 1], then normalize(mean=0.5, std=0.5)
    height, width = padded_size(*images.shape[1:3])
    return torch.nn.functional.pad(x, (0, width - images.shape[2], 0, height - images.shape[1]), mode="replicate")


def run_flow(net: torch.nn.Module, left: np.ndarray, right: np.ndarray, iters: int,
             device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """RAFT flow left->right and right->left (one batch): two float32 (2, H, W) arrays, channel 0 = x."""
    height, width = left.shape[:2]
    first, second = np.stack([left, right]), np.stack([right, left])
    with torch.inference_mode():
        flows = net(_to_input(first, device), _to_input(second, device), num_flow_updates=iters)[-1]
    flows = flows[:, :, :height, :width].float().cpu().numpy()
    return flows[0], flows[1]


def disparity_from_flows(forward: np.ndarray, backward: np.ndarray, gray: np.ndarray,
                         settings: StereoSettings) -> tuple[np.ndarray, np.ndarray]:
    """Left-view disparity (float32 px, 0 where invalid) and validity from the two flows (see the module)."""
    d_left = -forward[0].astype(np.float32)
    d_right = backward[0].astype(np.float32)
    valid = left_right_consistent(d_left, d_right, settings.lr_tolerance)
    with np.errstate(invalid="ignore"):
        valid &= np.abs(forward[1]) <= settings.max_vertical
        valid &= np.isfinite(d_left)
    if settings.min_texture > 0:
        valid &= texture(gray, TEXTURE_WINDOW) >= settings.min_texture
    return np.where(valid, d_left, 0.0).astype(np.float32), valid


def raft_disparity(left: np.ndarray, right: np.ndarray, settings: StereoSettings,
                   device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The ``raft`` matcher: left-view disparity (float32 px, 0 where invalid) and validity (bool).

    ``left``/``right``: rectified uint8 (H, W, 3) RGB views of one size (checked by the caller,
    :func:`svde.data.stereo.estimate_disparity`); ``device``: where RAFT runs.
    """
    net = network(settings, device)
    forward, backward = run_flow(net, left, right, settings.raft_iters, str(device))
    gray = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
    return disparity_from_flows(forward, backward, gray, settings)


def _unavailable(model: str, url: str, dest: Path, reason: str) -> RaftWeightsUnavailable:
    name = dest.name
    return RaftWeightsUnavailable(
        f"cannot download torchvision's raft_{model} weights from {url} ({' '.join(reason.split())}); "
        f"put {name} at {dest} by hand, or set {URL_VARIABLE} to a base URL (mirror, local server or "
        f"file:///folder) that holds {name}")


def _verify(model: str, path: Path, sha256: str, source: str) -> None:
    prefix = hash_prefix(default_weights_name(model))
    if prefix and not sha256.lower().startswith(prefix):
        raise RaftWeightsInvalid(f"{source}: sha256 {sha256[:16]}... does not start with {prefix}, the hash "
                                 f"prefix of torchvision's {default_weights_name(model)}; refusing it")
    load_raft(model, path, source=source)


def fetch_raft_weights(model: str = "large", progress: bool = True) -> Path:
    """Download torchvision's default ``raft_<model>`` weights into torchvision's cache (opt-in); the path.

    A cached file that verifies is used as it is (a bad one is replaced). Offline it fails within
    seconds with :class:`RaftWeightsUnavailable` (one line: URL, cache path, ``SVDE_RAFT_URL``), as
    does a download larger than :data:`MAX_WEIGHTS_BYTES` or one that stalls or runs too long
    (:mod:`svde.download`); a file that is not those weights raises :class:`RaftWeightsInvalid`
    and is not kept.
    """
    _check_model(model)
    dest, url = default_weights_path(model), weights_url(model)
    if dest.is_file():
        try:
            _verify(model, dest, sha256_of(dest), str(dest))
            return dest
        except PretrainedWeightsUnavailable as exc:
            log.warning("%s; downloading it again", exc)
    download_verified(url, dest, progress=progress, max_bytes=MAX_WEIGHTS_BYTES[model],
                      verify=lambda tmp, sha256: _verify(model, tmp, sha256, url),
                      unavailable=lambda reason: _unavailable(model, url, dest, reason))
    return dest
