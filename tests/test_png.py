"""svde.data.png: imagecodecs decodes the PNGs it takes to exactly OpenCV's pixels.

Independent reference: ``cv2.imdecode`` (svde's reader before), on every PNG in
``../shared/data/real`` (skipped without it) and on each PNG kind, written by OpenCV and Pillow.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

import svde.data.png as png
from svde.data.base import DataError
from svde.data.io import read_gray, read_image, read_png16

pytest.importorskip("imagecodecs")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _opencv(buf: np.ndarray, rgb: bool) -> np.ndarray:
    """What svde.data.io read before: IMREAD_COLOR_RGB without EXIF orientation (or the BGR decode
    turned to RGB on OpenCV < 4.10) for colour, IMREAD_UNCHANGED for greyscale."""
    if rgb and hasattr(cv2, "IMREAD_COLOR_RGB"):
        return cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb:
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION), cv2.COLOR_BGR2RGB)
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/real is absent")
def test_every_real_png_decodes_as_opencv_does():
    files = sorted(SHARED.rglob("*.png"))
    taken = 0
    for file in files:
        buf = np.fromfile(file, np.uint8)
        for rgb in (True, False):
            out = png.decode_png(buf, rgb)
            if out is not None:
                taken += 1
                expected = _opencv(buf, rgb)
                assert out.dtype == expected.dtype and np.array_equal(out, expected), file
    assert len(files) >= 10 and taken >= len(files) // 2  # the RGB and 16-bit depth frames at least


def _pil_png(array: np.ndarray, **options) -> np.ndarray:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", **options)
    return np.frombuffer(out.getvalue(), np.uint8)


def test_png_kinds():
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (9, 13), dtype=np.uint16)
    grey8 = rng.integers(0, 256, (9, 13), dtype=np.uint8)
    kinds = {  # name: (PNG bytes, rgb, whether decode_png takes it)
        "rgb8": (cv2.imencode(".png", rgb8)[1], True, True),
        "grey8": (cv2.imencode(".png", grey8)[1], False, True),
        "grey16": (cv2.imencode(".png", grey16)[1], False, True),
        "rgb8 asked as grey": (cv2.imencode(".png", rgb8)[1], False, False),
        "grey8 asked as rgb": (cv2.imencode(".png", grey8)[1], True, False),
        "rgba8": (cv2.imencode(".png", np.dstack([rgb8, grey8]))[1], True, False),
        "rgb16": (cv2.imencode(".png", rgb8.astype(np.uint16) * 257)[1], True, False),
        "palette": (np.frombuffer(_palette(rgb8), np.uint8), True, False),
        "grey8 with tRNS": (_pil_png(grey8, transparency=7), False, False),
        "1-bit": (_pil_png(grey8 > 127), False, False),
    }
    for name, (buf, rgb, taken) in kinds.items():
        out = png.decode_png(np.ascontiguousarray(buf), rgb)
        assert (out is not None) == taken, name
        if taken:
            assert np.array_equal(out, _opencv(buf, rgb)), name
    assert png.decode_png(np.frombuffer(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, np.uint8), True) is None
    whole = cv2.imencode(".png", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))[1]
    flipped = whole.copy()
    flipped[len(whole) // 2] ^= 0xFF  # a CRC error inside IDAT
    for broken in (whole[:60], whole[: len(whole) * 4 // 5], flipped, whole[:-6]):  # left to OpenCV, which refuses it
        assert png.decode_png(broken, True) is None and cv2.imdecode(broken, cv2.IMREAD_UNCHANGED) is None
    assert png.decode_png(np.frombuffer(_apng(rgb8), np.uint8), True) is None  # OpenCV may show another frame


def _apng(rgb: np.ndarray) -> bytes:
    """An animated PNG whose default image (IDAT) is not part of the animation: acTL before IDAT."""
    from PIL import Image

    out = io.BytesIO()
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:], default_image=True)
    data = out.getvalue()
    assert data.index(b"acTL") < data.index(b"IDAT")
    return data


def _palette(rgb: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).quantize(16).save(out, format="PNG")
    return out.getvalue()


def test_readers_give_the_same_arrays_with_and_without_imagecodecs(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "rgb.png"), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "d.png"), rng.integers(0, 65536, (20, 30), dtype=np.uint16))
    cv2.imwrite(str(tmp_path / "m.png"), rng.integers(0, 256, (20, 30), dtype=np.uint8))
    (tmp_path / "bad.png").write_bytes((tmp_path / "d.png").read_bytes()[:70])
    fast = (read_image(tmp_path / "rgb.png"), read_png16(tmp_path / "d.png"), read_gray(tmp_path / "m.png"))
    calls = []
    original = png.imagecodecs.png_decode
    monkeypatch.setattr(png.imagecodecs, "png_decode", lambda buf: calls.append(1) or original(buf))
    assert all(np.array_equal(a, b) for a, b in zip(fast, (read_image(tmp_path / "rgb.png"), read_png16(
        tmp_path / "d.png"), read_gray(tmp_path / "m.png")))) and len(calls) == 3  # all three went through it
    monkeypatch.setattr(png, "imagecodecs", None)
    slow = (read_image(tmp_path / "rgb.png"), read_png16(tmp_path / "d.png"), read_gray(tmp_path / "m.png"))
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    with pytest.raises(DataError, match="bad.png: cannot decode"):
        read_png16(tmp_path / "bad.png")
