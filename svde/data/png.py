"""PNG decoding with imagecodecs, where it gives exactly what OpenCV gives, faster.

Decoding is most of a training sample's time on PNG datasets (NYUv2, KITTI, TUM, DIML: an RGB
and a 16-bit depth PNG each). imagecodecs (https://github.com/cgohlke/imagecodecs) ships its own
build of libpng with a faster zlib (zlib-ng): on this project's 2-core machine it takes 23 %
less time than ``cv2.imdecode`` over the 23 real PNGs in ``../shared/data/real`` (KITTI 23 %,
Scene Flow 36 %, NYUv2 and TUM 4-9 %; ``docs/benchmarks.md``). :func:`decode_png` takes only
the kinds whose pixels are certain to match OpenCV's ``IMREAD_UNCHANGED`` / ``IMREAD_COLOR_RGB``
reading (the PNG specification, https://www.w3.org/TR/png/: IHDR, tRNS, IEND; APNG's acTL):
8-bit RGB (colour type 2) in RGB order, and 8- or 16-bit greyscale (colour type 0), without a
tRNS (transparency) or acTL (animation) chunk, ending with IEND. Everything else, and any file
it cannot decode, is left to OpenCV (None). ``tests/test_png.py`` checks the match on every PNG
in ``../shared`` and on each PNG kind.

Example:
    >>> import cv2
    >>> buf = cv2.imencode(".png", np.arange(12, dtype=np.uint16).reshape(3, 4))[1]
    >>> out = decode_png(buf, rgb=False)
    >>> out is None or out.tolist() == np.arange(12).reshape(3, 4).tolist()
    True
"""

from __future__ import annotations

import numpy as np

try:  # a dependency; OpenCV decodes everything when it is missing
    import imagecodecs
except ImportError:  # pragma: no cover - depends on the installation
    imagecodecs = None

__all__ = ["decode_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last chunk: no data, and its CRC


def _plain_kind(buf: np.ndarray) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` from IHDR when the file ends with its IEND chunk (OpenCV refuses
    a file cut before it) and no tRNS (transparency) or acTL (animation: OpenCV may show its first
    frame instead of the default image) chunk precedes the first IDAT; else None."""
    data = buf.data
    if buf.size < 45 or bytes(data[:8]) != SIGNATURE or bytes(data[12:16]) != b"IHDR" or bytes(data[-12:]) != IEND:
        return None
    at = 8
    while at + 8 <= buf.size:  # chunks: 4-byte big-endian length, 4-byte type, data, 4-byte CRC
        length, kind = int.from_bytes(data[at:at + 4], "big"), bytes(data[at + 4:at + 8])
        if kind in (b"tRNS", b"acTL"):
            return None
        if kind == b"IDAT":
            return int(buf[24]), int(buf[25])
        at += 12 + length
    return None


def decode_png(buf: np.ndarray, rgb: bool) -> np.ndarray | None:
    """The pixels of the PNG in ``buf`` (uint8 bytes) when it is an 8-bit RGB one and ``rgb``
    (uint8 (H, W, 3), RGB order) or an 8/16-bit greyscale one (uint8/uint16 (H, W)); None for
    anything else (other kinds, a corrupt file, no imagecodecs): decode it with OpenCV then."""
    if imagecodecs is None:
        return None
    kind = _plain_kind(buf)
    if kind not in ((8, 2), (8, 0), (16, 0)) or (kind[1] == 2) != rgb:
        return None
    try:
        out = imagecodecs.png_decode(buf)
    except Exception:  # noqa: BLE001 - imagecodecs' own error classes: OpenCV decodes it or names the problem
        return None
    expected = (np.uint16 if kind[0] == 16 else np.uint8, 3 if kind[1] == 2 else 2)
    return out if (out.dtype, out.ndim) == expected and (out.ndim == 2 or out.shape[2] == 3) else None
