"""notebooks/explore_predictions.ipynb executes headless (synthetic data) as the README says: with
random mn_lrn4 weights when no released weights are cached, with the released ones when they
are, with a checkpoint named relative to the repository root; and it saves its figures."""

import os
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore_predictions.ipynb"
FIGURES = ("synthetic_predictions.png", "point_cloud.png", "your_images.png")


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_loads_through_svde_load_and_names_its_figure_folder():
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    assert "load_depth_model" not in source and "load_released" not in source
    assert "svde.load(name, pretrained=False" in source  # random weights only when asked for
    assert '"notebooks/figures"' in source
    readme = (REPO / "README.md").read_text()
    assert "notebooks/figures/" in readme and "SVDE_FIGURES" in readme
    assert "notebooks/figures/" in (REPO / ".gitignore").read_text().splitlines()


def execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_home: Path, **env: str) -> tuple[str, Path]:
    """Run the notebook as ``jupyter execute notebooks/explore_predictions.ipynb`` does (the kernel
    in notebooks/, inheriting this environment); returns its printed text and its figure folder."""
    for var in ("SVDE_CHECKPOINT", "SVDE_OFFICIAL", "SVDE_MODEL", "SVDE_IMAGES", "SVDE_FIGURES"):
        monkeypatch.delenv(var, raising=False)
    figures = tmp_path / "figures"  # not the repository's notebooks/figures/: a test leaves the clone alone
    monkeypatch.setenv("SVDE_FIGURES", str(figures))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))  # the released-weights cache the notebook looks in
    monkeypatch.setenv("SVDE_WEIGHTS_URL", "http://127.0.0.1:9/unreachable")  # it must never download
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # nbclient's `jupyter execute` runs the kernel in the notebook's folder: the same here
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    figures_shown = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(figures_shown) == 3
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # The kernel is this interpreter (the venv's ipykernel), not some other Python on the machine.
    assert f"python {sys.executable}," in text
    assert "delta1_err" in text and " mean | " in text and "points ->" in text and "3 images in" in text
    # ... and what `jupyter execute` neither shows nor keeps is on disk: the figures and the point cloud
    for name in FIGURES:
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figure -> {figures / name}" in text
    assert (figures / "synthetic_0.ply").is_file()
    assert not [p for p in figures.iterdir() if p.name.startswith(".")]  # no temporaries left behind
    return text, figures


def test_notebook_executes_with_random_weights_and_says_so(tmp_path, monkeypatch):
    text, _ = execute(tmp_path, monkeypatch, tmp_path / "empty_torch_home")
    assert "mn_lrn4 from random weights" in text
    assert "note: the released weights of mn_lrn4 are not cached" in text and "meaningless" in text


def test_notebook_reads_a_checkpoint_relative_to_the_repository_root(tmp_path, monkeypatch, mn_checkpoint):
    """``SVDE_CHECKPOINT=runs/...`` as the README writes it: relative to the root, not to notebooks/."""
    relative = os.path.relpath(mn_checkpoint, REPO)
    assert not (NOTEBOOK.parent / relative).is_file()  # the kernel's own folder would not find it
    text, _ = execute(tmp_path, monkeypatch, tmp_path / "empty_torch_home", SVDE_CHECKPOINT=relative)
    assert f"mn_lrn4 from {REPO / relative}:" in text and "random weights" not in text


@pytest.mark.slow
def test_notebook_uses_cached_released_weights(tmp_path, monkeypatch, official_state):
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(official_state("mn_lrn4"), cache / "mn_lrn4.pth")
    text, _ = execute(tmp_path, monkeypatch, tmp_path / "torch")
    assert f"mn_lrn4 from the authors' released weights ({cache / 'mn_lrn4.pth'})" in text
    assert "random weights" not in text
