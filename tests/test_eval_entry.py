"""svde.evaluation.entry: one dataset-entry schema and one evaluation path for eval, training and the PoC."""

import numpy as np
import pytest
import torch

from svde.data import build_dataset
from svde.errors import UserError
from svde.evaluation import EvalEntry, evaluate_entry, evaluate_model


@pytest.mark.parametrize("raw, fragment", [
    ({"name": "synthetic", "lenght": 3}, "unknown keys ['lenght']"),
    ({"name": "synthetic", "options": {"lenght": 3}}, "did you mean 'length'"),
    ({"name": "nyuu"}, "unknown dataset 'nyuu' (did you mean 'nyu'?)"),
    ({"name": "nyu"}, "needs its root folder"),
    ({"name": "synthetic", "protocol": "nyuu"}, "unknown protocol 'nyuu'"),
    ({"name": "synthetic", "depth_cap": -1}, "depth_cap: expected a finite number > 0"),
    ({"name": "synthetic", "subset": [0.5, 0.2]}, "subset must be [start, end]"),
    ({"name": "synthetic", "options": [1, 2]}, "options: expected a mapping"),
    ({"name": "synthetic", "type": "nyu"}, "'type' ('nyu') and 'name' ('synthetic') disagree"),
])
def test_bad_entries_are_named_before_any_data_is_read(raw, fragment):
    with pytest.raises(UserError) as info:
        EvalEntry.from_mapping(raw, where="datasets.x")
    assert fragment in str(info.value) and "datasets.x" in str(info.value)


def test_defaults_and_the_older_type_key():
    entry = EvalEntry.from_mapping({"type": "synthetic"})
    assert (entry.name, entry.split, entry.options) == ("synthetic", "test", {"length": 100})
    assert EvalEntry.from_mapping({"name": "synthetic", "split": "val", "options": {"length": 3}}).options == {"length": 3}
    assert EvalEntry.from_mapping({"name": "synthetic"}, defaults=False).split is None


def test_evaluate_entry_is_evaluate_model_on_the_entry(mn_model):
    entry = EvalEntry.from_mapping({"name": "synthetic", "split": "val", "options": {"length": 6, "height": 64,
                                                                                     "width": 96}, "subset": [0.0, 0.5]})
    # The documented subset rule (svde.data.sampling.take_subset), computed here independently: one
    # fixed order (a seed-0 permutation), positions [round(0 * 6), round(0.5 * 6)) kept.
    indices = np.random.default_rng(0).permutation(6)[0:3].tolist()
    assert list(entry.build().indices) == indices
    got = evaluate_entry(mn_model, entry, short_side=64)
    full = build_dataset("synthetic", split="val", length=6, height=64, width=96)
    expected = evaluate_model(mn_model, torch.utils.data.Subset(full, indices), protocol="synthetic", short_side=64)
    assert got["uts"] == expected["uts"] and got["n_images"] == 3
    assert got["source"]["subset"] == [0.0, 0.5] and got["dataset"] == "synthetic"
