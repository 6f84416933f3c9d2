"""``svde.load``: one loader for every source (issue 24, item 1), and the entry points that go through it."""

import importlib
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import svde
from svde.errors import UserError
from svde.models import build_model, load_model, load_official_checkpoint, save_checkpoint
from svde.models.sharing import from_pretrained, save_pretrained

REPO = Path(__file__).resolve().parents[1]


def _out(model):
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x).numpy()


def test_released_name_by_default_through_svde_load_and_torch_hub(release_server, official_state, caplog):
    state = official_state("mn_lrn4")
    release_server.put("mn_lrn4.pth", state)
    reference = _out(load_official_checkpoint(state, "mn_lrn4"))
    with caplog.at_level("INFO", logger="svde.models.loading"):
        net = svde.load("mn_lrn4", progress=False)
    assert "loaded mn_lrn4: the authors' released weights (mn_lrn4.pth)" in caplog.text
    assert np.array_equal(_out(net), reference) and not net.training
    hub = torch.hub.load(str(REPO), "mn_lrn4", source="local")  # no pretrained argument: released weights
    assert np.array_equal(_out(hub), reference)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        from svde.api import load_depth_model

        old = load_depth_model(model="mn_lrn4")  # used to be random weights without a word
    assert np.array_equal(_out(old), reference)
    assert any(issubclass(w.category, DeprecationWarning) and "released weights" in str(w.message) for w in seen)


def test_every_file_source_gives_what_the_old_loaders_gave(tmp_path, official_state):
    state = official_state("mn_lrn4")
    torch.save(state, tmp_path / "authors.pth")
    authors = load_official_checkpoint(tmp_path / "authors.pth", "mn_lrn4")
    assert np.array_equal(_out(svde.load(tmp_path / "authors.pth")), _out(authors))  # recognised by shape
    assert np.array_equal(_out(svde.load(tmp_path / "authors.pth", model="mn_lrn4")), _out(authors))

    trained = build_model("lite0_lrn4").eval()  # random weights stand in for trained ones
    save_checkpoint(tmp_path / "best.pt", trained)
    assert np.array_equal(_out(svde.load(tmp_path / "best.pt")), _out(load_model(tmp_path / "best.pt")))

    save_pretrained(trained, tmp_path / "shared")
    assert np.array_equal(_out(svde.load(tmp_path / "shared")), _out(from_pretrained(tmp_path / "shared")))
    assert svde.load(str(tmp_path / "shared"), device="cpu").name == "lite0_lrn4"


def test_bad_sources_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="unknown model 'b9_lrn4'.*; valid models: mn_lrn4"):
        svde.load("mn_lrn4", model="b9_lrn4")
    with pytest.raises(UserError, match="neither a file, a save_pretrained folder nor a model name"):
        svde.load("b9_lrn4")
    with pytest.raises(UserError, match=r"checkpoint .*missing\.pt does not exist"):
        svde.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        svde.load(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="neither an svde checkpoint .* nor an authors' release"):
        svde.load(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "mn.pt", build_model("mn_lrn4"))
    with pytest.raises(UserError, match="holds a mn_lrn4 model, but model 'b0_lrn4' was requested"):
        svde.load(tmp_path / "mn.pt", model="b0_lrn4")
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        svde.load("mn_lrn4", pretrained="no")


def test_random_weights_only_when_asked_and_import_stays_light():
    net = svde.load("mn_lrn4", pretrained=False)
    assert net.name == "mn_lrn4" and not net.training
    code = "import sys, svde; assert callable(svde.load); print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # svde.load imports torch on first use only


def test_a_model_without_a_release_breaks_neither_hubconf_nor_the_paper_table(monkeypatch):
    from svde.models import registry

    monkeypatch.setitem(registry.MODELS, "mn_lrn3", registry.MODELS["mn_lrn4"])
    sys.modules.pop("hubconf", None)
    monkeypatch.syspath_prepend(str(REPO))
    hubconf = importlib.import_module("hubconf")
    assert not hasattr(hubconf, "mn_lrn3") and hasattr(hubconf, "mn_lrn4")
    from svde.evaluation.paper import PAPER_MODELS

    assert "mn_lrn3" not in PAPER_MODELS
    with pytest.raises(UserError, match="mn_lrn3 has no released weights"):
        svde.load("mn_lrn3")
    sys.modules.pop("hubconf", None)


def test_errors_about_a_file_name_the_file(tmp_path):
    """svde.load reads a file once and passes the dict on: its errors still name the file."""
    from svde.models.checkpoint import FORMAT, CheckpointError

    bad = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "model_name": "zzz", "model": {}}, bad)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(bad))}: model_name 'zzz'"):
        svde.load(bad)
    authors = tmp_path / "off.pth"
    torch.save({"branches.0.backbone.x": torch.zeros(1)}, authors)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(authors))} does not fit mn_lrn4"):
        svde.load(authors, model="mn_lrn4")


def test_the_01_shim_refuses_a_checkpoint_that_is_no_file():
    """svde 0.1's load_depth_model(checkpoint=...) named a file: a bare model name or a hub-like id
    there is "does not exist", as in 0.1, not random weights or a download."""
    import warnings

    from svde.inference import load_depth_model
    from svde.models.checkpoint import CheckpointError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for kwargs in ({"checkpoint": "mn_lrn4"}, {"checkpoint": "someone/weights"},
                       {"official": "someone/weights", "model": "mn_lrn4"}):
            with pytest.raises(CheckpointError, match="does not exist"):
                load_depth_model(**kwargs)
