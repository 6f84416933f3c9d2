"""The training parts on their own: TrainState round trip through a checkpoint, one train_step,
the validation cadence, and the import layout of svde.training (no cycle through a package's
``__init__``; importing the config or the optimisers does not load the trainer)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from svde.config import build_config
from svde.data import SyntheticDataset, collate
from svde.models import read_checkpoint
from svde.training.checkpoints import Checkpointer
from svde.training.distributed import DistContext
from svde.training.state import TrainState, rng_state, set_rng_state
from svde.training.step import train_step
from svde.training.trainer import validation_due
from test_architecture import cycles, import_graph

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(**sections):
    raw = {"optim": {"name": "adamw", "schedule": "cosine", "warmup_steps": 1}, "train": {"steps": 4},
           "data": {"height": 64, "width": 64}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return build_config(raw)


def batch(seed):
    ds = SyntheticDataset(length=2, height=64, width=64, seed=seed)
    return collate([ds[0], ds[1]])


def test_state_dict_and_restore_continue_like_an_uninterrupted_state(tmp_path):
    torch.manual_seed(0)
    cfg, ctx = tiny_cfg(), DistContext()
    state = TrainState.build(cfg, torch.device("cpu"))
    checkpoints = Checkpointer(tmp_path, cfg)
    result = train_step(state, batch(0), cfg, ctx, checkpoints)
    assert state.step == 1 and math.isfinite(result.loss) and result.images == 2
    state.best = 0.25
    state.monitor.update(result.loss)
    saved_rng = rng_state()
    checkpoints.save_last(state, state.step, rngs=[saved_rng])
    assert state.saved_step == 1 and checkpoints.last_good(state).endswith("(step 1)")

    torch.manual_seed(123)  # other initial weights and RNG: restore must put back all of them
    restored = TrainState.build(cfg, torch.device("cpu"))
    restored.restore(read_checkpoint(checkpoints.last), ctx, checkpoints.last)
    assert (restored.step, restored.best, restored.saved_step, restored.lr) == (1, 0.25, 1, state.lr)
    assert restored.monitor.state_dict() == state.monitor.state_dict()
    assert torch.equal(torch.get_rng_state(), saved_rng["torch"])

    # The next step from the restored state is the next step of the original one, bit for bit.
    steps = []
    for s in (state, restored):
        set_rng_state(saved_rng)
        steps.append(train_step(s, batch(1), cfg, ctx, checkpoints))
    assert steps[0].loss == steps[1].loss and steps[0].lr == steps[1].lr
    assert all(torch.equal(p, q) for p, q in zip(state.params, restored.params))
    assert all(torch.equal(p, q) for p, q in zip(state.bn_buffers, restored.bn_buffers))


def test_a_batch_without_valid_depth_is_skipped_and_changes_nothing(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg()
    state = TrainState.build(cfg, torch.device("cpu"))
    before = [t.clone() for t in (*state.params, *state.bn_buffers)]
    empty = batch(0)
    empty["mask"] = torch.zeros_like(empty["mask"])
    with pytest.warns(UserWarning, match="no valid depth pixel"):
        assert train_step(state, empty, cfg, DistContext(), Checkpointer(tmp_path, cfg)) is None
    assert state.step == 0 and state.skipped_run == 1
    assert all(torch.equal(x, y) for x, y in zip(before, (*state.params, *state.bn_buffers)))


def test_validation_cadence():
    cfg = build_config({"train": {"steps": 5}, "val": {"dataset": {"name": "synthetic"}, "every": 2}})
    assert [s for s in range(6) if validation_due(cfg, s)] == [0, 2, 4, 5]
    assert not any(validation_due(build_config({"train": {"steps": 5}, "val": {"dataset": {"name": "synthetic"},
                                                                                  "every": 0}}), s) for s in range(6))
    assert not any(validation_due(build_config({"train": {"steps": 5}, "val": {"dataset": None}}), s) for s in range(6))


def test_no_import_cycle_through_package_inits():
    # Importing a.b.c runs a/b/__init__.py: count that edge too (test_architecture counts only
    # the modules named in import statements).
    graph = import_graph()
    with_packages = {name: set(deps) for name, deps in graph.items()}
    for name, deps in graph.items():
        for dep in deps:
            parts = dep.split(".")
            for i in range(2, len(parts)):
                package = ".".join(parts[:i])
                if package in graph and not name.startswith(package + ".") and package != name:
                    with_packages[name].add(package)
    assert "svde.evaluation" in with_packages["svde.config"]  # package edges are seen (evaluation.protocols)
    assert "svde.training" not in with_packages["svde.config"]  # the config (layer 2) checks no name upwards
    assert cycles(with_packages) == []


def test_the_config_checks_exactly_the_names_the_optimisers_build():
    from svde.config import OPTIMIZER_NAMES, SCHEDULE_NAMES
    from svde.training.optim import OPTIMIZERS, SCHEDULES

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES and tuple(SCHEDULES) == SCHEDULE_NAMES


def test_config_and_optimisers_do_not_load_the_trainer():
    code = ("import sys; import svde.config, svde.training.optim; from svde.config import build_config; "
            "build_config({}); print(sorted(m for m in sys.modules if m.startswith('svde.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "['svde.training', 'svde.training.optim']"
    from svde import training

    assert training.train.__module__ == "svde.training.trainer" and "train" in dir(training)
