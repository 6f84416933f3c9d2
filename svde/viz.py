"""Visualisation: colour maps for depth, disparity and error maps.

Example:
    >>> import numpy as np
    >>> colorize(np.arange(12, dtype=np.float32).reshape(3, 4)).shape
    (3, 4, 3)
"""

from __future__ import annotations

import functools

import numpy as np


def colorize(values: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0), cmap: str = "magma",
             invert: bool = False, mask: np.ndarray | None = None,
             value_range: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB visualisation, clipped to robust percentiles of the valid values.

    Args:
        values: (H, W) float array.
        percentiles: the low/high percentiles mapped to the ends of the colour map, so a few
            extreme pixels do not wash out the picture.
        cmap: a matplotlib colour map name.
        invert: flip the map (e.g. for depth, so that near is bright as for disparity).
        mask: pixels to use for the percentiles and to draw; the others are black.
        value_range: the (low, high) values mapped to the ends instead of the percentiles (one
            scale for many pictures, e.g. every frame of a video).

    Example:
        >>> colorize(np.arange(12, dtype=np.float32).reshape(3, 4)).shape
        (3, 4, 3)
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values) if mask is None else (np.asarray(mask, bool) & np.isfinite(values))
    if value_range is not None:
        lo, hi = value_range
    else:
        lo, hi = np.percentile(values[valid], percentiles) if valid.any() else (0.0, 1.0)
    scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(values)
    if invert:
        scaled = 1.0 - scaled
    # matplotlib's own lookup for floats in [0, 1] (Colormap.__call__): entry int(x * N), the last for x == 1
    table = _colour_table(cmap)
    index = np.minimum((np.where(valid, scaled, 0.0) * len(table)).astype(np.intp), len(table) - 1)
    rgb = table[index]
    rgb[~valid] = 0
    return rgb


@functools.lru_cache(maxsize=None)
def _colour_table(cmap: str) -> np.ndarray:
    """The uint8 RGB entries of matplotlib's colour map ``cmap`` (its N-entry lookup table,
    rounded): indexing it is what ``matplotlib.colormaps[cmap](x)`` computes for x in [0, 1]."""
    import matplotlib  # lazily: only visualisation needs it

    colours = matplotlib.colormaps[cmap]
    return (colours(np.arange(colours.N))[:, :3] * 255.0).round().astype(np.uint8)
