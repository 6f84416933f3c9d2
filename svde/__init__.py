"""svde: light-weight geometry-preserving single-view depth estimation."""

import os

# Stay offline by default, for the Python API as well as the scripts: albumentations checks PyPI
# for a newer release when it is first imported (a network request at import time) unless this
# variable is set. Every ``import svde.*`` runs this file first, so it is set before svde.data
# (or anything else here) imports albumentations. A user's own value is kept (``setdefault``).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.2.0"
