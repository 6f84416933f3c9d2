"""Depth in the Wild: ordinal point pairs from a CSV."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svde.data.base import DataError, DepthDataset
from svde.data.io import read_image
from svde.data.layout import EVAL_SPLITS, check_split
from svde.types import DepthType

logger = logging.getLogger(__name__)

class DIWDataset(DepthDataset):
    """Depth in the Wild (Chen et al.): ``<root>/DIW_test.csv`` + the images in ``<root>/DIW_test/``.

    The CSV has two lines per sample: the image path relative to ``root`` (e.g.
    ``./DIW_test/xxx.thumb``, a JPEG), then ``yA,xA,yB,xB,rel,w,h`` with 1-based pixel
    coordinates, ``rel`` ``>`` when point A is farther than B (``<``: closer), and the image
    width and height. Samples are ordinal: ``pairs`` (1, 5) = 0-based ``yA, xA, yB, xB`` and
    ``rel`` = +1 when A is farther, -1 otherwise; ``target`` is zeros and ``mask`` all False.

    Coordinates follow the authors (SamsungLabs/geometry-preserving-de,
    datasets/diw_dataset_eval.py): 1-based -> 0-based by subtracting 1, then clipped to the
    decoded image (``0..W-1``, ``0..H-1``) and floored; annotations that fall outside the image
    are thus moved to its border, not rejected. The image's own size is used (as the authors
    do); a CSV ``w, h`` that disagrees is logged.

    Args:
        csv_file: the annotation file, relative to ``root``.
    """

    name = "diw"
    depth_type = DepthType.ORDINAL

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 csv_file: str = "DIW_test.csv") -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.csv_path = Path(root) / csv_file
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return ("expected <root>/DIW_test.csv (two lines per sample: image path relative to <root>, then "
                "'yA,xA,yB,xB,>|<,width,height', 1-based) and the images in <root>/DIW_test/")

    def index(self) -> list[tuple[Path, np.ndarray, tuple[int, int], str]]:
        path = self.require(self.csv_path)
        lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        if len(lines) % 2:
            raise DataError(f"{path}: expected two lines per sample (image path, then annotation); "
                            f"the last sample (line {lines[-1][0]}) has no annotation line")
        records = []
        for (_, image_line), (n, ann) in zip(lines[::2], lines[1::2]):
            where = f"{path}:{n}"
            fields = [f.strip() for f in ann.split(",")]
            try:
                if len(fields) != 7 or fields[4] not in (">", "<"):
                    raise ValueError
                ya, xa, yb, xb = (float(fields[i]) for i in range(4))
                w, h = int(fields[5]), int(fields[6])
                if not all(np.isfinite([ya, xa, yb, xb])):
                    raise ValueError
            except ValueError:
                raise DataError(f"{where}: expected 'yA,xA,yB,xB,>|<,width,height' (numbers), got {ann!r}") from None
            rel = 1.0 if fields[4] == ">" else -1.0
            pairs = np.array([[ya - 1, xa - 1, yb - 1, xb - 1, rel]], dtype=np.float64)
            records.append((self.root / image_line, pairs, (w, h), where))
        return records

    def read(self, record: tuple[Path, np.ndarray, tuple[int, int], str]) -> dict[str, Any]:
        image_path, pairs, (w, h), where = record
        image = read_image(image_path)
        img_h, img_w = image.shape[:2]
        if (img_h, img_w) != (h, w):
            logger.warning("%s: image is %dx%d (WxH) but %s says %dx%d; clipping to the image", image_path,
                           img_w, img_h, where, w, h)
        pairs = pairs.copy()
        pairs[:, [0, 2]] = np.floor(np.clip(pairs[:, [0, 2]], 0, img_h - 1))
        pairs[:, [1, 3]] = np.floor(np.clip(pairs[:, [1, 3]], 0, img_w - 1))
        return {"image": image, "target": np.zeros((img_h, img_w), np.float32), "mask": np.zeros((img_h, img_w), bool),
                "pairs": pairs.astype(np.float32), "intrinsics": None, "file": str(image_path)}
