"""Issue 22 ("Reliability 3"), item 8: content integrity. ``save_pretrained`` records the sha256 of
its weights and ``from_pretrained`` checks it; a released file's sha256 is recorded the first time
it is verified (the release publishes none: layout and values are all a first download can be
checked by), and a later different file of that name is refused with one line saying what to do."""

from __future__ import annotations

import hashlib
import json
import logging

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch

from svde.cli.main import main as svde_main
from svde.models import CheckpointError, build_model, from_pretrained, save_pretrained
from svde.models.released import ReleasedWeightsInvalid, load_released


def test_a_tampered_safetensors_file_with_finite_values_is_refused(tmp_path):
    folder = save_pretrained(build_model("mn_lrn4"), tmp_path / "mn")
    weights = folder / "model.safetensors"
    saved = hashlib.sha256(weights.read_bytes()).hexdigest()
    state = safetensors.torch.load_file(str(weights))
    state["head.conv.bias"] = torch.full_like(state["head.conv.bias"], 0.5)  # the right keys, shapes, finite values
    safetensors.torch.save_file(state, str(weights), metadata={"format": "pt", "model_name": "mn_lrn4"})
    expected = (r"model\.safetensors: sha256 [0-9a-f]{64} differs from the [0-9a-f]{64} that config\.json records; "
                r"the weights were changed or damaged")
    with pytest.raises(CheckpointError, match=expected) as info:
        from_pretrained(folder)
    assert "\n" not in str(info.value)
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"] == {"file": "model.safetensors", "sha256": saved}


def test_a_folder_without_a_recorded_sha256_loads_with_a_warning(tmp_path, caplog):
    folder = save_pretrained(build_model("mn_lrn4"), tmp_path / "mn")
    config = json.loads((folder / "config.json").read_text())
    del config["weights"]  # as an older svde wrote it
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="svde.models.sharing"):
        assert from_pretrained(folder).name == "mn_lrn4"
    assert "records no sha256 of model.safetensors" in caplog.text
    config["weights"] = {"file": "model.safetensors", "sha256": "abc"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="is not {file, sha256} with a hex sha256"):
        from_pretrained(folder)


def _other_release(state: dict) -> dict:
    """The same layout and finite values, one tensor changed: what a layout check cannot tell apart."""
    changed = dict(state)
    key = next(k for k in state if k.endswith("final_decoder.0.bias"))
    changed[key] = state[key] + 0.25
    return changed


def test_the_first_verified_release_file_is_recorded_and_a_different_one_refused(release_server, official_state,
                                                                                  tmp_path):
    state = official_state("mn_lrn4")
    served = release_server.put("mn_lrn4.pth", state)
    load_released("mn_lrn4", progress=False)
    record = tmp_path / "torch" / "hub" / "svde-sha256.json"
    files = json.loads(record.read_text())["files"]
    assert files["mn_lrn4.pth"]["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    assert files["mn_lrn4.pth"]["source"].endswith("/mn_lrn4.pth")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    # the release changes (or a mirror serves another file): the download is refused, nothing is cached
    cached.unlink()
    release_server.put("mn_lrn4.pth", _other_release(state))
    with pytest.raises(ReleasedWeightsInvalid, match=r"sha256 [0-9a-f]{64} differs from [0-9a-f]{64}, recorded in "
                                                     r".*svde-sha256\.json when svde first verified mn_lrn4\.pth; "
                                                     r"refusing it \(if the release really changed, delete the "
                                                     r"'mn_lrn4\.pth' entry") as info:
        load_released("mn_lrn4", progress=False)
    assert "\n" not in str(info.value)
    assert not cached.exists() and list(cached.parent.iterdir()) == []
    # deleting the record's entry accepts the new file deliberately
    record.write_text(json.dumps({"format": "svde-sha256/1", "files": {}}))
    assert load_released("mn_lrn4", progress=False).name == "mn_lrn4" and cached.is_file()
    assert json.loads(record.read_text())["files"]["mn_lrn4.pth"]["sha256"] == \
        hashlib.sha256(cached.read_bytes()).hexdigest()


def test_a_cached_release_file_that_changed_is_refused_and_removed(release_server, official_state, tmp_path):
    state = official_state("mn_lrn4")
    release_server.put("mn_lrn4.pth", state)
    load_released("mn_lrn4", progress=False)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth"
    torch.save(_other_release(state), cached)  # replaced in the cache by a file of the same layout
    with pytest.raises(ReleasedWeightsInvalid, match="differs from .* recorded in .*removed it from the cache"):
        load_released("mn_lrn4", progress=False)
    assert not cached.exists()
    assert load_released("mn_lrn4", progress=False).name == "mn_lrn4"  # the release's own file again


def test_a_changed_release_is_one_error_line_through_the_command(release_server, official_state, tmp_path,
                                                                 monkeypatch, capsys):
    state = official_state("mn_lrn4")
    release_server.put("mn_lrn4.pth", state)
    load_released("mn_lrn4", progress=False)
    (tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth").unlink()
    release_server.put("mn_lrn4.pth", _other_release(state))
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((16, 16, 3), np.uint8))
    capsys.readouterr()
    assert svde_main(["predict", "--model", "mn_lrn4", str(tmp_path / "photo.png"), "--out", str(tmp_path / "o"),
                      "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "svde-sha256.json" in line and "delete the 'mn_lrn4.pth' entry" in line and "Traceback" not in err


def test_an_unreadable_record_is_one_line_and_keeps_the_cached_file(release_server, official_state, tmp_path):
    release_server.put("mn_lrn4.pth", official_state("mn_lrn4"))
    load_released("mn_lrn4", progress=False)
    record = tmp_path / "torch" / "hub" / "svde-sha256.json"
    record.write_text("{not json")
    with pytest.raises(Exception, match=r"svde-sha256\.json: not a readable sha256 record .*delete it") as info:
        load_released("mn_lrn4", progress=False)
    assert "\n" not in str(info.value) and (tmp_path / "torch/hub/checkpoints/mn_lrn4.pth").is_file()
