"""MegaDepth v1 ordinal ("semantic depth") maps never reach an SI/SSI target.

MegaDepth v1 stores its automatically labelled ordinal maps under the same HDF5 key (``/depth``)
and in the same ``dense*/depths/`` folders as the SfM depth maps; they are told apart by their
negative values (sources in :class:`svde.data.train_sets.MegaDepthDataset`'s docstring). Here a
tiny copy of the release's layout holds one dense and one ordinal map (-1/0/1/2), and the
ordinal map must add no pixel to any target, however the dataset is built or read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from svde.data import DataError, build_dataset, collate
from svde.data.train_sets import MegaDepthDataset
from svde.data.transforms import Compose, ToUTS, ToUTSS, build_train_transform
from svde.losses import mixture_loss
from test_data_formats import rgb, write_jpg

H, W = 4, 6
SCENE = Path("phoenix") / "S6" / "zl548" / "MegaDepth_v1" / "0015" / "dense0"
DENSE, ORDINAL = "2207919013_6a86e4ed6c_o", "3382618227_2324fb96c2_o"

# SfM depth: float32, 0 = no reconstruction.
DEPTH = np.array([[0.0, 1.5, 2.0, 7.25, 0.0, 3.0],
                  [4.0, 0.0, 9.5, 12.0, 2.5, 0.0],
                  [1.0, 6.0, 0.0, 0.0, 30.0, 8.0],
                  [0.0, 2.0, 5.0, 11.0, 0.0, 4.5]], np.float32)
# Ordinal map as the release stores it under the same key: -1, 0 and positive labels.
ORD = np.array([[-1, -1, -1, -1, -1, -1],
                [-1, -1, 0, 0, -1, -1],
                [1, 1, 0, 2, 2, 0],
                [1, 1, 0, 2, 2, 0]], np.float32)


def write_megadepth(root: Path) -> Path:
    """``<root>/phoenix/S6/zl548/MegaDepth_v1/0015/dense0/{imgs/*.jpg, depths/*.h5}``."""
    dense = root / SCENE
    for stem, depth in ((DENSE, DEPTH), (ORDINAL, ORD)):
        write_jpg(dense / "imgs" / f"{stem}.jpg", rgb(H, W))
        (dense / "depths").mkdir(exist_ok=True)
        with h5py.File(dense / "depths" / f"{stem}.h5", "w") as f:
            f["depth"] = depth
    return dense


def by_stem(ds) -> dict[str, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the read-time notice about the ordinal map
        return {Path(s["meta"]["file"]).stem: s for s in (ds[i] for i in range(len(ds)))}


def assert_dense(sample: dict) -> None:
    """The dense map loads unchanged: mask = depth > 0, target = depth there, 0 elsewhere."""
    t, m = sample["target"][0].numpy(), sample["mask"][0].numpy()
    assert sample["depth_type"] == "uts"
    np.testing.assert_array_equal(m, DEPTH > 0)
    np.testing.assert_array_equal(t, np.where(DEPTH > 0, DEPTH, 0))


def assert_no_pixel(sample: dict) -> None:
    assert not sample["mask"].any(), f"ordinal pixels reached the target: {sample['target'][0].tolist()}"
    assert not sample["target"].any()


def test_ordinal_map_masked_when_read(tmp_path):
    write_megadepth(tmp_path)
    ds = build_dataset("megadepth", tmp_path)
    assert len(ds) == 2  # no scan by default: the guard is at read time
    ordinal = [Path(image).stem for image, _ in ds.records].index(ORDINAL)
    with pytest.warns(UserWarning, match=r"3382618227_2324fb96c2_o\.h5 is an ordinal.*masked.*drop_ordinal=True"):
        assert_no_pixel(ds[ordinal])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ordinal")  # said once per process, not once per sample
        assert_no_pixel(ds[ordinal])
        assert_dense(ds[1 - ordinal])
    assert ds.ordinal_masked == 2


def test_ordinal_map_adds_nothing_to_mixture_loss(tmp_path):
    write_megadepth(tmp_path)
    samples = by_stem(build_dataset("megadepth", tmp_path))
    batch = collate([samples[DENSE], samples[ORDINAL]])
    pred = torch.randn(2, 1, H, W, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = mixture_loss(pred, batch["target"], batch["mask"], batch["depth_type"])
    out["loss"].backward()
    # No pixel of the ordinal sample is in an SI or SSI term: its prediction gets no gradient...
    assert not pred.grad[1].any()
    assert pred.grad[0].any()
    # ...and the terms are those of the dense sample alone.
    alone = mixture_loss(pred[:1].detach(), samples[DENSE]["target"][None], samples[DENSE]["mask"][None], ["uts"])
    for key in ("si", "ssi", "loss"):
        torch.testing.assert_close(out[key].detach(), alone[key], rtol=0, atol=0)


@pytest.mark.parametrize("convert", [ToUTS, ToUTSS])
def test_ordinal_map_empty_after_training_transform(tmp_path, convert):
    write_megadepth(tmp_path)
    crop = build_train_transform(H, W, scale_range=(1.0, 1.0), rotate_limit=0.0, flip_p=0.0, color_p=0.0)
    samples = by_stem(build_dataset("megadepth", tmp_path, transform=Compose([crop, convert()])))
    assert_no_pixel(samples[ORDINAL])
    np.testing.assert_array_equal(samples[DENSE]["mask"][0].numpy(), DEPTH > 0)


def test_drop_ordinal_drops_from_index_with_count(tmp_path):
    dense = write_megadepth(tmp_path)
    with pytest.warns(UserWarning, match=r"megadepth: 1 of 2 depth maps are ordinal.*dropped"):
        ds = build_dataset("megadepth", tmp_path, drop_ordinal=True)
    assert [Path(image).stem for image, _ in ds.records] == [DENSE]
    assert ds.ordinal == [str(dense / "imgs" / f"{ORDINAL}.jpg")]
    assert_dense(ds[0])


def test_list_file_is_guarded_too(tmp_path):
    write_megadepth(tmp_path)
    (tmp_path / "train.txt").write_text("".join(f"{SCENE.as_posix()}/imgs/{s}.jpg\n" for s in (DENSE, ORDINAL)))
    samples = by_stem(build_dataset("megadepth", tmp_path, list_file="train.txt"))
    assert_dense(samples[DENSE])
    assert_no_pixel(samples[ORDINAL])
    with pytest.warns(UserWarning, match="1 of 2"):
        assert len(build_dataset("megadepth", tmp_path, list_file="train.txt", drop_ordinal=True)) == 1


def test_only_ordinal_maps_is_an_error_naming_them(tmp_path):
    dense = write_megadepth(tmp_path)
    for suffix in (".jpg", ".h5"):
        next(dense.rglob(f"{DENSE}{suffix}")).unlink()
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"all 1 depth maps.*ordinal"):
        build_dataset("megadepth", tmp_path, drop_ordinal=True)


def test_dense_maps_are_not_ordinal():
    assert not MegaDepthDataset.is_ordinal(DEPTH)
    assert not MegaDepthDataset.is_ordinal(np.array([[np.nan, 0.0, 2.0]], np.float32))  # NaN: invalid, not ordinal
    assert not MegaDepthDataset.is_ordinal(np.zeros((2, 2), np.float32))  # nothing reconstructed
    assert MegaDepthDataset.is_ordinal(ORD)


def test_docstring_names_the_sources():
    doc = MegaDepthDataset.__doc__
    for source in ("zhengqili/MegaDepth", "issue #1", "data/image_folder.py",
                   "ubc-vision/COTR", "scripts/prepare_megadepth_valid_list.py", "prepare_data.md",
                   "faustoTapia/PhoneDepth", "dataset_utils/md_utils.py"):
        assert source in doc, source
