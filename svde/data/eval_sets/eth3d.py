"""ETH3D high-res multi-view scenes: the authors' rendering and the official release."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from svde.data.base import DepthDataset
from svde.data.io import read_depth_any, read_image, read_raw_float32
from svde.data.layout import EVAL_SPLITS, check_intrinsics, check_split, pair_by_stem
from svde.types import DepthType

class ETH3DDataset(DepthDataset):
    """ETH3D high-res multi-view training scenes, in either of two layouts (per scene):

    * **authors' rendering** (what SamsungLabs/geometry-preserving-de,
      datasets/validation_datasets.py, ``ETH3DDataset`` reads):
      ``<scene>/images_out/dslr_images_undistorted/DSC_XXXX.JPG`` with
      ``<scene>/depth/dslr_images_undistorted/DSC_XXXX.png``, uint16 millimetres (their
      ``/ 1000.0``), 0 = no data.
    * **official release** (https://www.eth3d.net/documentation; as prs-eth/Marigold,
      src/dataset/eth3d_dataset.py and data_split/eth3d/eth3d_filename_list.txt, pairs them):
      ``<scene>/images/dslr_images/DSC_XXXX.JPG`` with
      ``<scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG``, which despite its name is a
      headerless little-endian float32 raster of the image's size (6048x4032), metres, ``inf``
      where there is no ground truth (masked).

    ``meta["intrinsics"]`` is ``None`` unless given through ``intrinsics``.

    Args:
        depth_scale: raw PNG units per metre in the authors' layout (1000: millimetres).
    """

    name = "eth3d"
    depth_type = DepthType.ABSOLUTE
    IMAGES = Path("images_out") / "dslr_images_undistorted"
    DEPTHS = Path("depth") / "dslr_images_undistorted"
    RELEASE_IMAGES = Path("images") / "dslr_images"
    RELEASE_DEPTHS = Path("ground_truth_depth") / "dslr_images"

    def __init__(self, root: str | os.PathLike, split: str | None = None, transform: Callable | None = None,
                 depth_scale: float = 1000.0, intrinsics: Sequence[float] | None = None) -> None:
        check_split(self.name, split, EVAL_SPLITS)
        self.depth_scale = depth_scale
        self.intrinsics = check_intrinsics(intrinsics, self.name)
        super().__init__(root, split, transform)

    def layout_hint(self) -> str:
        return (f"expected <root>/<scene>/{self.IMAGES.as_posix()}/*.JPG with "
                f"<root>/<scene>/{self.DEPTHS.as_posix()}/*.png (uint16, mm), or the release's "
                f"<root>/<scene>/{self.RELEASE_IMAGES.as_posix()}/*.JPG with "
                f"<root>/<scene>/{self.RELEASE_DEPTHS.as_posix()}/<same name> (raw float32, inf = no data)")

    def release_frames(self) -> int:
        """How many frames are in the official release's layout: the paper's ETH3D numbers come
        from the authors' own rendering (sizes and depth differ), so these do not reproduce them."""
        return sum(1 for _, _, raw in self.records if raw)

    def index(self) -> list[tuple[Path, Path, bool]]:
        root = self.require(self.root)
        records = []
        for scene in sorted(p for p in root.iterdir() if p.is_dir()):
            if (scene / self.IMAGES).is_dir():
                records += [(i, d, False) for i, d in pair_by_stem(
                    scene / self.IMAGES, scene / self.DEPTHS, lambda p: [p.stem + ".png"],
                    image_exts=(".jpg",), dataset=self.name)]
            elif (scene / self.RELEASE_IMAGES).is_dir():
                records += [(i, d, True) for i, d in pair_by_stem(
                    scene / self.RELEASE_IMAGES, scene / self.RELEASE_DEPTHS, lambda p: [p.name],
                    image_exts=(".jpg",), dataset=self.name)]
        return records

    def read(self, record: tuple[Path, Path, bool]) -> dict[str, Any]:
        image_path, depth_path, raw = record
        image = read_image(image_path)
        depth = (read_raw_float32(depth_path, *image.shape[:2]) if raw
                 else read_depth_any(depth_path, self.depth_scale))
        return {"image": image, "target": depth, "intrinsics": self.intrinsics, "file": str(image_path)}
