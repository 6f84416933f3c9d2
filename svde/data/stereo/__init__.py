"""Stereo footage -> UTSS training data (the paper's "3D Movies" source, §4.3.3; docs/stereo.md).

* :mod:`svde.data.stereo.estimate`: :func:`estimate_disparity` and the matcher registry
  (``sgbm`` in :mod:`~svde.data.stereo.matching`, ``raft`` in :mod:`~svde.data.stereo.raft`);
* :mod:`svde.data.stereo.sources`: frames from pair folders and 3D videos;
* :mod:`svde.data.stereo.pipeline`: the resumable, shardable preparation into ``stereo_folder``;
* :mod:`svde.data.stereo.midas` and :mod:`svde.data.stereo.shots`: MiDaS' 3D-movie acquisition
  (lasinger/3DVideos2Stereo) step by step, ``--preset midas``: its frame filter, storage, sky,
  FFmpeg's scene score and clip sampling;
* :mod:`svde.data.stereo.synthetic`: rectified synthetic pairs with exact disparity.
"""

from svde.data.stereo.estimate import MATCHERS, estimate_disparity
from svde.data.stereo.matching import StereoSettings

__all__ = ["MATCHERS", "StereoSettings", "estimate_disparity"]
