"""The README's main job end to end (slow: a few minutes on 2 CPU cores; not in CI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_improves_heldout_delta1_by_30_percent(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--config",
                          str(REPO / "configs" / "quickstart.yaml"), "--out", str(tmp_path / "qs")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "run folder:" in run.stdout and "tensorboard" in run.stdout
    vals = [json.loads(line) for line in (tmp_path / "qs" / "metrics.jsonl").read_text().splitlines()]
    vals = [v for v in vals if "val_delta1_err" in v]
    assert vals[0]["step"] == 0
    assert vals[-1]["val_delta1_err"] <= 0.7 * vals[0]["val_delta1_err"]
    assert (tmp_path / "qs" / "best.pt").is_file()
