"""Rectified synthetic stereo pairs with exact disparity, for testing the stereo pipeline.

The built-in rooms (:mod:`svde.data.synthetic`) carry coarse textures with flat patches that no
local matcher can resolve; :func:`synthetic_pair` gives every surface a fine random-tile texture
(``tile_scale`` metres per tile) so that matching is well posed almost everywhere, as on real
textured footage, and renders the right view ``baseline`` metres to the right.

Example:
    >>> pair = synthetic_pair(0, height=48, width=64)
    >>> pair["left"].shape, pair["disparity"].dtype
    ((48, 64, 3), dtype('float32'))
"""

from __future__ import annotations

import dataclasses

import numpy as np

from svde.data.synthetic import render_stereo, sample_scene

TILES_ONLY = np.array([0.0, 0.0, 0.0, 0.6])  # pattern weights: checker, stripes, grid, random tiles


def synthetic_pair(index: int, height: int = 96, width: int = 128, baseline: float = 0.1, seed: int = 0,
                   tile_scale: float | None = 0.05, move: float = 0.0) -> dict[str, np.ndarray]:
    """Room ``index`` of ``seed`` as a rectified pair (see :func:`svde.data.synthetic.render_stereo`).

    ``tile_scale`` ``None`` keeps the rooms' own textures; ``move`` moves the camera that many
    metres along its own x and z axes (frames of one shot: ``move = t * speed``).
    """
    scene = sample_scene(np.random.default_rng([seed, 7, int(index)]), height, width)
    if tile_scale is not None:
        scene.surfaces = [dataclasses.replace(s, scale=float(tile_scale), weights=TILES_ONLY) for s in scene.surfaces]
    if move:
        scene = dataclasses.replace(scene, cam_pos=scene.cam_pos + float(move) * (scene.cam_rot[:, 0] + scene.cam_rot[:, 2]))
    return render_stereo(scene, height, width, baseline)
