"""The ``raft`` matcher: torchvision's RAFT optical flow as stereo disparity (the paper, §4.3.3).

Being written (issue 16); see :func:`raft_disparity` for the contract.
"""

from __future__ import annotations

import numpy as np

from svde.data.stereo.matching import StereoSettings
from svde.errors import RunFailed


def raft_disparity(left: np.ndarray, right: np.ndarray, settings: StereoSettings,
                   device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Left-view disparity and validity from RAFT flow left->right and right->left."""
    raise RunFailed("the raft matcher is not available yet")
