"""Test-wide settings: offline, CPU, and the optional ``../shared`` material."""

import functools
import http.server
import json
import math
import os
import threading
from pathlib import Path
from typing import Callable

import pytest

# Nothing may reach the network from tests (set before any library reads them).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SVDE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests using it are skipped where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared material not found at {SHARED} (only developers' checkouts have it)")
    return SHARED


def fill_official(entries: list) -> dict:
    """Fill a released layout deterministically, as ../shared/fixtures/official-lrn4/README.md says."""
    state = {}
    for i, (key, shape, _dtype) in enumerate(entries):
        if key.startswith("branches.1.backbone."):
            state[key] = state["branches.0." + key[len("branches.1.backbone."):]]
            continue
        g = torch.Generator().manual_seed(i)
        if key.endswith("num_batches_tracked"):
            t = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1 and key.endswith("weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        state[key] = t
    return state


@pytest.fixture(scope="session")
def official_state(shared_dir: Path) -> Callable[[str], dict]:
    """``official_state(name)``: a released state dict for ``name``, filled as the fixtures define."""
    def make(name: str) -> dict:
        entries = json.loads((shared_dir / "fixtures/official-lrn4" / f"{name}.keys.json").read_text())
        return fill_official(entries)
    return make


@pytest.fixture(scope="session")
def mn_model():
    """A seeded random ``mn_lrn4`` in eval mode, shared by the script tests (do not modify it)."""
    from svde.models import build_model

    torch.manual_seed(0)
    return build_model("mn_lrn4").eval()


@pytest.fixture(scope="session")
def mn_checkpoint(tmp_path_factory, mn_model) -> Path:
    """``mn_model`` saved as a project checkpoint."""
    from svde.models import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", mn_model)


# ---- a local HTTP server standing in for the authors' GitHub release (never the internet) ---------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class ReleaseServer:
    """A folder served over HTTP on 127.0.0.1 (a stand-in for the GitHub release)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        handler = functools.partial(_Quiet, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1.0"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, filename: str, state: dict) -> Path:
        path = self.folder / "v1.0" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        return path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def release_server(tmp_path, monkeypatch):
    """A local release server, with TORCH_HOME and SVDE_WEIGHTS_URL pointing svde at it."""
    srv = ReleaseServer(tmp_path / "www")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_WEIGHTS_URL", srv.url)
    yield srv
    srv.close()


def _corrupt_mjpg_frame(path: Path, index: int, frames: int) -> None:
    """Zero frame ``index``'s JPEG data inside an MJPG .avi of ``frames`` frames, keeping the
    container intact: OpenCV's grab() fails on that frame and its reader goes on."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]  # JPEG start-of-image markers
    assert len(starts) == frames
    data[starts[index] + 2:starts[index + 1] - 64] = bytes(starts[index + 1] - 64 - starts[index] - 2)
    path.write_bytes(bytes(data))


@pytest.fixture
def corrupt_mjpg_frame() -> Callable[[Path, int, int], None]:
    """``corrupt(path, index, frames)``: one frame of an MJPG .avi made undecodable (video tests)."""
    return _corrupt_mjpg_frame


def _two_step_run(run_dir: Path, train_entry: dict, data: dict) -> float:
    """A 2-step CPU run on 64x64 crops of ``train_entry`` with ``data`` keys on top; checks that
    both steps logged a finite loss and returns the first."""
    from svde.config import build_config
    from svde.training import train

    cfg = build_config({"name": run_dir.name, "data": {"train": [train_entry], "height": 64, "width": 64,
                                                       "batch_size": 2, "epoch_length": 8, **data},
                        "train": {"steps": 2, "log_every": 1, "checkpoint_every": 2, "image_every": 2},
                        "val": {"every": 0}})
    summary = train(cfg, run_dir)
    logs = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert len(logs) == 2 and all(math.isfinite(r["loss"]) for r in logs)
    return logs[0]["loss"]


@pytest.fixture
def two_step_run() -> Callable[[Path, dict, dict], float]:
    """``run(run_dir, train_entry, data_keys) -> first loss``: a tiny training run (colour/warp place tests)."""
    return _two_step_run
