"""Issue 22 ("Reliability 3"), item 4: downloads are bounded (svde.download.download_verified).

Local servers on 127.0.0.1 that misbehave, each bounded in time and bytes: one that streams for
ever, one that announces a huge file, one that sends a byte every few seconds (a stall that a
socket timeout never sees), one that sends nothing after its headers, one that is too slow in
all. Each download ends with one ``error:`` line (exit 1) well within a minute and leaves no file
in the hub cache; temporaries a killed download left are removed, and only those.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from svde.cli.main import main as svde_main
from svde.download import download_verified

SERVER_LIMIT_S = 30.0  # no handler streams longer than this
SERVER_LIMIT_BYTES = 300 << 20  # nor more than this


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """``/endless/*``: zeros for ever, no length; ``/huge/*``: announces 10 GiB; ``/trickle-S/*``: one
    byte every S seconds; ``/silent/*``: headers, then nothing; ``/slow/*``: 4 KiB every 0.2 s."""

    sent: list[int]  # bytes sent, over all requests (set on the class by the fixture)

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        kind = self.path.strip("/").split("/")[0]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if kind != "endless":
            self.send_header("Content-Length", str(10 << 30 if kind == "huge" else 10 << 20))
        self.end_headers()
        start = time.monotonic()
        chunk, pause = {"endless": (b"\0" * (1 << 16), 0.0), "slow": (b"\0" * 4096, 0.2),
                        "silent": (b"", 0.2)}.get(kind, (b"\0", float(kind.split("-")[-1]) if "-" in kind else 0.0))
        try:
            while time.monotonic() - start < SERVER_LIMIT_S and self.sent[0] < SERVER_LIMIT_BYTES:
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.sent[0] += len(chunk)
                if kind == "huge":
                    break
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what it should do


@pytest.fixture
def bad_server():
    """The misbehaving server; ``.url``, ``.sent`` (bytes sent so far)."""
    sent = [0]
    handler = type("Handler", (Misbehaving,), {"sent": sent})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.sent = sent
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def cache_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "torch").rglob("*") if p.is_file()]


def predict_by_name(tmp_path: Path, monkeypatch, capsys, base: str, stall_s: str) -> tuple[int, str, float]:
    """``svde predict --model mn_lrn4 photo.png`` with the release at ``base``: (exit status, stderr, seconds)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_WEIGHTS_URL", base)
    monkeypatch.setenv("SVDE_DOWNLOAD_STALL_S", stall_s)
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("photo.png", np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    capsys.readouterr()
    start = time.monotonic()
    rc = svde_main(["predict", "--model", "mn_lrn4", "photo.png", "--device", "cpu"])
    return rc, capsys.readouterr().err, time.monotonic() - start


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def test_an_endless_response_is_cut_at_the_files_size_limit(tmp_path, monkeypatch, capsys, bad_server):
    rc, err, seconds = predict_by_name(tmp_path, monkeypatch, capsys, f"{bad_server.url}/endless", "5")
    assert bad_server.sent[0] <= 64 << 20, bad_server.sent[0]  # the limit, 38.5 MiB (+ socket buffers)
    line = one_error_line(err)
    assert rc == 1 and seconds < 20, (rc, seconds)
    assert "mn_lrn4.pth" in line and "more than 38.5 MiB received" in line and "SVDE_WEIGHTS_URL" in line
    from svde.models.released import max_file_bytes

    assert max_file_bytes("mn_lrn4") == 4 * 9822660 + (1 << 20)  # 4 x the model's parameter and buffer bytes
    assert cache_files(tmp_path) == [] and not [p for p in tmp_path.glob("predictions/*")]  # nothing predicted


def test_a_server_sending_a_byte_every_3_s_fails_within_a_minute_at_stall_5_s(tmp_path, monkeypatch, capsys,
                                                                           bad_server):
    """The issue's acceptance: SVDE_DOWNLOAD_STALL_S=5, a byte every 3 s (a socket timeout never fires)."""
    rc, err, seconds = predict_by_name(tmp_path, monkeypatch, capsys, f"{bad_server.url}/trickle-3", "5")
    line = one_error_line(err)
    assert rc == 1 and 5 <= seconds < 15, (rc, seconds)
    assert "stalled" in line and "SVDE_DOWNLOAD_STALL_S=5" in line
    assert cache_files(tmp_path) == []


def test_a_server_that_goes_silent_fails_after_the_stall_time(tmp_path, monkeypatch, capsys, bad_server):
    rc, err, seconds = predict_by_name(tmp_path, monkeypatch, capsys, f"{bad_server.url}/silent", "1")
    line = one_error_line(err)
    assert rc == 1 and seconds < 5, (rc, seconds)  # the old 10 s socket timeout is not what stops it
    assert "stalled: no data for 1 s" in line and cache_files(tmp_path) == []


def test_a_huge_announced_file_is_not_downloaded(tmp_path, monkeypatch, capsys, bad_server):
    rc, err, seconds = predict_by_name(tmp_path, monkeypatch, capsys, f"{bad_server.url}/huge", "5")
    line = one_error_line(err)
    assert rc == 1 and "announces 10240.0 MiB" in line and bad_server.sent[0] <= 1
    assert cache_files(tmp_path) == []


def test_the_whole_download_is_time_limited(tmp_path, monkeypatch, bad_server):
    monkeypatch.setenv("SVDE_DOWNLOAD_TIMEOUT_S", "1.5")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"took more than SVDE_DOWNLOAD_TIMEOUT_S=1.5 s"):
        download_verified(f"{bad_server.url}/slow/w.bin", tmp_path / "cache" / "w.bin", verify=lambda p, s: None,
                          unavailable=RuntimeError, progress=False)
    assert time.monotonic() - start < 5 and list((tmp_path / "cache").iterdir()) == []


def test_raft_weights_downloads_are_capped(tmp_path, monkeypatch, bad_server):
    from svde.data.stereo import raft

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_RAFT_URL", f"{bad_server.url}/endless")
    with pytest.raises(raft.RaftWeightsUnavailable, match=r"more than 16.0 MiB received"):
        raft.fetch_raft_weights("small", progress=False)
    assert bad_server.sent[0] <= (16 << 20) + (16 << 20) and cache_files(tmp_path) == []


def test_bad_limits_are_one_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_DOWNLOAD_STALL_S", "soon")
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    assert svde_main(["predict", "--model", "mn_lrn4", str(tmp_path / "photo.png"), "--out", str(tmp_path / "o"),
                      "--device", "cpu"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "SVDE_DOWNLOAD_STALL_S='soon': expected a number of seconds > 0" in line


def test_a_killed_downloads_temporary_is_removed_by_the_next_download(tmp_path):
    """Only temporaries of the same file that no live download holds (locked) or just made (young)."""
    import fcntl

    cache = tmp_path / "cache"
    cache.mkdir()
    old = time.time() - 3600
    killed = cache / ".w.bin.k1ll3d.tmp"
    live = cache / ".w.bin.l1v3.tmp"
    young = cache / ".w.bin.y0ung.tmp"
    others = [cache / ".other.bin.abc.tmp", cache / "w.bin.tmp", cache / "unrelated.bin", cache / ".w.bin2.x.tmp"]
    for path in [killed, live, young, *others]:
        path.write_bytes(b"partial")
        if path is not young:
            os.utime(path, (old, old))
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # another process's download in progress
        (tmp_path / "w.bin").write_bytes(b"weights")
        download_verified((tmp_path / "w.bin").as_uri(), cache / "w.bin", verify=lambda p, s: None,
                          unavailable=RuntimeError, progress=False)
    kept = sorted(["w.bin", live.name, young.name, *(p.name for p in others)])
    assert sorted(p.name for p in cache.iterdir()) == kept  # the killed one's temporary went, only it
    from svde.download import STALE_GRACE_S

    assert STALE_GRACE_S < 3600  # the old ones were past it


def test_a_failed_download_keeps_the_stale_rule_and_leaves_nothing(tmp_path, monkeypatch, capsys, bad_server):
    """A killed download's temporary in the hub cache goes on the next attempt, even one that fails."""
    stale = tmp_path / "torch" / "hub" / "checkpoints" / ".mn_lrn4.pth.k1ll3d.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 1000)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    rc, err, _ = predict_by_name(tmp_path, monkeypatch, capsys, f"{bad_server.url}/huge", "5")
    assert rc == 1 and cache_files(tmp_path) == [] and one_error_line(err)
