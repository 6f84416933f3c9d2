"""KITTI with annotated depth: an Eigen-style test list over the raw data, or a plain folder."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import read_depth_any, read_image, read_kitti_calib
from svde.data.layout import EVAL_SPLITS, check_intrinsics, check_split, pair_by_stem, parse_list
from svde.types import DepthType

class KITTIDataset(DepthDataset):
    """KITTI with annotated depth (uint16 PNG, metres = value / 256, 0 = no data).

    Encoding from the KITTI depth prediction devkit readme.txt ("depth(u,v) = I(u,v)/256.0;
    valid(u,v) = I(u,v)>0"; a copy is in irolaina/FCRN-DepthPrediction,
    tensorflow/modules/evaluation/kitti_depth_prediction_devkit/readme.txt).

    Two layouts:

    * **list** (``split_file`` given, e.g. the Eigen test split): each line names an image of
      the raw data relative to ``rgb_root``, in one of the common forms

      - ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png [depth|None [focal]]``
        (the BTS list: the optional second field is the depth path relative to ``depth_root``,
        ``None`` meaning no ground truth);
      - ``2011_09_26/2011_09_26_drive_0002_sync 69 l`` (the monodepth2 list; ``l``/``r`` =
        ``image_02``/``image_03``);
      - ``<left image path> <right image path>`` (the monodepth list; the right view is ignored).

      Without an explicit depth path the annotated depth of the KITTI depth release is looked
      up as ``<depth_root>[/train|/val]/<drive>/proj_depth/groundtruth/image_0X/<frame>.png``
      (an explicit one is also looked for under ``train/`` and ``val/``, the release's folders).
      Image extensions ``.png``/``.jpg`` are interchangeable (lists often say ``.jpg``). Frames
      without ground truth are skipped (``missing_depth="skip"``, recorded in ``self.skipped``
      and warned about; 45 of the 697 Eigen test frames) or raise (``"error"``).
    * **folder** (no ``split_file``): ``<root>/rgb/*.png`` + ``<root>/depth/<same name>.png``.

    Intrinsics: the ``intrinsics`` option for every frame; else ``P_rect_0X`` of
    ``<rgb_root>/<date>/calib_cam_to_cam.txt`` (list layout) or ``cam_in`` of
    ``<root>/test_annotations.json`` matched by image name (folder layout); else ``None``.

    Args:
        split_file, rgb_root, depth_root: paths relative to ``root`` (absolute ones allowed);
            the roots default to ``root``.
        depth_scale: raw units per metre (256).
        intrinsics: ``[fx, fy, cx, cy]`` for every frame, overriding the calibration files.
        missing_depth: ``"skip"`` or ``"error"`` for listed frames without ground truth.
    """

    name = "kitti"
    depth_type = DepthType.ABSOLUTE

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 split_file: str | os.PathLike | None = None, rgb_root: str | os.PathLike | None = None,
                 depth_root: str | os.PathLike | None = None, depth_scale: float = 256.0,
                 intrinsics: Sequence[float] | None = None, missing_depth: str = "skip") -> None:
        check_split(self.name, split, EVAL_SPLITS)
        if missing_depth not in ("skip", "error"):
            raise DataError(f"{self.name}: missing_depth must be 'skip' or 'error', got {missing_depth!r}")
        root = Path(root)
        self.split_file = None if split_file is None else root / split_file
        self.rgb_root = root if rgb_root is None else root / rgb_root
        self.depth_root = root if depth_root is None else root / depth_root
        self.depth_scale = depth_scale
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        self.missing_depth = missing_depth
        self.skipped: list[str] = []
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected split_file (lines '<date>/<drive>/image_02/data/<frame>.png [depth]' under rgb_root, "
                "annotated depth under depth_root/<drive>/proj_depth/groundtruth/image_02/), "
                "or <root>/rgb/*.png with <root>/depth/*.png (uint16, metres * 256)")

    def index(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        self.require(self.root)
        return self._index_list() if self.split_file is not None else self._index_folder()

    def _index_folder(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        pairs = pair_by_stem(self.require(self.root / "rgb"), self.require(self.root / "depth"),
                             lambda p: [p.stem + ".png"], dataset=self.name)
        per_file: dict[str, np.ndarray | None] = {}
        annotations = self.root / "test_annotations.json"
        if self.intrinsics is None and annotations.is_file():
            try:
                entries = json.loads(annotations.read_text())["files"]
                per_file = {Path(e["rgb"]).name: check_intrinsics(e.get("cam_in"), str(annotations)) for e in entries}
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{annotations}: expected {{'files': [{{'rgb': ..., 'cam_in': [fx, fy, cx, cy]}}]}} ({e})") from None
        return [(img, dep, self.intrinsics if self.intrinsics is not None else per_file.get(img.name))
                for img, dep in pairs]

    def _index_list(self) -> list[tuple[Path, Path, np.ndarray | None]]:
        path = self.require(self.split_file)
        calibs: dict[str, np.ndarray | None] = {}
        records = []
        for n, tokens in parse_list(path):
            where = f"{path}:{n}"
            if len(tokens) == 3 and tokens[1].isdigit() and tokens[2] in ("l", "r"):  # monodepth2 form
                cam = "image_02" if tokens[2] == "l" else "image_03"
                rel = Path(tokens[0]) / cam / "data" / f"{int(tokens[1]):010d}.png"
                depth_rel = None
            else:
                rel = Path(tokens[0])
                # A second image path is the right view of the monodepth list, not a depth map.
                depth_rel = tokens[1] if len(tokens) > 1 and not re.search(r"image_0[23]/data/", tokens[1]) else None
            parts = rel.parts
            if len(parts) != 5 or not re.fullmatch(r"image_0[23]", parts[2]) or parts[3] != "data":
                raise DataError(f"{where}: expected '<date>/<drive>/image_02|image_03/data/<frame>.png', got {tokens[0]!r}")
            date, drive, cam, _, frame = parts
            image = self._existing([self.rgb_root / rel.with_suffix(ext) for ext in (rel.suffix, ".png", ".jpg")])
            if image is None:
                raise DataError(f"{where}: image {self.rgb_root / rel} not found; {self.layout_hint()}")
            if depth_rel is None:
                gt = Path(drive) / "proj_depth" / "groundtruth" / cam / (Path(frame).stem + ".png")
                candidates = [self.depth_root / sub / gt for sub in ("", "train", "val")]
            else:
                candidates = [] if depth_rel == "None" else [self.depth_root / sub / depth_rel for sub in ("", "train", "val")]
            depth = self._existing(candidates)
            if depth is None:
                if self.missing_depth == "error":
                    raise DataError(f"{where}: no annotated depth for {image}; looked for "
                                    f"{', '.join(map(str, candidates)) or 'nothing (listed as None)'}")
                self.skipped.append(str(image))
                continue
            if self.intrinsics is not None:
                k = self.intrinsics
            else:
                if date not in calibs:
                    calib = self.rgb_root / date / "calib_cam_to_cam.txt"
                    calibs[date] = read_kitti_calib(calib, cam[-2:]) if calib.is_file() else None
                k = calibs[date]
            records.append((image, depth, k))
        if self.skipped:
            warnings.warn(f"{self.name}: {len(self.skipped)} of {len(records) + len(self.skipped)} listed frames "
                          f"have no annotated depth and are skipped (see .skipped)", stacklevel=3)
        return records

    @staticmethod
    def _existing(paths: Iterable[Path]) -> Path | None:
        return next((p for p in paths if p.is_file()), None)

    def read(self, record: tuple[Path, Path, np.ndarray | None]) -> dict[str, Any]:
        image, depth, k = record
        return {"image": read_image(image), "target": read_depth_any(depth, self.depth_scale),
                "intrinsics": k, "file": str(image)}
