"""What a frame's stored disparities are shifted by, and the few wrong matches that must not set it.

Converged 3D footage has negative disparities; UTSS is shift-invariant, so each frame is stored
shifted by an integer (:func:`stored_offset`) that makes every valid value >= 1, after the few
matches far below the rest are dropped (:func:`low_outliers`).
"""

from __future__ import annotations

import numpy as np


def stored_offset(disparity: np.ndarray, valid: np.ndarray) -> float:
    """Added to a frame's stored disparities so that every valid one is >= 1 (0 when they are).

    Example:
        >>> stored_offset(np.array([-3.5, 2.0]), np.array([True, True])), stored_offset(np.array([1.0]), np.array([True]))
        (5.0, 0.0)
    """
    low = float(disparity[valid].min()) if valid.any() else 1.0
    return 0.0 if low >= 1 else float(1 - np.floor(low))


OUTLIER_PERCENTILE = 1.0


def low_outliers(disparity: np.ndarray, valid: np.ndarray, min_pixels: int = 100) -> np.ndarray:
    """Valid pixels far below the rest (bool, like ``valid``): more than ``max(1, p50 - p1)`` px
    below the 1st percentile ``p1`` of the valid disparities (``p50``: their median).

    Wrong matches a few pixels large (of the wrong sign, say) would otherwise set the frame's
    :func:`stored_offset` and, with sky masks, the sky's disparity. Robust to outliers up to 1 %
    of the valid pixels; genuine content that far behind the rest and that small is lost with them.
    Frames with fewer than ``min_pixels`` valid pixels are left as they are.

    Example:
        >>> d = np.concatenate([np.linspace(5, 20, 1000), np.full(5, -46.0)]).astype(np.float32)
        >>> int(low_outliers(d, np.ones_like(d, bool)).sum())
        5
    """
    if int(valid.sum()) < min_pixels:
        return np.zeros_like(valid)
    p1, p50 = np.percentile(disparity[valid], [OUTLIER_PERCENTILE, 50])
    fence = p1 - max(float(p50 - p1), 1.0)
    return valid & (disparity < fence)
