"""svde: light-weight geometry-preserving single-view depth estimation."""
