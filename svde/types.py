"""The one vocabulary for what a depth target means (paper §3, Table 1).

``DepthType`` is a ``str`` enum, so its members compare equal to the plain names used in YAML
configs and sample dicts (``DepthType.UTS == "uts"``).

* ``absolute``: metric depth (sensor, calibrated stereo).
* ``uts``: depth up to an unknown scale (SfM, stereo with unknown baseline).
* ``utss``: disparity (inverse depth) up to an unknown scale and shift (unaligned stereo).
* ``ordinal``: relative order of point pairs only (DIW-style annotations).

Example:
    >>> DepthType("uts") in SCALE_INVARIANT, DepthType.UTSS.is_disparity
    (True, True)
    >>> DepthType.parse("metric")
    Traceback (most recent call last):
    ...
    svde.errors.UnknownName: unknown depth type 'metric'; valid depth types: absolute, uts, utss, ordinal
"""

from __future__ import annotations

from enum import Enum

from svde.errors import unknown_name


class DepthType(str, Enum):
    ABSOLUTE = "absolute"
    UTS = "uts"
    UTSS = "utss"
    ORDINAL = "ordinal"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:  # messages show the plain name, as in configs: 'uts'
        return repr(self.value)

    @property
    def is_disparity(self) -> bool:
        """Whether targets of this type are (relative) disparity rather than depth."""
        return self is DepthType.UTSS

    @classmethod
    def parse(cls, value: "str | DepthType") -> "DepthType":
        """``DepthType(value)``; an unknown name is an :class:`~svde.errors.UnknownName` (a
        ``ValueError`` too) that lists the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise unknown_name("depth type", value, [t.value for t in cls]) from None


# Named subsets, as ordered tuples (messages list them in this order): targets that fix depth up
# to scale (eq. 5's I_UTS gates L_SI with these), and the dense types the SI/SSI losses and the
# dense-depth loaders take.
SCALE_INVARIANT = (DepthType.ABSOLUTE, DepthType.UTS)
DENSE = (DepthType.ABSOLUTE, DepthType.UTS, DepthType.UTSS)
