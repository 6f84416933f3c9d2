"""One prediction (issue 24, item 2): ``infer_image``, ``svde.api.predict`` and ``svde predict`` give
the same output for a photo with their default options (the paper's 384 px shorter side), accept
PIL images and BGR arrays, and a 12 MP photo costs what the working size costs."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from svde.api import predict as api_predict
from svde.cli.main import main
from svde.data.io import read_image, write_rgb
from svde.models import save_checkpoint


def photo(h=150, w=200, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def test_infer_image_api_and_command_agree_with_default_options(tmp_path, mn_model):
    write_rgb(tmp_path / "photo.png", photo())
    rgb = read_image(tmp_path / "photo.png")
    ckpt = save_checkpoint(tmp_path / "m.pt", mn_model)
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "photo.png"), "--out", str(tmp_path / "out"),
                 "--no-vis"]) == 0
    command = np.load(tmp_path / "out" / "photo.log_disparity.npy")
    api = api_predict(mn_model, rgb)
    method = mn_model.infer_image(rgb, domain="log_disparity")
    assert command.shape == api.shape == method.shape == rgb.shape[:2]
    assert np.abs(command - api).max() <= 1e-5 and np.abs(method - api).max() <= 1e-5
    # infer_image's default domain is depth: the same prediction, converted
    np.testing.assert_allclose(mn_model.infer_image(rgb), np.exp(-api), rtol=1e-5)
    # The default is the paper's evaluation size, not the photo's: native differs, and only on request.
    native = api_predict(mn_model, rgb, short_side=None)
    assert np.abs(native - api).max() > 1e-3


def test_pil_images_and_bgr_arrays_are_the_same_photo(mn_model):
    rgb = photo(90, 120, seed=1)
    ref = mn_model.infer_image(rgb)
    assert np.array_equal(mn_model.infer_image(Image.fromarray(rgb)), ref)
    assert np.array_equal(mn_model.infer_image(Image.fromarray(rgb).convert("RGBA")), ref)
    bgr = rgb[..., ::-1].copy()
    assert np.array_equal(mn_model.infer_image(bgr, bgr=True), ref)
    assert np.array_equal(mn_model.infer_bgr(bgr), ref)
    assert not np.array_equal(mn_model.infer_image(bgr), ref)  # channel order matters


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8, 3), np.uint16), "uint8 image .* or a float one in \\[0, 1\\], got uint16"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((8, 8), np.uint8), "expected an RGB image"),
])
def test_odd_inputs_get_a_message_that_says_what_is_wrong(mn_model, bad, match):
    from svde.errors import UserError

    with pytest.raises(UserError, match=match):
        mn_model.infer_image(bad)


def test_a_12_megapixel_photo_costs_the_working_size(tmp_path):
    code = """
import resource, numpy as np
from svde.models import build_model
m = build_model("mn_lrn4").eval()
rgb = np.empty((3000, 4000, 3), np.uint8); rgb[:] = 90; rgb[::5] = 200
m.infer_image(np.zeros((64, 64, 3), np.uint8))  # warm-up: the inference snapshot is built once
rss = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
out = m.infer_image(rgb)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(out.shape, (peak - rss) / 2**20)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    shape, used_mb = res.stdout.strip().rsplit(" ", 1)
    assert shape == "(3000, 4000)"
    assert float(used_mb) < 1024, f"one 12 MP prediction used {used_mb} MB"


def test_a_float_photo_is_not_changed_by_predicting_it(mn_model):
    """normalize_image used to normalise a contiguous float32 photo in place (torch.from_numpy shares memory)."""
    rgb = photo(40, 50).astype(np.float32) / 255.0
    keep = rgb.copy()
    mn_model.infer_image(rgb)
    assert np.array_equal(rgb, keep)
