"""notebooks/explore_predictions.ipynb executes headless (synthetic data): with random mn_lrn4 weights
when no released weights are cached, with the released ones when they are."""

import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_predictions.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> str:
    """Run the notebook as CI does (the kernel inherits this environment); returns its printed text."""
    for var in ("SVDE_CHECKPOINT", "SVDE_OFFICIAL", "SVDE_MODEL", "SVDE_IMAGES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))  # the released-weights cache the notebook looks in
    monkeypatch.setenv("SVDE_WEIGHTS_URL", "http://127.0.0.1:9/unreachable")  # it must never download
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    figures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(figures) == 3
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # The kernel is this interpreter (the venv's ipykernel), not some other Python on the machine.
    assert f"python {sys.executable}," in text
    assert "delta1_err" in text and " mean | " in text and "points ->" in text and "3 images in" in text
    return text


def test_notebook_executes_with_random_weights_and_says_so(tmp_path, monkeypatch):
    text = execute(tmp_path, monkeypatch, tmp_path / "empty_torch_home")
    assert "mn_lrn4 from random weights" in text
    assert "note: the released weights of mn_lrn4 are not cached" in text and "meaningless" in text


@pytest.mark.slow
def test_notebook_uses_cached_released_weights(tmp_path, monkeypatch, official_state):
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(official_state("mn_lrn4"), cache / "mn_lrn4.pth")
    text = execute(tmp_path, monkeypatch, tmp_path / "torch")
    assert f"mn_lrn4 from the authors' released weights ({cache / 'mn_lrn4.pth'})" in text
    assert "random weights" not in text
