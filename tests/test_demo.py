"""``svde demo`` (svde.cli.demo, svde.cli.demo_app): the back end without a browser (the .npy is
``svde predict``'s, the GLB reads back with an independent reader, no weights -> what to do), and the
whole app end to end in a real headless browser (Chromium driven by Selenium): upload a photo, wait
for the depth and the 3D view, download the .npy and compare it with ``svde predict``.

The browser test skips where Gradio, Selenium or Chromium is missing, unless ``SVDE_REQUIRE_BROWSER=1``
(.ci/run sets it, after installing Chromium): then it fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from svde.cli.main import main
from svde.data.io import write_rgb
from svde.data.synthetic import render, sample_scene

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).is_file()),
                    None)


def need(condition: bool, reason: str) -> None:
    """Skip without ``condition``; in CI (``SVDE_REQUIRE_BROWSER=1``) fail instead."""
    if not condition:
        if os.environ.get("SVDE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (SVDE_REQUIRE_BROWSER=1: the browser test must run here)")
        pytest.skip(reason)


def photo(path: Path, seed: int = 0, h: int = 120, w: int = 160) -> Path:
    write_rgb(path, render(sample_scene(np.random.default_rng(seed), h, w), h, w)["image"])
    return path


def svde_predict(checkpoint: Path, image: Path, out: Path) -> np.ndarray:
    """``svde predict``'s log-disparity for ``image`` (default short side, 384)."""
    assert main(["predict", "--checkpoint", str(checkpoint), str(image), "--out", str(out), "--threads", "1"]) == 0
    return np.load(out / f"{image.stem}.log_disparity.npy")


def read_glb(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, colours, triangles) of a one-mesh GLB, read with pygltflib (not the writer, trimesh)."""
    pygltflib = pytest.importorskip("pygltflib")
    gltf = pygltflib.GLTF2.load(str(path))
    blob = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]
    dtypes = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
    sizes = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}

    def accessor(index: int) -> np.ndarray:
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        data = np.frombuffer(blob, dtypes[acc.componentType], acc.count * sizes[acc.type], start)
        return data.reshape(acc.count, sizes[acc.type])

    return (accessor(primitive.attributes.POSITION), accessor(primitive.attributes.COLOR_0),
            accessor(primitive.indices).reshape(-1, 3))


# ---- the back end ----------------------------------------------------------------------------------
def test_backend_gives_svde_predicts_npy_and_a_mesh_the_glb_and_ply_hold(tmp_path, mn_checkpoint):
    pytest.importorskip("trimesh")
    from svde.cli.demo_app import GLTF_FROM_CAMERA, Choice, DemoBackend, demo_mesh

    image = photo(tmp_path / "room.png")
    backend = DemoBackend([Choice("checkpoint", str(mn_checkpoint))], workdir=tmp_path / "work")
    result = backend.run("checkpoint", image, fov=60)
    np.testing.assert_allclose(np.load(result.npy), svde_predict(mn_checkpoint, image, tmp_path / "pred"), atol=1e-5)
    assert result.colour.shape == (120, 160, 3) and result.colour.dtype == np.uint8
    mesh = demo_mesh(result.log_disparity, result.photo, 60)
    positions, colours, triangles = read_glb(result.glb)
    np.testing.assert_allclose(positions, mesh.vertices * GLTF_FROM_CAMERA, rtol=1e-6)
    assert (colours[:, :3] == mesh.colors).all() and (colours[:, 3] == 255).all()
    assert (triangles == mesh.faces).all() and len(triangles) > 0.9 * 2 * 119 * 159  # few depth jumps here
    assert np.median(mesh.vertices[:, 2]) == pytest.approx(1.0, rel=0.01)  # depth up to scale: median 1
    header = result.ply.read_bytes()[:300].decode("ascii", "replace")
    assert f"element vertex {len(mesh.vertices)}" in header and f"element face {len(mesh.faces)}" in header


def test_a_new_field_of_view_re_meshes_without_predicting_again(tmp_path, mn_checkpoint, monkeypatch):
    pytest.importorskip("trimesh")
    import svde.cli.demo_app as app

    calls = []
    monkeypatch.setattr(app, "predict", lambda *a, **k: calls.append(1) or svde_predict_stub(a[1]))
    image = photo(tmp_path / "room.png")
    backend = app.DemoBackend([app.Choice("checkpoint", str(mn_checkpoint))], workdir=tmp_path / "work")
    first, second = backend.run("checkpoint", image, fov=60), backend.run("checkpoint", image, fov=80)
    assert len(calls) == 1 and second.npy == first.npy and second.glb != first.glb
    assert not np.array_equal(read_glb(first.glb)[0], read_glb(second.glb)[0])  # the mesh did change
    image.write_bytes(image.read_bytes())  # the same name, a new file: predicted again
    os.utime(image, ns=(0, os.stat(image).st_mtime_ns + 10**9))
    backend.run("checkpoint", image, fov=80)
    assert len(calls) == 2


def svde_predict_stub(rgb):
    return np.log(1.0 + np.linspace(0.1, 1.0, rgb.shape[0] * rgb.shape[1], dtype=np.float32)).reshape(rgb.shape[:2])


def test_mesh_of_a_large_photo_is_bounded(tmp_path):
    from svde.cli.demo_app import MESH_MAX_SIDE, demo_mesh

    log_disp = np.zeros((900, 1600), np.float32)
    mesh = demo_mesh(log_disp, np.zeros((900, 1600, 3), np.uint8), 60)
    assert len(mesh.vertices) == MESH_MAX_SIDE * round(900 * MESH_MAX_SIDE / 1600)


def test_without_weights_the_backend_says_what_to_do(tmp_path, monkeypatch):
    from svde.cli import demo_app
    from svde.errors import UserError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert demo_app.cached_released() == []
    with pytest.raises(UserError, match="svde predict --model b5_lrn4 photo.jpg.*--checkpoint"):
        demo_app.DemoBackend([], workdir=tmp_path / "w").run("", photo(tmp_path / "p.png"))


def test_demo_starts_offline_without_weights_on_localhost(tmp_path, monkeypatch, capsys):
    """No weights anywhere and the release unreachable: it starts anyway, on 127.0.0.1, and says
    (here and in the page) what to do; gradio's launch is replaced by a recorder."""
    gr = pytest.importorskip("gradio")
    pytest.importorskip("trimesh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed: connections are refused
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SVDE_WEIGHTS_URL", f"http://127.0.0.1:{port}/v1.0")
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs, blocks=self))
    assert main(["demo", "--port", "0"]) == 0  # nothing at all
    err = capsys.readouterr().err
    assert "No weights to run" in err and launched["server_name"] == "127.0.0.1" and launched["server_port"] > 0
    assert main(["demo", "--model", "mn_lrn4", "--port", "0", "--host", "0.0.0.0"]) == 0  # not downloadable
    err = capsys.readouterr().err
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "mn_lrn4.pth") in err and "No weights to run" in err
    assert launched["server_name"] == "0.0.0.0"
    page = json.dumps(launched["blocks"].config)
    assert "No weights to run" in page and "mn_lrn4 (released)" in page


def test_demo_options_are_checked_before_anything_starts(capsys):
    assert main(["demo", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err
    assert main(["demo", "--official", "x.pth"]) == 2  # argparse: an authors' file needs --model
    assert "--model NAME" in capsys.readouterr().err


def test_demo_without_trimesh_says_so_before_serving(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "trimesh", None)  # as if not installed
    assert main(["demo", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "trimesh is missing" in err and "pip install 'svde[demo]'" in err


# ---- the app in a real browser ---------------------------------------------------------------------
@pytest.fixture
def demo_server(tmp_path, mn_checkpoint):
    """``svde demo --checkpoint`` as its own process on a free port of 127.0.0.1: its URL."""
    need(importlib.util.find_spec("gradio") is not None, "gradio is not installed (pip install -e '.[dev]')")
    need(importlib.util.find_spec("selenium") is not None, "selenium is not installed (pip install -e '.[dev]')")
    need(CHROMIUM is not None and CHROMEDRIVER is not None,
         "no headless browser: apt-get install chromium chromium-driver (.ci/run does)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TORCH_HOME": str(tmp_path / "torch"),
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "svde", "demo", "--checkpoint", str(mn_checkpoint),
                             "--port", str(port), "--device", "cpu", "--threads", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180  # importing gradio takes a while on a busy 2-core machine
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"svde demo exited with {proc.returncode}:\n{(tmp_path / 'demo.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"svde demo did not answer at {url} in 180 s:\n{(tmp_path / 'demo.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium (Debian's, with its chromedriver), downloading into ``tmp_path/downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # WebGL for the 3D view without a GPU: SwiftShader, which Chromium no longer falls back to unasked
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--window-size=1300,1700", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def canvas_variation(driver, element) -> float:
    """Grey-level standard deviation of an element's screenshot (0: blank)."""
    png = np.frombuffer(element.screenshot_as_png, np.uint8)
    return float(cv2.imdecode(png, cv2.IMREAD_GRAYSCALE).std())


def test_demo_in_a_real_browser(tmp_path, mn_checkpoint, demo_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    image = photo(tmp_path / "room.png")
    browser.get(demo_server)
    wait = WebDriverWait(browser, 120, poll_frequency=0.5)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
    upload.send_keys(str(image))
    # the depth image, decoded and shown
    depth = wait.until(lambda d: next((img for img in d.find_elements(By.CSS_SELECTOR, "#depth img")
                                       if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                           img)), None))
    assert browser.execute_script("return arguments[0].naturalWidth", depth) == 160
    # the 3D view: a canvas that shows something other than its background
    canvas = wait.until(lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#model3d canvas")), None))
    wait.until(lambda d: canvas_variation(d, canvas) > 5)
    # the .npy, downloaded by clicking its link
    link = wait.until(lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, '#downloads a[download$=".npy"]')), None))
    names = [a.get_attribute("download") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
    assert names == ["room.log_disparity.npy", "room.mesh.ply", "room.glb"]
    link.click()
    target = browser.downloads / "room.log_disparity.npy"
    WebDriverWait(browser, 30, poll_frequency=0.2).until(
        lambda d: target.is_file() and not list(browser.downloads.glob("*.crdownload")))
    np.testing.assert_allclose(np.load(target), svde_predict(mn_checkpoint, image, tmp_path / "pred"), atol=1e-5)
    # nothing left the machine: every request the page made went to the demo itself
    requests = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
    outside = sorted(u for u in urls if not u.startswith((demo_server, "data:", "blob:")))
    assert any(u.startswith(demo_server + "gradio_api/file=") for u in urls) and not outside, outside
    print(f"browser part: {time.monotonic() - started:.1f} s")
