"""Released weights by name and torch.hub, against a local HTTP server standing in for the release."""

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from svde.errors import UserError
from svde.models import MODELS
from svde.models.pretrained import PretrainedWeightsUnavailable
from svde.models.loading import hub_model
from svde.models.released import (
    METRIC_DEFINITIONS,
    RELEASE_URL,
    RELEASED,
    ReleasedWeights,
    ReleasedWeightsInvalid,
    check_released_layout,
    load_released,
    published_metrics_table,
    released_path,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = "fixtures/official-lrn4"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fixture_output(model: torch.nn.Module) -> np.ndarray:
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x).numpy()


def test_registry_lists_the_eight_release_files(monkeypatch):
    # the authors' eight files, in registry order (a model without released weights is allowed)
    assert list(RELEASED) == [m for m in MODELS if m in RELEASED] and len(RELEASED) == 8
    monkeypatch.delenv("SVDE_WEIGHTS_URL", raising=False)
    for name, entry in RELEASED.items():
        assert entry.filename == f"{name}.pth"
        assert entry.url == f"{RELEASE_URL}/{name}.pth"
        assert set(entry.metrics) == set(METRIC_DEFINITIONS)
        assert all(math.isfinite(v) and v > 0 for v in entry.metrics.values())
        assert entry.sha256 is None
    # The README's best values (bold there): B5 on NYU, TUM, DIW, ETH3D and B2 on Sintel.
    best = {k: min(RELEASED, key=lambda n: RELEASED[n].metrics[k]) for k in METRIC_DEFINITIONS}
    assert best == {"nyu_delta1_err": "b5_lrn4", "tum_delta1_err": "b5_lrn4", "sintel_abs_rel": "b2_lrn4",
                    "diw_whdr": "b5_lrn4", "eth3d_abs_rel": "b5_lrn4"}
    table = published_metrics_table()
    assert all(f"| {name} |" in table for name in RELEASED) and "README.md" in table
    monkeypatch.setenv("SVDE_WEIGHTS_URL", "http://mirror.example/w/")
    assert RELEASED["b5_lrn4"].url == "http://mirror.example/w/b5_lrn4.pth"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UserError, match="no released weights for 'b9_lrn4'; released models: mn_lrn4, lite0_lrn4"):
        load_released("b9_lrn4")
    with pytest.raises(TypeError, match="takes only 'progress'"):
        hub_model("mn_lrn4", pretrained=True, encoder_weights="imagenet")


def test_torch_hub_lists_one_entry_point_per_model(tmp_path, monkeypatch):
    # torch.hub's GitHub path, offline: a clone already in the hub cache as <owner>_<repo>_<ref>
    # is used as it is (torch/hub.py _get_cache_or_reload), so list/help run on this checkout.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_dir = Path(torch.hub.get_dir())
    hub_dir.mkdir(parents=True)
    (hub_dir / "owner_svde_main").symlink_to(REPO, target_is_directory=True)
    github = "owner/svde:main"
    assert sorted(torch.hub.list(github, trust_repo=True, verbose=False)) == sorted(RELEASED)
    doc = torch.hub.help(github, "b5_lrn4", trust_repo=True)
    assert "b5_lrn4 (encoder efficientnet_b5" in doc and "NYU delta1 error 10.64" in doc
    model = torch.hub.load(str(REPO), "mn_lrn4", source="local", pretrained=False)  # random: asked for
    assert model.name == "mn_lrn4" and not any(p.name == "checkpoints" for p in hub_dir.iterdir())
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        torch.hub.load(str(REPO), "mn_lrn4", source="local", pretrained="no")


def test_hub_load_downloads_once_and_reproduces_the_release(release_server, shared_dir, official_state, tmp_path):
    served = release_server.put("mn_lrn4.pth", official_state("mn_lrn4"))
    model = torch.hub.load(str(REPO), "mn_lrn4", source="local", pretrained=True, progress=False)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    assert cached.read_bytes() == served.read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == ["mn_lrn4.pth"]  # no temporary left
    assert not model.training
    ref = np.load(shared_dir / FIXTURES / "mn_lrn4.out-seed0-128x160.npy")
    out = _fixture_output(model)
    assert out.shape == ref.shape and np.abs(out - ref).max() <= 1e-4

    release_server.close()  # the release is gone: the cache serves
    again = torch.hub.load(str(REPO), "mn_lrn4", source="local", pretrained=True, progress=False)
    assert np.array_equal(_fixture_output(again), out)
    assert released_path("mn_lrn4") == cached


def test_another_models_file_is_refused_and_not_cached(release_server, official_state, tmp_path):
    release_server.put("mn_lrn4.pth", official_state("lite0_lrn4"))
    with pytest.raises(ReleasedWeightsInvalid, match=r"mn_lrn4\.pth: refused as mn_lrn4: .*looks like a lite0_lrn4"):
        load_released("mn_lrn4", progress=False)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_bad_cached_file_is_refused_and_removed(release_server, official_state, tmp_path):
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    with pytest.raises(ReleasedWeightsInvalid, match="not a readable PyTorch weights file.*removed it from the cache"):
        load_released("mn_lrn4", progress=False)
    assert not cached.exists()
    release_server.put("mn_lrn4.pth", official_state("mn_lrn4"))  # the next call downloads the right file
    assert load_released("mn_lrn4", progress=False).name == "mn_lrn4" and cached.is_file()


def test_recorded_sha256_is_checked(release_server, official_state, monkeypatch):
    import svde.models.released as released

    served = release_server.put("mn_lrn4.pth", official_state("mn_lrn4"))
    wrong = ReleasedWeights("mn_lrn4", "mn_lrn4.pth", RELEASED["mn_lrn4"].metrics, sha256="0" * 64)
    monkeypatch.setattr(released, "RELEASED", {**RELEASED, "mn_lrn4": wrong})
    with pytest.raises(ReleasedWeightsInvalid, match="sha256 [0-9a-f]{64} differs from the recorded 0000"):
        load_released("mn_lrn4", progress=False)
    import hashlib

    right = ReleasedWeights("mn_lrn4", "mn_lrn4.pth", wrong.metrics, hashlib.sha256(served.read_bytes()).hexdigest())
    monkeypatch.setattr(released, "RELEASED", {**RELEASED, "mn_lrn4": right})
    assert load_released("mn_lrn4", progress=False).name == "mn_lrn4"


@pytest.mark.parametrize("edit, message", [
    (lambda s: {"state_dict": s}, "entries are not tensors"),
    (lambda s: {"module." + k: v for k, v in s.items()}, "keys outside branches.0/branches.1"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith("branches.1.backbone.")},
     "branches.1.backbone does not repeat branches.0"),
    (lambda s: {k: (v.double() if v.is_floating_point() else v) for k, v in s.items()}, "unexpected dtype"),
    (lambda s: {k: (v.clone().fill_(float("nan")) if k.endswith("final_decoder.0.bias") else v)
                for k, v in s.items()}, "non-finite values"),
])
def test_release_layout_is_exact(official_state, edit, message):
    state = official_state("mn_lrn4")
    assert check_released_layout(state, "mn_lrn4") is state
    with pytest.raises(ValueError, match=message):
        check_released_layout(edit(state), "mn_lrn4")


def test_unreachable_release_fails_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = f"http://127.0.0.1:{_closed_port()}/v1.0"
    monkeypatch.setenv("SVDE_WEIGHTS_URL", url)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        load_released("mn_lrn4", progress=False)
    message = str(info.value)
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    assert "\n" not in message
    assert f"{url}/mn_lrn4.pth" in message and str(cache) in message and "SVDE_WEIGHTS_URL" in message
    assert not cache.exists()


def test_missing_file_on_the_server_is_one_line(release_server):
    with pytest.raises(PretrainedWeightsUnavailable, match=r"mn_lrn4\.pth \(HTTP 404 .*SVDE_WEIGHTS_URL") as info:
        load_released("mn_lrn4", progress=False)
    assert "\n" not in str(info.value)


def test_a_local_folder_mirror_works_through_file_urls(official_state, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save(official_state("mn_lrn4"), mirror / "mn_lrn4.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_WEIGHTS_URL", mirror.as_uri())
    path = released_path("mn_lrn4", progress=False)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    assert path.read_bytes() == (mirror / "mn_lrn4.pth").read_bytes()


def test_readme_shows_the_published_table_with_the_sources_digits():
    """The README's table is published_metrics_table() verbatim, with the authors' digits (0.360, 12.80)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = published_metrics_table()
    assert table.rstrip("\n") in readme
    assert "| mn_lrn4 | 14.64 | 15.13 | 0.360 | 15.02 | 0.191 |" in table
    assert "| b1_lrn4 | 12.80 | 15.03 | 0.315 | 12.71 | 0.179 |" in table
    assert "| b0_lrn4 | 13.84 | 15.95 | 0.330 | 13.15 | 0.168 |" in table
