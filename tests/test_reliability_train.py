"""Fault and bad-input battery for training (issue 13): no poisoned checkpoint, no lost history,
no silent fallback to defaults, every value checked before the first step, bounded DDP waits."""

import datetime
import importlib.util
import json
import logging
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import svde.atomic
import svde.errors
import svde.training.loaders as loaders
import svde.training.state as state_module
import svde.training.trainer as trainer
from svde.config import ConfigError, build_config
from svde.data import DataError
from svde.models import CheckpointError, build_model, load_model, read_checkpoint
from svde.models.checkpoint import NonFiniteStateError, nonfinite_tensors, save_checkpoint
from svde.training import TrainingError, resume_config, train
from svde.training.logging import RunLogger
from test_train import records, tiny_raw  # tests/ is on sys.path (pytest rootdir-relative imports)

REPO = Path(__file__).resolve().parents[1]


def quiet_train(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(*args, **kwargs)


def pt_files_are_finite(run_dir):
    files = sorted(Path(run_dir).glob("*.pt"))
    return {f.name: nonfinite_tensors(torch.load(f, map_location="cpu", weights_only=True)) for f in files}


def script_main():
    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-step run (checkpoint at step 2, no validation); tests copy it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    quiet_train(build_config(tiny_raw(val={"every": 0})), run)
    return run


def copy_run(finished_run, tmp_path):
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


# ---- 1. no non-finite or diverged state is ever saved ------------------------------------------
def test_save_checkpoint_refuses_non_finite_tensors_and_names_them(tmp_path):
    model = build_model("mn_lrn4")
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = float("inf")
    path = tmp_path / "last.pt"
    with pytest.raises(NonFiniteStateError, match="running_var") as err:
        save_checkpoint(path, model, optimizer={"state": {0: {"exp_avg": torch.tensor([float("nan")])}}})
    assert "optimizer.state.0.exp_avg" in err.value.names
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_checkpoints_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    real, seen = svde.atomic.fsync_file, []

    def spy(path):
        seen.append((Path(path).name, (tmp_path / "m.pt").exists()))
        return real(path)

    monkeypatch.setattr(svde.atomic, "fsync_file", spy)
    save_checkpoint(tmp_path / "m.pt", build_model("mn_lrn4"))
    assert len(seen) == 1 and seen[0][0].startswith(".m.pt.") and seen[0][1] is False  # the temporary, pre-rename


def test_skipped_batches_leave_no_poisoned_batchnorm_statistics(tmp_path, monkeypatch):
    """A NaN batch (skipped) and a batch without valid depth (skipped) around good ones."""
    real, calls = loaders.collate, {"n": 0}

    def faulty(samples):
        batch = real(samples)
        calls["n"] += 1
        if calls["n"] == 2:
            batch["image"] = torch.full_like(batch["image"], float("nan"))
        if calls["n"] == 3:
            batch["mask"] = torch.zeros_like(batch["mask"])
        return batch

    monkeypatch.setattr(loaders, "collate", faulty)
    with pytest.warns(UserWarning) as caught:
        train(build_config(tiny_raw(val={"every": 0})), tmp_path / "run")
    assert pt_files_are_finite(tmp_path / "run") == {"last.pt": []}  # the NaN batch's statistics were put back
    messages = " ".join(str(w.message) for w in caught)
    assert "non-finite" in messages and "no valid depth pixel" in messages
    assert calls["n"] == 4 and read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


def test_non_finite_weights_stop_the_run_before_they_are_saved(tmp_path, monkeypatch):
    real = state_module.build_optimizer

    def poisoning(params, cfg):
        opt, count = real(params, cfg), {"n": 0}

        def after_step(optimizer, args, kwargs):
            count["n"] += 1
            if count["n"] == 2:  # the second update leaves an inf weight
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0].fill_(float("inf"))

        opt.register_step_post_hook(after_step)
        return opt

    monkeypatch.setattr(state_module, "build_optimizer", poisoning)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"non-finite.*Last good checkpoint: .*last.pt \(step 1\)"):
        quiet_train(build_config(tiny_raw(train={"steps": 3, "checkpoint_every": 1}, val={"every": 0})), run)
    assert read_checkpoint(run / "last.pt")["step"] == 1
    assert pt_files_are_finite(run) == {"last.pt": []}


def test_a_diverging_run_exits_non_zero_naming_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from svde import losses

    real, calls = losses.mixture_loss, {"n": 0}

    def exploding(*args, **kwargs):  # the loss value explodes, its gradient does not: the loss check stops it
        calls["n"] += 1
        out = real(*args, **kwargs)
        loss = out["loss"]
        return {**out, "loss": loss + (loss.detach() * 1e6 - loss.detach())} if calls["n"] >= 3 else out

    monkeypatch.setattr(losses, "mixture_loss", exploding)
    run = tmp_path / "run"
    raw = tiny_raw(train={"steps": 8, "checkpoint_every": 1, "diverge_patience": 2}, val={"every": 0})
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(raw))  # JSON is YAML
    code = svde_run_main(script_main(), ["--config", str(config), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "diverged" in err and f"Last good checkpoint: {run / 'last.pt'} (step 2)" in err
    assert "Traceback" not in err and calls["n"] == 4  # stopped at the second far-off step
    assert read_checkpoint(run / "last.pt")["step"] == 2 and pt_files_are_finite(run) == {"last.pt": []}


def svde_run_main(main, argv):
    from svde.cli.common import run_main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_main(main, argv)


def test_divergence_monitor_tolerates_noise_and_catches_alternating_explosions():
    normal = state_module.DivergenceMonitor(factor=100.0, patience=3)
    assert not any(normal.update(x) for x in [3.0, 2.5, 1.0, 80.0, 0.8, 0.5, 0.6, 40.0, 0.4] * 5)  # one outlier at a time
    alternating = state_module.DivergenceMonitor(factor=100.0, patience=3)
    results = [alternating.update(x) for x in (1.0, 1e6, 1.0, 1e6, 1.1, 1e6)]
    assert results == [False] * 5 + [True]  # UTSS-only batches still look fine; the others explode
    assert not state_module.DivergenceMonitor(factor=None, patience=1).update(1e30)


@pytest.mark.slow  # the repro: ~15 CPU steps
def test_adam_at_lr_1e3_exits_non_zero_and_leaves_only_finite_files(tmp_path):
    run = tmp_path / "run"
    cfg = build_config(tiny_raw(optim={"name": "adam", "lr": 1e3}, train={"steps": 20, "checkpoint_every": 1},
                                val={"every": 0}))
    with pytest.raises(TrainingError, match="Last good checkpoint"):
        quiet_train(cfg, run)
    assert all(not bad for bad in pt_files_are_finite(run).values())


# ---- 2. no lost history, resume from the checkpoint's config -----------------------------------
def test_resume_survives_an_empty_config_a_torn_log_line_and_stale_temporaries(finished_run, tmp_path, caplog):
    run = copy_run(finished_run, tmp_path)
    (run / "config.yaml").write_text("")  # a kill during the rewrite at the last (re)start
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "loss": 0.')  # a kill mid-append
    stale = [run / ".last.pt.abc123.tmp", run / ".metrics.jsonl.def456.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads != 1 else 2)
    try:
        with caplog.at_level(logging.WARNING, logger="svde.training.state"):
            cfg = resume_config(run, ["train.steps=3"])
            assert (cfg.data.height, cfg.data.batch_size) == (64, 2)  # the checkpoint's, not the defaults
            quiet_train(cfg, run, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert "missing or empty" in caplog.text and "bit-identical" in caplog.text
    assert not any(path.exists() for path in stale)
    assert [r["step"] for r in records(run)] == [1, 2, 3]
    assert build_config(read_checkpoint(run / "last.pt")["config"]) == cfg
    assert (run / "config.yaml").stat().st_size > 0


def test_resume_refuses_a_conflicting_config_naming_the_keys(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    with pytest.raises(ConfigError, match=r"model\.name.*'mn_lrn4' -> 'b0_lrn4'"):
        resume_config(run, ["model.name=b0_lrn4"])
    stored = read_checkpoint(run / "last.pt")["config"]
    changed = build_config(stored, ["data.height=96", "optim.lr=0.5"])
    with pytest.raises(ConfigError, match=r"data\.height, optim\.lr"):
        train(changed, run, resume=True)  # the API checks too, before any work
    assert read_checkpoint(run / "last.pt")["step"] == 2
    assert resume_config(run, ["train.steps=5", "train.log_every=2"]).train.steps == 5  # safe keys


def crash_at_loss_call(monkeypatch, n):
    from svde import losses

    real, calls = losses.mixture_loss, {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "mixture_loss", crashing)


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_killed_before_its_first_checkpoint_restarts_without_duplicate_lines(tmp_path, monkeypatch, resume):
    cfg = build_config(tiny_raw(val={"every": 0}))
    run = tmp_path / "run"
    crash_at_loss_call(monkeypatch, 2)  # after step 1 was logged, before the step-2 checkpoint
    with pytest.raises(KeyboardInterrupt):
        quiet_train(cfg, run)
    monkeypatch.undo()
    assert not (run / "last.pt").exists() and [r["step"] for r in records(run)] == [1]
    quiet_train(resume_config(run) if resume else cfg, run, resume=resume)
    assert [r["step"] for r in records(run)] == [1, 2]
    assert read_checkpoint(run / "last.pt")["step"] == 2


def test_tensorboard_and_metrics_keep_the_resumed_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = RunLogger(tmp_path)
    for step in range(1, 5):
        first.record(step, {"loss": float(step)})
    first.close()
    resumed = RunLogger(tmp_path, resume_step=2)  # the checkpoint was written at step 2
    resumed.record(3, {"loss": 30.0})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in records(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_a_broken_metrics_line_before_the_last_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(svde.errors.UserError, match=r"metrics\.jsonl:2: not a JSON line"):
        RunLogger(tmp_path, resume_step=2)
    assert (tmp_path / "metrics.jsonl").read_text().count("step") == 2  # left as it was


# ---- 3. everything validated before the first step ---------------------------------------------
def test_a_bad_val_metric_fails_before_the_first_step(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny_raw()))
    code = svde_run_main(script_main(), ["--config", str(config), "--out", str(tmp_path / "run"), "val.metric=foo"])
    err = capsys.readouterr().err
    assert code == 2 and "val.metric 'foo'" in err and "delta1_err" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unusable_device_and_run_folder_fail_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(svde.errors.UserError, match="not writable"):
        train(build_config(tiny_raw(val={"every": 0})), blocker / "run")
    if not torch.cuda.is_available():
        with pytest.raises(svde.errors.UserError, match="CUDA is not available"):
            train(build_config(tiny_raw(train={"device": "cuda"})), tmp_path / "run")
        assert not (tmp_path / "run").exists()


# ---- 4. a dataset without valid depth -----------------------------------------------------------
def test_a_dataset_without_any_valid_depth_fails_before_training(tmp_path, monkeypatch):
    from svde.data.synthetic import SyntheticDataset

    real = SyntheticDataset.read
    monkeypatch.setattr(SyntheticDataset, "read", lambda self, record: {**real(self, record),
                                                                        "target": real(self, record)["target"] * 0})
    raw = tiny_raw(val={"every": 0})
    with pytest.raises(DataError, match=r"data\.train\.0 \(synthetic\).*no.*valid depth pixel|valid depth pixel"):
        train(build_config(raw), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "last.pt").exists()


# ---- 5. bounded distributed failure -------------------------------------------------------------
def test_the_process_group_timeout_comes_from_the_config(monkeypatch):
    import svde.training.distributed as distributed

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    ctx = distributed.init_distributed("cpu", timeout_s=42.0)
    assert ctx.world_size == 2 and seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=42)}

    monkeypatch.setattr(trainer, "init_distributed", lambda device, timeout_s: seen.update(used=timeout_s) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(build_config(tiny_raw(train={"ddp_timeout_s": 7.5})), "unused")
    assert seen["used"] == 7.5 and build_config({}).train.ddp_timeout_s == 300.0  # far below gloo's 30 minutes


# ---- 6. checkpoint loading messages -------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_malicious_checkpoint_is_reported_as_unsafe_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "svde", "model": _Payload(str(marker))}, evil)
    for load in (read_checkpoint, load_model):
        with pytest.raises(CheckpointError) as err:
            load(evil)
        message = str(err.value)
        assert "not a safe checkpoint (it holds Python objects that weights_only loading refuses" in message
        assert str(evil) in message and "False" not in message and "truncated" not in message
    assert not marker.exists()


def test_truncated_and_missing_checkpoints_are_named(tmp_path, mn_checkpoint):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(mn_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.pt \(1000 bytes\): truncated"):
        read_checkpoint(cut)
    with pytest.raises(CheckpointError, match=r"nothere\.pt does not exist"):
        load_model(tmp_path / "nothere.pt")
