"""The ``svde demo`` web app: its back end (:class:`DemoBackend`: models, prediction, files) and its
Gradio page (:func:`build_app`).

The back end has no Gradio in it, so it is tested without a browser; the page is tested in a
real headless browser (tests/test_demo.py). For a photo it gives:

* the colour depth (log-disparity, near = bright, 2nd..98th percentile: ``svde predict``'s
  ``.vis.png``) and a slider comparing it with the photo;
* ``<name>.log_disparity.npy``: the prediction, exactly ``svde predict``'s for the same file
  (the photo is read from the uploaded file with :func:`svde.data.io.read_image` and predicted
  at the same short side, 384 px by default);
* ``<name>.mesh.ply`` and ``<name>.glb``: the coloured triangle mesh that does not join across
  depth jumps (:func:`svde.geometry.depth_to_mesh`), from the depth at most
  :data:`MESH_MAX_SIDE` px a side and a horizontal field of view (depth up to scale: divided by
  its median, so the scene sits about one unit from the camera). The PLY is in the camera frame
  (x right, y down, z forward, as ``svde predict --mesh``); the GLB in glTF's (y up, the camera
  looking down -z: y and z flipped, a rotation, so the triangles keep their winding), written
  with trimesh (vertex colours as ``COLOR_0``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svde.atomic import write_bytes
from svde.data.io import read_image, write_mesh_ply, write_npy, write_rgb
from svde.errors import UserError
from svde.geometry import depth_to_mesh, intrinsics_from_fov
from svde.models.prediction import convert_domain, predict
from svde.models.released import RELEASED, released_entry
from svde.preprocess import EVAL_SHORT_SIDE
from svde.viz import colorize

log = logging.getLogger(__name__)
MESH_MAX_SIDE = 384  # px: the mesh's depth map (a 12 MP photo would give a 24 M triangle mesh)
DEFAULT_FOV = 60.0
HEIGHT = 320  # px: each picture of the page
GLTF_FROM_CAMERA = np.array([1.0, -1.0, -1.0], np.float32)  # x right, y down, z forward -> y up, -z forward
INSTALL_HINT = "pip install 'svde[demo]'"


def no_weights_message() -> str:
    """What to do when no model can be offered (offline, nothing cached, no checkpoint given)."""
    cache = released_entry("mn_lrn4").cache_path.parent
    return ("No weights to run: none of the released models is in the cache and no checkpoint was given. "
            "Either run once online `svde predict --model b5_lrn4 photo.jpg` (or any released name: "
            f"{', '.join(RELEASED)}), which downloads the weights into `{cache}`; or copy a release file "
            f"(e.g. `b5_lrn4.pth` from GitHub release v1.0 of saic-vul/geometry-preserving-de) into that folder; "
            "or start the demo with your own model: `svde demo --checkpoint runs/NAME/best.pt`.")


@dataclass
class Choice:
    """One entry of the model dropdown: its label and what :func:`svde.load` takes."""

    label: str
    source: str
    model: str | None = None  # with an authors' file (--official)


def cached_released() -> list[str]:
    """Released model names whose weights are in torch.hub's cache (usable offline)."""
    return [name for name in RELEASED if released_entry(name).cache_path.is_file()]


@dataclass
class Result:
    """One prediction's outputs: the photo and its colour depth (RGB uint8), the log-disparity, and
    the files (npy, ply, glb) in a folder of their own."""

    photo: np.ndarray
    colour: np.ndarray
    log_disparity: np.ndarray
    npy: Path
    ply: Path
    glb: Path
    vertices: int
    faces: int


@dataclass
class DemoBackend:
    """Models by dropdown label (loaded on first use, kept), and the prediction of one photo."""

    choices: list[Choice]
    device: str = "cpu"
    short_side: int | None = EVAL_SHORT_SIDE
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="svde-demo-")))
    _models: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0
    # (model, photo file, its mtime) -> (rgb, log-disparity, its colour picture, .npy): a new field of view re-meshes only
    _last: tuple | None = None

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.choices]

    def model(self, label: str) -> Any:
        """The network of dropdown entry ``label`` (errors: one line, e.g. the released weights are
        not downloaded and the machine is offline)."""
        from svde.models.loading import load

        choice = next((c for c in self.choices if c.label == label), None)
        if choice is None:
            raise UserError(no_weights_message() if not self.choices else f"unknown model {label!r}")
        with self._lock:
            if label not in self._models:
                self._models[label] = load(choice.source, device=self.device, model=choice.model)
            return self._models[label]

    def run(self, label: str, photo: str | os.PathLike, fov: float = DEFAULT_FOV) -> Result:
        """Predict ``photo`` (a file) with model ``label``; write the downloads."""
        if not photo:
            raise UserError("drop a photo first")
        if not (np.isfinite(fov) and 0 < fov < 180):
            raise UserError(f"the horizontal field of view must be in (0, 180) degrees, got {fov:g}")
        key = (label, str(photo), os.stat(photo).st_mtime_ns)
        with self._lock:
            self._count += 1
            folder, last = self.workdir / f"{self._count:04d}", self._last
        stem = Path(photo).stem or "photo"
        if last is not None and last[0] == key:  # only the field of view changed: re-mesh the same prediction
            _, rgb, log_disp, colour, npy = last
        else:
            net = self.model(label)
            rgb = read_image(photo)
            log_disp = predict(net, rgb, short_side=self.short_side)
            colour = colorize(log_disp)
            npy = write_npy(folder / f"{stem}.log_disparity.npy", log_disp)
            with self._lock:
                self._last = (key, rgb, log_disp, colour, npy)
        mesh = demo_mesh(log_disp, rgb, fov)
        ply = write_mesh_ply(folder / f"{stem}.mesh.ply", mesh.vertices, mesh.faces, mesh.colors)
        glb = write_bytes(folder / f"{stem}.glb", glb_bytes(mesh.vertices, mesh.faces, mesh.colors))
        return Result(rgb, colour, log_disp, npy, ply, glb, len(mesh.vertices), len(mesh.faces))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def demo_mesh(log_disparity: np.ndarray, rgb: np.ndarray, fov: float, max_side: int = MESH_MAX_SIDE) -> Any:
    """The no-jump mesh (:func:`svde.geometry.depth_to_mesh`) of a prediction, at most ``max_side`` px
    a side (depth resized by nearest neighbour, so no vertex lies between two surfaces), depth divided
    by its median, camera from the horizontal field of view ``fov``."""
    depth = convert_domain(log_disparity, "depth").astype(np.float64)
    h, w = depth.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    if size != (w, h):
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    depth = depth / np.median(depth)
    return depth_to_mesh(depth, intrinsics_from_fov(size[0], size[1], fov), rgb)


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> bytes:
    """A binary glTF 2.0 (GLB) of a camera-frame mesh, in glTF's frame (see the module docstring)."""
    try:
        import trimesh
    except ImportError:
        raise UserError(f"the 3D view needs trimesh: {INSTALL_HINT}") from None
    rgba = None if colors is None else np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(vertices * GLTF_FROM_CAMERA, faces, vertex_colors=rgba, process=False)
    return mesh.export(file_type="glb")


# ---- the page -----------------------------------------------------------------------------------
def build_app(backend: DemoBackend, status: str = "", fov: float = DEFAULT_FOV) -> Any:
    """The Gradio Blocks of the demo (``status``: a line shown above it, e.g. why no model loads)."""
    import gradio as gr

    def run(label: str | None, photo: str | None, fov_deg: float) -> tuple:
        if photo is None:
            return None, None, None, None, ""
        try:
            r = backend.run(label or "", photo, float(fov_deg))
        except Exception as exc:  # noqa: BLE001 - shown in the page, one line
            raise gr.Error(str(exc)) from None
        info = (f"{r.photo.shape[1]}x{r.photo.shape[0]} px, predicted at short side {backend.short_side or 'native'}; "
                f"log-disparity {r.log_disparity.min():.3f}..{r.log_disparity.max():.3f} (up to scale); "
                f"mesh {r.vertices} vertices, {r.faces} triangles")
        return r.colour, (r.photo, r.colour), str(r.glb), [str(r.npy), str(r.ply), str(r.glb)], info

    with gr.Blocks(title="svde demo", analytics_enabled=False) as app:
        gr.Markdown("## svde: depth from one photo\nDrop a photo: its depth in colour (near = bright), "
                    "compared with the photo, as a 3D mesh, and as files.")
        if status:
            gr.Markdown(status, elem_id="status")
        with gr.Row():
            model = gr.Dropdown(backend.labels, value=backend.labels[0] if backend.labels else None, label="model",
                                elem_id="model", interactive=bool(backend.labels))
            fov_slider = gr.Slider(10, 150, value=fov, step=1, label="horizontal field of view (degrees), for the mesh",
                                   elem_id="fov")
        with gr.Row():
            photo = gr.Image(type="filepath", image_mode=None, label="photo", sources=["upload", "clipboard"],
                             elem_id="photo", height=HEIGHT)
            depth = gr.Image(type="numpy", format="png", label="depth (near = bright)", interactive=False,
                             elem_id="depth", height=HEIGHT)
        with gr.Row():
            compare = gr.ImageSlider(type="numpy", label="photo | depth", interactive=False, elem_id="compare",
                                     height=HEIGHT)
            # (90, 90): Babylon's arc-rotate camera on the glTF +z side, i.e. where the photo was taken
            view = gr.Model3D(label="3D (the mesh, GLB; drag to turn)", interactive=False, elem_id="model3d",
                              clear_color=(0.95, 0.95, 0.95, 1.0), camera_position=(90, 90, None), height=HEIGHT)
        info = gr.Markdown(elem_id="info")
        files = gr.File(file_count="multiple", label="downloads: .npy (log-disparity), .ply and .glb (mesh)",
                        interactive=False, elem_id="downloads")
        outputs = [depth, compare, view, files, info]
        photo.upload(run, [model, photo, fov_slider], outputs)
        gr.on([model.change, fov_slider.release], run, [model, photo, fov_slider], outputs)
    return app


def offline_theme() -> Any:
    """Gradio's default theme with the system's fonts (the default fetches Google Fonts)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])
