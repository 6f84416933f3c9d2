"""SGBM on the real rectified pairs of ../shared/data/real/stereo (Middlebury 2014 Motorcycle,
quarter size: im0/im1.png, disp0GT.pfm with inf = unknown, mask0nocc.png 255 = not occluded;
vision.middlebury.edu/stereo/data/scenes2014), scored as benchmarks/stereo.py scores it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from svde.data.stereo import estimate_disparity
from svde.data.stereo.matching import vertical_offset

REPO = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("stereo_benchmark", REPO / "benchmarks/stereo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_middlebury_non_occluded_pixels_are_kept_and_accurate(shared_dir):
    bench = _benchmark()
    pairs = {name: rest for name, *rest in bench.real_pairs(shared_dir / "data/real/stereo")}
    left, right, gt, regions = pairs["Middlebury 2014 Motorcycle"]
    assert left.shape == (497, 741, 3) and np.isfinite(gt).mean() > 0.95
    disp, valid = estimate_disparity(left, right)
    nocc = bench.score(disp, valid, gt, regions["nocc"])
    everything = bench.score(disp, valid, gt, regions["all"])
    # measured (docs/benchmarks.md): 91.0 % kept, 3.4 % D1 (non-occluded); occluded pixels have no true match
    assert nocc["kept"] >= 0.75 and nocc["d1"] <= 0.05
    assert everything["kept"] < nocc["kept"] and everything["d1"] > nocc["d1"]


def test_rectification_check_on_the_real_pair(shared_dir):
    """The rectified Middlebury views line up (median vertical offset of ORB matches ~0 px); the
    same pair with the right view 3 rows lower is caught (+3 px)."""
    bench = _benchmark()
    pairs = {name: rest for name, *rest in bench.real_pairs(shared_dir / "data/real/stereo")}
    left, right = pairs["Middlebury 2014 Motorcycle"][:2]
    assert abs(vertical_offset(left, right)) <= 0.5
    assert vertical_offset(left, np.roll(right, 3, axis=0)) == pytest.approx(3.0, abs=0.5)
