"""Model selection (issue 21, item 2) and the paper configs' precision (item 5): best.pt is chosen on
held-out samples of the training mixture, never on a set the paper evaluates zero-shot, records
what chose it, and evaluating it on that data warns."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from svde.cli.main import main
from svde.cli.paper_table import data_warnings
from svde.config import ConfigError, build_config, load_config
from svde.data.eval_sets.eth3d import ETH3DDataset
from svde.data.sampling import split_holdout
from svde.evaluation import ZERO_SHOT_DATASETS, EvalEntry, selection_warning
from svde.models import build_model, read_checkpoint
from svde.models.checkpoint import checkpoint_selection, save_checkpoint
from svde.training import train
from svde.training.distributed import init_distributed
from svde.training.loaders import build_train_loader, val_sets

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((REPO / "configs" / "paper").glob("*.yaml"))
TINY = {"height": 64, "width": 64}


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_select_on_held_out_training_data_in_fp32(path):
    cfg = load_config(path)
    assert cfg.val.dataset is None and cfg.val.holdout > 0 and cfg.val.every > 0
    trained = {e.name for e in cfg.data.train}
    assert not trained & set(ZERO_SHOT_DATASETS)  # so the held-out sets are not zero-shot sets either
    # The paper trained in fp32 (item 5): the configs named "paper" do too.
    assert cfg.train.amp == "none" and cfg.train.channels_last is False
    fast = load_config(path, ["train.amp=bf16", "train.channels_last=true"])
    assert fast.train.amp == "bf16"


def test_holdout_and_dataset_exclude_each_other():
    with pytest.raises(ConfigError, match="val.holdout and val.dataset exclude each other"):
        build_config({"val": {"holdout": 4}})  # the default val.dataset is still set
    with pytest.raises(ConfigError, match="val.holdout must be >= 0"):
        build_config({"val": {"holdout": -1, "dataset": None}})


def tiny_holdout_raw():
    return {
        "name": "tiny",
        "data": {"train": [{"name": "synthetic", "options": {"length": 10, **TINY}},
                           {"name": "synthetic", "convert": "utss", "options": {"length": 8, **TINY, "seed": 1}}],
                 **TINY, "batch_size": 2, "epoch_length": 6},
        "val": {"dataset": None, "holdout": 3, "every": 2, "short_side": 64, "batch_size": 1},
        "train": {"steps": 2, "log_every": 1, "checkpoint_every": 2, "image_every": 0},
    }


def test_held_out_samples_never_train():
    cfg = build_config(tiny_holdout_raw())
    loader = build_train_loader(cfg, init_distributed("cpu"))
    absolute, converted = loader.dataset.mixed.datasets
    sets = val_sets(cfg)
    # Only the absolute set is held out (the UTSS one has no depth to score); disjoint, together whole.
    assert len(sets) == 1 and sets[0][2]["holdout"] == 3 and sets[0][2]["train_entry"] == 0
    held = sets[0][1]
    assert len(held) == 3 and len(absolute) == 7 and len(converted) == 8
    assert not set(held.indices) & set(absolute.indices)
    assert sorted(held.indices + absolute.indices) == list(range(10))
    # The same samples whatever the run's seed.
    reseeded = build_config(tiny_holdout_raw() | {"train": {"steps": 2, "seed": 7}})
    assert val_sets(reseeded)[0][1].indices == held.indices


def test_a_run_indexes_each_training_set_once(tmp_path, monkeypatch):
    """The loader and the held-out validation share each training set's index (listing a large
    dataset's files is slow): one index() per data.train entry, and validation reads the
    untransformed samples while training reads augmented ones."""
    from svde.data.synthetic import SyntheticDataset
    from svde.training.loaders import build_train_datasets

    calls = []
    original = SyntheticDataset.index
    monkeypatch.setattr(SyntheticDataset, "index", lambda self: calls.append(self.length) or original(self))
    train(build_config(tiny_holdout_raw()), tmp_path / "run")
    assert calls == [10, 8]
    cfg = build_config(tiny_holdout_raw())
    datasets = build_train_datasets(cfg)
    loader = build_train_loader(cfg, init_distributed("cpu"), datasets)
    held = val_sets(cfg, datasets)[0][1]
    trained = loader.dataset.mixed.datasets[0]
    assert held.dataset is datasets[0] and datasets[0].transform is None
    assert trained.dataset.records is datasets[0].records and trained.dataset.transform is not None


def test_split_holdout_refuses_to_leave_nothing_to_train():
    from svde.data import DataError
    from svde.data.synthetic import SyntheticDataset

    with pytest.raises(DataError, match="cannot hold out 4 of its 4 samples"):
        split_holdout(SyntheticDataset(length=4, height=32, width=32), 4, "synthetic")


def test_best_checkpoint_records_what_selected_it_and_eval_warns(tmp_path, capsys):
    summary = train(build_config(tiny_holdout_raw()), tmp_path / "run")
    best = read_checkpoint(summary["best"])
    sel = best["selected_on"]
    assert sel["metric"] == "delta1_err"
    assert [(d["name"], d["split"], d["holdout"]) for d in sel["datasets"]] == [("synthetic", None, 3)]
    assert checkpoint_selection(summary["best"]) == sel
    assert checkpoint_selection(summary["last"]) is None  # last.pt is not chosen by any data

    # Evaluating best.pt on the data that chose it warns (on stderr, and in results.json).
    data = tmp_path / "eval.yaml"
    data.write_text(yaml.safe_dump({"datasets": {"synthetic": {"split": "train", "options": {"length": 2, **TINY}}}}))
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", summary["best"], "--config", str(data), "--datasets", "synthetic",
                 "--short-side", "64", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "was selected on synthetic" in err and "not zero-shot" in err
    # ... and a set it was not selected on does not.
    tum = {"metric": "delta1_err", "datasets": [{"name": "nyu", "split": "test", "holdout": None}]}
    assert selection_warning(tum, EvalEntry(name="tum")) is None
    assert selection_warning(tum, EvalEntry(name="nyu", split="train")) is None
    assert "nyu" in selection_warning(tum, EvalEntry(name="nyu"))


def test_validating_on_a_zero_shot_set_is_logged(caplog, monkeypatch):
    import svde.training.trainer as trainer

    monkeypatch.setattr(trainer, "val_sets", lambda cfg, datasets=None: [])  # no NYU here: only the rule is under test
    cfg = build_config({"val": {"dataset": {"name": "nyu", "root": "/nowhere", "split": "test"}}})
    with caplog.at_level("WARNING", logger="svde.training.trainer"):
        trainer.Validation(cfg, init_distributed("cpu"))
    assert "validating on nyu (split test), a set the paper evaluates zero-shot" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="svde.training.trainer"):
        trainer.Validation(build_config(tiny_holdout_raw()), init_distributed("cpu"))
    assert "zero-shot" not in caplog.text


def test_paper_table_warns_on_selection_and_on_the_eth3d_release_layout(tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", build_model("mn_lrn4"),
                           selected_on={"metric": "delta1_err", "datasets": [{"name": "nyu", "split": "test"}]})
    warnings = data_warnings({"nyu": None, "tum": None}, {"mn_lrn4": path})
    assert len(warnings) == 1 and "selected on nyu" in warnings[0]
    # ETH3D in the official release layout (raw float32 depth named .JPG, as tests/test_real_layouts.py)
    scene = tmp_path / "eth3d" / "delivery_area"
    (scene / "images" / "dslr_images").mkdir(parents=True)
    (scene / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    import cv2

    cv2.imwrite(str(scene / "images" / "dslr_images" / "DSC_0711.JPG"), np.zeros((4, 6, 3), np.uint8))
    (scene / "ground_truth_depth" / "dslr_images" / "DSC_0711.JPG").write_bytes(np.ones((4, 6), "<f4").tobytes())
    eth3d = ETH3DDataset(tmp_path / "eth3d")
    assert eth3d.release_frames() == 1
    warnings = data_warnings({"eth3d": eth3d}, None)
    assert len(warnings) == 1 and "official release" in warnings[0] and "authors' own rendering" in warnings[0]
