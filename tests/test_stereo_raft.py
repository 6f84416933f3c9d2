"""The ``raft`` stereo matcher (svde.data.stereo.raft): random-init torchvision RAFT end to end, the
validity rules and sign conventions on constructed flows, torchvision's own correlation indexing, and
the weights: never downloaded implicitly, an opt-in download verified before it enters the cache,
against a local 127.0.0.1 server (never the internet)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import svde.data.stereo.raft as raft
import svde.download
from svde.data.stereo import StereoSettings, estimate_disparity
from svde.errors import UserError
from svde.models.pretrained import PretrainedWeightsUnavailable

H, W = 100, 130  # neither a multiple of 8 nor RAFT's minimum of 128: padded to 128 x 136


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_state(model: str = "small", seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return raft.build_raft(model).state_dict()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(_random_state(), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("svde tried to download")
    monkeypatch.setattr(svde.download.urllib.request, "urlopen", refuse)


def _pair(shift: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    right = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    return np.roll(right, shift, axis=1), right  # left pixel x is right pixel x - shift: disparity +shift


def test_random_init_raft_runs_through_estimate_disparity(small_file, no_network):
    settings = StereoSettings(raft_model="small", raft_iters=2, raft_weights=str(small_file))
    left, right = _pair()
    disp, valid = estimate_disparity(left, right, "raft", settings)
    assert disp.shape == valid.shape == (H, W) and disp.dtype == np.float32 and valid.dtype == bool
    assert np.isfinite(disp).all() and (disp[~valid] == 0).all()
    again_disp, again_valid = estimate_disparity(left, right, "raft", settings)
    assert np.array_equal(disp, again_disp) and np.array_equal(valid, again_valid)
    # the network is loaded once per (model, file, device) and kept
    assert raft.network(settings) is raft.network(settings)
    # the matcher is exactly the two flows plus the validity rules
    forward, backward = raft.run_flow(raft.load_raft("small", small_file), left, right, 2)
    assert forward.shape == backward.shape == (2, H, W) and forward.dtype == np.float32
    import cv2
    expected = raft.disparity_from_flows(forward, backward, cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), settings)
    assert np.allclose(expected[0], disp, atol=1e-5) and np.array_equal(expected[1], valid)


def test_input_is_torchvisions_optical_flow_preset_edge_padded():
    from torchvision.models.optical_flow import Raft_Small_Weights

    images = np.random.default_rng(1).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    x = raft._to_input(images, "cpu")
    assert x.shape == (2, 3, 128, 136) and raft.padded_size(136, 64) == (136, 128)
    t = torch.from_numpy(images).permute(0, 3, 1, 2)
    ref, _ = Raft_Small_Weights.DEFAULT.transforms()(t, t)
    assert torch.allclose(x[:, :, :H, :W], ref, atol=1e-6) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[:, :, :H, W:], x[:, :, :H, W - 1:W].expand(-1, -1, -1, 136 - W))
    assert torch.equal(x[:, :, H:, :], x[:, :, H - 1:H, :].expand(-1, -1, 128 - H, -1))


def test_torchvision_flow_points_into_the_second_image_x_first():
    # The sign convention, on torchvision's own correlation block: RAFT's flow is coords1 - coords0
    # (RAFT.forward) where coords1 index image 2's features. If image 2 is image 1 moved s px left
    # (a right view: x_right = x_left - s), the perfect match of pixel (x, y) is looked up at
    # (x - s, y), i.e. flow_x = -s and the disparity is -flow_x = s.
    from torchvision.models.optical_flow.raft import CorrBlock
    from torchvision.models.optical_flow._utils import make_coords_grid

    s, h, w, c = 3, 16, 24, 8
    f1 = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0))
    f2 = torch.roll(f1, -s, dims=3)
    block = CorrBlock(num_levels=1, radius=1)
    block.build_pyramid(f1, f2)
    coords = make_coords_grid(1, h, w)
    self_corr = (f1 * f1).sum(1) / c ** 0.5
    for delta, matches in (((-s, 0), True), ((0, -s), False), ((s, 0), False)):
        centre = block.index_pyramid(coords + torch.tensor(delta, dtype=torch.float32).view(1, 2, 1, 1))[:, 4]
        inner = (slice(None), slice(s, h - s), slice(s, w - s))
        assert torch.allclose(centre[inner], self_corr[inner], atol=1e-4) == matches


def test_validity_rules_and_signs_on_constructed_flows(small_file, monkeypatch):
    shift = 4
    left, right = _pair(shift)
    forward = np.zeros((2, H, W), np.float32)
    backward = np.zeros((2, H, W), np.float32)
    forward[0], backward[0] = -shift, shift  # left->right moves left by shift; right->left moves right
    forward[1, 10:20] = 1.5                     # rows 10..19 vertically off by more than max_vertical
    forward[1, 20:30] = -0.5                    # within it
    backward[0, 40:50, 60:70] = shift + 3       # the right view disagrees there (tolerance 1 px)
    monkeypatch.setattr(raft, "run_flow", lambda net, l, r, iters, device="cpu": (forward, backward))
    settings = StereoSettings(raft_model="small", raft_iters=1, raft_weights=str(small_file), max_vertical=1.0)
    disp, valid = estimate_disparity(left, right, "raft", settings)
    expected = np.ones((H, W), bool)
    expected[:, :shift] = False                       # they map outside the right view
    expected[10:20] = False
    expected[40:50, 60 + shift:70 + shift] = False    # left x -> right x - shift in 60..69
    assert np.array_equal(valid, expected)
    assert (disp[valid] == shift).all() and (disp[~valid] == 0).all()
    loose = StereoSettings(raft_model="small", raft_weights=str(small_file), max_vertical=2, lr_tolerance=float("inf"))
    assert estimate_disparity(left, right, "raft", loose)[1].all()  # no left-right check: the border counts too
    # negative disparity (content behind the screen) is kept; a non-finite flow never is
    forward[:], backward[:] = 0, 0
    forward[0], backward[0] = 3, -3
    forward[0, 5, 5] = np.nan
    disp, valid = estimate_disparity(*_pair(-3), "raft", settings)
    expected = np.ones((H, W), bool)
    expected[:, W - 3:] = False
    expected[5, 5] = False
    assert np.array_equal(valid, expected) and (disp[valid] == -3).all() and (disp[~valid] == 0).all()
    # texture
    flat = np.full_like(left, 128)
    assert not estimate_disparity(flat, flat, "raft", settings)[1].any()


def test_missing_default_weights_is_one_line_and_downloads_nothing(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    left, right = _pair()
    for model in ("large", "small"):
        with pytest.raises(PretrainedWeightsUnavailable) as info:
            estimate_disparity(left, right, "raft", StereoSettings(raft_model=model))
        message = str(info.value)
        path = tmp_path / "torch" / "hub" / "checkpoints" / raft.default_weights_name(model)
        assert "\n" not in message and str(path) in message
        assert f"fetch_raft_weights({model!r})" in message and "--download-weights" in message
        assert "raft_weights=FILE" in message
    assert raft.default_weights_name("large") == "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
    assert not (tmp_path / "torch").exists()
    with pytest.raises(UserError, match=r"raft_weights .*nope\.pth: no such file"):
        estimate_disparity(left, right, "raft", StereoSettings(raft_weights=str(tmp_path / "nope.pth")))


def test_a_file_of_another_model_is_refused_naming_file_and_model(small_file):
    with pytest.raises(raft.RaftWeightsInvalid, match=rf"{small_file.name}: not a state dict of torchvision's "
                       r"raft_large \(.*\); expected the weights of raft_large"):
        raft.load_raft("large", small_file)
    with pytest.raises(KeyError, match="valid models: large, small"):
        raft.load_raft("huge", small_file)


def _serve(folder: Path, state: dict | bytes, prefix: str | None = None) -> str:
    """Put ``state`` on the server as torchvision's raft_small file name with the hash ``prefix`` (default: its own)."""
    tmp = folder / "upload.tmp"
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(state, bytes):
        tmp.write_bytes(state)
    else:
        torch.save(state, tmp)
    name = f"raft_small_C_T_V2-{prefix or hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(folder / name)
    return name


@pytest.fixture
def raft_server(release_server, monkeypatch):
    monkeypatch.setenv("SVDE_RAFT_URL", release_server.url)
    return release_server


def test_fetch_lands_in_the_cache_then_loads(raft_server, tmp_path, monkeypatch):
    name = _serve(raft_server.folder / "v1.0", _random_state())
    monkeypatch.setattr(raft, "default_weights_name", lambda model: name)
    assert raft.weights_url("small") == f"{raft_server.url}/{name}"
    path = raft.fetch_raft_weights("small", progress=False)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    assert path == cache / name and path.read_bytes() == (raft_server.folder / "v1.0" / name).read_bytes()
    assert [p.name for p in cache.iterdir()] == [name]  # no temporary left
    raft_server.close()  # the cached file is used as it is
    assert raft.fetch_raft_weights("small", progress=False) == path
    disp, valid = estimate_disparity(*_pair(), "raft", StereoSettings(raft_model="small", raft_iters=1))
    assert disp.shape == (H, W) and valid.dtype == bool


@pytest.mark.parametrize("content, prefix, message", [
    ("state", "00000000", "does not start with 00000000, the hash prefix of torchvision's"),
    ({"weight": torch.zeros(3)}, None, "not a state dict of torchvision's raft_small .*keys missing"),
    (b"not a checkpoint", None, r"RAFT weights \(raft_small\) http://127\.0\.0\.1:\d+/v1\.0/raft_small_C_T_V2-[0-9a-f]{8}\.pth "
                                "was refused"),
])
def test_a_wrong_file_is_refused_and_not_cached(raft_server, tmp_path, monkeypatch, content, prefix, message):
    state = _random_state() if content == "state" else content
    name = _serve(raft_server.folder / "v1.0", state, prefix)
    monkeypatch.setattr(raft, "default_weights_name", lambda model: name)
    with pytest.raises(PretrainedWeightsUnavailable, match=message):
        raft.fetch_raft_weights("small", progress=False)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_unreachable_server_fails_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = f"http://127.0.0.1:{_closed_port()}/models"
    monkeypatch.setenv("SVDE_RAFT_URL", url)
    with pytest.raises(raft.RaftWeightsUnavailable) as info:
        raft.fetch_raft_weights("large", progress=False)
    message = str(info.value)
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
    assert "\n" not in message and f"{url}/{cache.name}" in message and str(cache) in message
    assert "SVDE_RAFT_URL" in message and not cache.exists()


def test_prepare_stereo_with_raft_checks_weights_first_then_runs(small_file, tmp_path, monkeypatch, capsys, no_network):
    """The command: missing weights fail before any frame (one line, exit 1, nothing written);
    a local weights file runs the whole tool and records the matcher and its settings."""
    from svde.cli.common import run_main
    from svde.cli.prepare_stereo import main
    from svde.data.io import write_rgb

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    left, right = _pair(shift=6)
    write_rgb(tmp_path / "pairs/left/000.png", left)
    write_rgb(tmp_path / "pairs/right/000.png", right)
    base = [str(tmp_path / "pairs"), "--matcher", "raft", "--raft-model", "small", "--raft-iters", "1",
            "--no-progress", "--min-kept", "0", "--min-range", "0"]
    assert run_main(main, base + ["--out", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--download-weights" in err and not (tmp_path / "missing").exists()
    assert run_main(main, base + ["--out", str(tmp_path / "out"), "--raft-weights", str(small_file)]) == 0
    import json
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["settings"]["matcher"] == "raft"
    assert manifest["settings"]["stereo"]["raft_weights"] == str(small_file)
    assert "block_size" not in manifest["settings"]["stereo"]  # SGBM's settings cannot shape a raft run
    assert [f["status"] for f in manifest["frames"]] == ["kept"]  # random weights: no accuracy claim here


def test_download_weights_flag_fetches_once_then_runs(raft_server, small_file, tmp_path, monkeypatch):
    from svde.cli.common import run_main
    from svde.cli.prepare_stereo import main
    from svde.data.io import write_rgb

    name = _serve(raft_server.folder / "v1.0", _random_state())
    monkeypatch.setattr(raft, "default_weights_name", lambda model: name)
    left, right = _pair(shift=6)
    write_rgb(tmp_path / "pairs/left/000.png", left)
    write_rgb(tmp_path / "pairs/right/000.png", right)
    args = [str(tmp_path / "pairs"), "--out", str(tmp_path / "out"), "--matcher", "raft", "--raft-model", "small",
            "--raft-iters", "1", "--no-progress", "--min-kept", "0", "--min-range", "0", "--download-weights"]
    (tmp_path / "afile").write_text("x")  # a bad --out is refused before anything is downloaded
    assert run_main(main, args + ["--out", str(tmp_path / "afile")]) == 2
    assert not (tmp_path / "torch/hub/checkpoints" / name).exists()
    assert run_main(main, args) == 0
    assert (tmp_path / "torch/hub/checkpoints" / name).is_file()


def _benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("stereo_benchmark", Path(__file__).resolve().parents[1] / "benchmarks/stereo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_args(root: Path, **overrides):
    import argparse

    values = dict(root=root, synthetic=1, raft_model="small", raft_iters=1, raft_weights="", untrained=False,
                  repeat=1, device="cpu")
    return argparse.Namespace(**{**values, **overrides})


def test_benchmark_times_untrained_raft_and_claims_no_accuracy(tmp_path, capsys, no_network):
    bench = _benchmark()
    bench.raft_rows(_bench_args(tmp_path / "no-real-pairs", untrained=True), tmp_path)
    out = capsys.readouterr().out
    assert "UNTRAINED weights: timing only" in out
    row = next(line for line in out.splitlines() if line.startswith("| synthetic room 0"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["128x96", "all", "n/a", "n/a", "n/a"]
    assert float(cells[6]) > 0 and float(cells[7]) > 0


def test_benchmark_without_raft_weights_stops_with_one_error_line(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(raft, "default_weights_path", lambda model: tmp_path / "absent.pth")
    bench = _benchmark()
    with pytest.raises(SystemExit) as stop:
        bench.raft_rows(_bench_args(tmp_path), tmp_path)
    assert str(stop.value).startswith("error: torchvision's raft_small weights are not at")
