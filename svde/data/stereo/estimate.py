"""One entry point for disparity: :func:`estimate_disparity` and the :data:`MATCHERS` registry.

Each matcher is a function ``(left, right, settings, device) -> (disparity, valid)`` over a
rectified uint8 RGB pair of one size; it returns the left view's disparity in pixels (float32,
larger = closer, ``x_right = x_left - d``, 0 where invalid) and a boolean validity mask.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> right = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    >>> disp, valid = estimate_disparity(np.roll(right, 8, axis=1), right, "sgbm", StereoSettings(num_disparities=16))
    >>> float(np.median(disp[valid])), disp.dtype, valid.dtype
    (8.0, dtype('float32'), dtype('bool'))
    >>> estimate_disparity(right, right, "psmnet")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    UnknownName: unknown matcher 'psmnet'; valid matchers: raft, sgbm
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from svde.data.stereo.matching import StereoSettings, check_pair, sgbm_disparity
from svde.data.stereo.raft import raft_disparity
from svde.errors import UnknownName

Matcher = Callable[[np.ndarray, np.ndarray, StereoSettings, str], "tuple[np.ndarray, np.ndarray]"]
MATCHERS: dict[str, Matcher] = {
    "sgbm": sgbm_disparity,  # OpenCV semi-global matching + left-right check (classical, offline)
    "raft": raft_disparity,  # torchvision RAFT flow both ways, as the paper (§4.3.3); weights opt-in
}


def matcher_function(name: str) -> Matcher:
    """The matcher registered as ``name`` (an unknown name lists the valid ones)."""
    if name not in MATCHERS:
        raise UnknownName(f"unknown matcher {name!r}; valid matchers: {', '.join(sorted(MATCHERS))}")
    return MATCHERS[name]


def estimate_disparity(left: np.ndarray, right: np.ndarray, matcher: str = "sgbm",
                       settings: StereoSettings | None = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Left-view disparity (float32 px, 0 where invalid) and its validity mask (bool), both (H, W).

    ``left``/``right``: rectified uint8 (H, W, 3) RGB views of one size. ``matcher``: a name of
    :data:`MATCHERS`; ``settings``: its search range and filters (:class:`StereoSettings`);
    ``device``: where ``raft`` runs.
    """
    function = matcher_function(matcher)
    settings = (settings or StereoSettings()).check()
    check_pair(left, right)
    return function(left, right, settings, device)
