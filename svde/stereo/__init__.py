"""Stereo footage -> UTSS training data (issue 16): disparity estimation with consistency
filtering (:mod:`svde.stereo.matching`), frame sources (:mod:`svde.stereo.sources`), the
preparation pipeline writing the ``stereo_folder`` layout (:mod:`svde.stereo.pipeline`), and
exact-ground-truth synthetic pairs (:mod:`svde.stereo.synthetic`). See docs/stereo.md.
"""

from svde.stereo.matching import MATCHERS, StereoSettings, estimate_disparity

__all__ = ["MATCHERS", "StereoSettings", "estimate_disparity"]
