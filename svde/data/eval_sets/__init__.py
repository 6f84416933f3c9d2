"""Evaluation-set loaders: NYUv2, TUM RGB-D, KITTI, Sintel, DIW and ETH3D in their native layouts.

One module per dataset family (:mod:`.nyu`, :mod:`.tum`, :mod:`.kitti`, :mod:`.sintel`,
:mod:`.diw`, :mod:`.eth3d`); this package re-exports their public names, and, for code written
against the single module it once was, the shared helpers now in :mod:`svde.data.layout` and
:mod:`svde.data.io`.

Every loader returns the ground truth at its native resolution (the evaluator resizes the
prediction, never the ground truth) in metres (Sintel: its scene units), with invalid pixels
(0, NaN, inf, negative) masked by :class:`~svde.data.base.DepthDataset`. ``meta["intrinsics"]``
is ``[fx, fy, cx, cy]`` in pixels where the dataset provides it, else ``None``.

Layouts (``root`` is the dataset folder passed to the constructor):

* ``nyu``: ``<root>/nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5) with ``<root>/splits.mat``.
* ``nyu_sync``: ``rgb_XXXXX.jpg`` + ``sync_depth_XXXXX.png`` (uint16 mm), either side by side in
  one folder (the BTS "sync" layout, any depth of sub-folders) or in sibling ``rgb/`` and
  ``depth/`` folders.
* ``tum``: ``<root>/*.h5`` with ``/gt/img_1``, ``/gt/gt_depth`` and ``/gt/intrinsic`` (the subset of Li et al.).
* ``tum_raw``: a TUM RGB-D sequence folder (``rgb.txt``, ``depth.txt``), or a folder of them.
* ``kitti``: an Eigen test list + raw images + annotated depth, or ``<root>/rgb`` + ``<root>/depth``.
* ``sintel``: ``<root>/final/<scene>/*.png`` + ``<root>/depth/<scene>/*.dpt``
  (+ ``<root>/camdata_left/<scene>/*.cam``).
* ``diw``: ``<root>/DIW_test.csv`` + ``<root>/DIW_test/``.
* ``eth3d``: ``<root>/<scene>/images_out/dslr_images_undistorted/*.JPG`` +
  ``<root>/<scene>/depth/dslr_images_undistorted/*.png`` (uint16 mm, the authors' rendering), or
  the release's ``<scene>/images/dslr_images/*.JPG`` + ``<scene>/ground_truth_depth/dslr_images/``
  (raw float32, inf = no data).

Example:
    >>> from svde.data import build_dataset
    >>> ds = build_dataset("nyu", "/data/nyu", split="test")  # doctest: +SKIP
    >>> len(ds), ds[0]["target"].shape  # doctest: +SKIP
    (654, torch.Size([1, 480, 640]))
"""

from svde.data.eval_sets.diw import DIWDataset
from svde.data.eval_sets.eth3d import ETH3DDataset
from svde.data.eval_sets.kitti import KITTIDataset
from svde.data.eval_sets.nyu import NYU_INTRINSICS, NYUv2LabeledDataset, NYUv2SyncDataset
from svde.data.eval_sets.sintel import SintelDataset
from svde.data.eval_sets.tum import TUM_INTRINSICS, TUM_SIZE, TUMH5Dataset, TUMRawDataset, associate_timestamps
from svde.data.io import SINTEL_CAM_TAG, as_rgb, read_h5, read_kitti_calib, read_sintel_cam
from svde.data.layout import EVAL_SPLITS, IMAGE_EXTS, check_intrinsics, check_split, pair_by_stem, parse_list

# 0.1's name of svde.data.layout.check_intrinsics (None or an array; svde.geometry.as_intrinsics is
# the one conversion to an (fx, fy, cx, cy) tuple).
as_intrinsics = check_intrinsics

__all__ = [
    "DIWDataset",
    "ETH3DDataset",
    "EVAL_SPLITS",
    "IMAGE_EXTS",
    "KITTIDataset",
    "NYU_INTRINSICS",
    "NYUv2LabeledDataset",
    "NYUv2SyncDataset",
    "SINTEL_CAM_TAG",
    "SintelDataset",
    "TUMH5Dataset",
    "TUMRawDataset",
    "TUM_INTRINSICS",
    "TUM_SIZE",
    "as_intrinsics",
    "check_intrinsics",
    "as_rgb",
    "associate_timestamps",
    "check_split",
    "pair_by_stem",
    "parse_list",
    "read_h5",
    "read_kitti_calib",
    "read_sintel_cam",
]
