#!/usr/bin/env python
"""The README's pictures of ``svde predict VIDEO``, ``svde demo`` and ``prepare-stereo``'s previews,
made from the built-in synthetic scenes (nothing downloaded, no dataset copied):

    python docs/make_figures.py --checkpoint runs/poc/synthetic_batch/p100_mixture_s0/last.pt --short-side 128

* ``docs/video.png``: three frames of ``svde predict clip.mp4 --side-by-side`` on a synthetic clip
  (a camera moving through a room);
* ``docs/demo.png``: ``svde demo`` in headless Chromium after a photo was dropped (needs
  ``svde[demo]``, Selenium and Chromium with its driver, as tests/test_demo.py);
* ``docs/stereo_preview.png``: ``preview/contact_sheet.jpg`` of ``svde prepare-stereo`` on five
  synthetic pairs, two of them bad (the same view twice; the right view 4 rows lower).

Any checkpoint will do; the pictures in the repository come from the command above: the
proof of concept's ``mn_lrn4`` trained for 1200 steps at 64x96 on the synthetic rooms
(``python scripts/experiments/poc.py --config configs/poc/synthetic.yaml``), a toy, so its depth is
rough; ``--short-side 128`` is nearer the size it was trained at. ``--only video demo stereo``
makes some of them. Each PNG is reduced to at most 256 colours (96 for the contact sheet) to stay small.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def save_png(path: Path, rgb: np.ndarray, colours: int = 256) -> None:
    """An RGB picture as a PNG of at most ``colours`` colours (small enough to commit)."""
    from PIL import Image

    Image.fromarray(rgb).quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True)
    print(f"{path.relative_to(REPO)}: {rgb.shape[1]}x{rgb.shape[0]}, {path.stat().st_size // 1024} KB")


def svde(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "svde", *argv], check=True, cwd=REPO)


def video_figure(checkpoint: Path, short_side: int, work: Path) -> None:
    from svde.data.stereo.synthetic import synthetic_pair

    h, w, fps = 180, 240, 12.0
    clip = work / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for t in range(24):
        view = synthetic_pair(3, h, w, tile_scale=None, move=0.03 * t)["left"]
        writer.write(cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    writer.release()
    svde("predict", "--checkpoint", str(checkpoint), str(clip), "--side-by-side", "--short-side", str(short_side),
         "--out", str(work / "video"))
    cap = cv2.VideoCapture(str(work / "video" / "clip.depth.mp4"))
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    gap = np.full((4, 2 * w, 3), 255, np.uint8)
    rows = [part for i in (0, 12, 23) for part in (frames[i], gap)][:-1]
    save_png(DOCS / "video.png", np.vstack(rows))


def stereo_figure(work: Path) -> None:
    from svde.data.io import write_rgb
    from svde.data.stereo.synthetic import synthetic_pair

    pairs = work / "pairs"
    for i in range(3):
        p = synthetic_pair(i, 180, 240, 0.1)
        write_rgb(pairs / "left" / f"room{i}.png", p["left"])
        write_rgb(pairs / "right" / f"room{i}.png", p["right"])
    p = synthetic_pair(3, 180, 240, 0.1)
    write_rgb(pairs / "left" / "room3_mono.png", p["left"])
    write_rgb(pairs / "right" / "room3_mono.png", p["left"])
    write_rgb(pairs / "left" / "room4_shifted.png", p["left"])
    write_rgb(pairs / "right" / "room4_shifted.png", np.roll(p["right"], 4, axis=0))
    svde("prepare-stereo", str(pairs), "--out", str(work / "stereo"), "--no-progress")
    sheet = cv2.cvtColor(cv2.imread(str(work / "stereo" / "preview" / "contact_sheet.jpg")), cv2.COLOR_BGR2RGB)
    save_png(DOCS / "stereo_preview.png", sheet, colours=96)


def demo_figure(checkpoint: Path, short_side: int, work: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from svde.data.io import write_rgb
    from svde.data.synthetic import render, sample_scene

    photo = work / "room.png"
    write_rgb(photo, render(sample_scene(np.random.default_rng([2, 11]), 384, 512), 384, 512)["image"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(work / "gradio"),
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    server = subprocess.Popen([sys.executable, "-m", "svde", "demo", "--checkpoint", str(checkpoint), "--port", str(port),
                               "--short-side", str(short_side), "--device", "cpu"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--window-size=1100,1500"):
        options.add_argument(arg)
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 120)
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]")).send_keys(str(photo))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#downloads a[download$=".glb"]'))
            time.sleep(5)  # the 3D view loads its GLB
            shot = cv2.imdecode(np.frombuffer(driver.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
            bottom = driver.find_element(By.CSS_SELECTOR, "#downloads").rect
            shot = shot[:int(bottom["y"] + bottom["height"]) + 16]
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    shot = cv2.resize(shot, (880, round(shot.shape[0] * 880 / shot.shape[1])), interpolation=cv2.INTER_AREA)
    save_png(DOCS / "demo.png", cv2.cvtColor(shot, cv2.COLOR_BGR2RGB))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a project checkpoint (svde.load)")
    parser.add_argument("--short-side", type=int, default=384, help="the network's shorter side (default: 384)")
    parser.add_argument("--only", nargs="+", choices=("video", "demo", "stereo"), default=("video", "demo", "stereo"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="svde-figures-") as tmp:
        work = Path(tmp)
        if "video" in args.only:
            video_figure(args.checkpoint.resolve(), args.short_side, work)
        if "stereo" in args.only:
            stereo_figure(work)
        if "demo" in args.only:
            demo_figure(args.checkpoint.resolve(), args.short_side, work)


if __name__ == "__main__":
    main()
