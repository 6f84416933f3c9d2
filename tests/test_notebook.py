"""notebooks/explore_predictions.ipynb executes headless (random mn_lrn4 weights, synthetic data)."""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_predictions.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_executes(tmp_path, monkeypatch):
    # The defaults: random weights, no image folder (the kernel inherits this environment).
    for var in ("SVDE_CHECKPOINT", "SVDE_OFFICIAL", "SVDE_MODEL", "SVDE_IMAGES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # The kernel is this interpreter (the venv's ipykernel), not some other Python on the machine.
    assert f"python {sys.executable}," in text
    assert "mn_lrn4 from random weights" in text and "delta1_err" in text and " mean | " in text
    assert "points ->" in text and "3 images in" in text
    figures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(figures) == 3
