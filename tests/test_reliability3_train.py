"""Issue 22 ("Reliability 3"), items 1, 2 and the training parts of 6: divergence is judged on what
the scale- and shift-invariant losses cannot see (the weights' norm and its growth, saturated or
non-finite predictions), a checkpoint is good only if its model predicts usable values on a probe
batch, validating a broken model is a failed run (exit 1, one line), a full disk and a dataset
error in a DataLoader worker are one ``error:`` line, and run-folder and data-size mistakes are
user errors (exit 2)."""

from __future__ import annotations

import errno
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import svde.atomic
import svde.training.trainer as trainer
from svde.cli.common import run_main
from svde.cli.train import main as train_main
from svde.config import build_config
from svde.models import build_model, load_model, read_checkpoint
from svde.training import TrainingError, train
from test_train import records, tiny_raw  # tests/ is on sys.path (pytest rootdir-relative imports)


def svde_train(argv: list, capsys) -> tuple[int, str]:
    """``svde train argv`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = run_main(train_main, [str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")]  # \r: progress bars
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def write_config(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(tiny_raw(**sections)))  # JSON is YAML
    return path


def named_checkpoint(line: str) -> tuple[Path, int]:
    found = re.search(r"Last good checkpoint: (\S+) \(step (\d+)", line)
    assert found, line
    return Path(found.group(1)), int(found.group(2))


def eval_mode_prediction(path: Path) -> torch.Tensor:
    """The checkpoint's model, in eval mode, on a synthetic room (what inference computes)."""
    from svde.data import SyntheticDataset

    model = load_model(path)
    with torch.no_grad():
        return model(SyntheticDataset(length=1, height=64, width=64)[0]["image"][None])


# ---- item 1: Adam at lr 1 diverges while the loss stays near 2 ----------------------------------
def test_adam_at_lr_1_exits_1_naming_a_checkpoint_that_predicts_finite_values(tmp_path, capsys):
    """The issue's acceptance: `svde train ... optim.name=adam optim.lr=1 train.steps=20` on the tiny
    config. Before: the loss stayed near 2, the run exited 0 (or with a validation traceback) and
    last.pt predicted 1e26."""
    run = tmp_path / "run"
    code, err = svde_train(["--config", write_config(tmp_path), "--out", run, "optim.name=adam", "optim.lr=1",
                            "train.steps=20"], capsys)
    line = one_error(err)
    assert code == 1, err[-2000:]
    assert "diverged" in line and "train.diverge_norm_factor" in line
    path, step = named_checkpoint(line)
    assert path == run / "last.pt" and path.is_file() and read_checkpoint(path)["step"] == step
    pred = eval_mode_prediction(path)
    assert torch.isfinite(pred).all() and pred.abs().max() < 50
    assert all(r["loss"] < 10 for r in records(run) if "loss" in r)  # what the loss saw: nothing alarming


def test_a_normal_run_is_not_stopped_and_logs_what_the_checks_see(tmp_path):
    """The quickstart's optimiser (Adam, lr 1e-3) on the tiny config: the weights' norm barely moves."""
    cfg = build_config(tiny_raw(optim={"name": "adam", "lr": 1e-3}, train={"steps": 6, "log_every": 1},
                                val={"every": 0}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cfg, tmp_path / "run")
    logs = [r for r in records(tmp_path / "run") if "loss" in r]
    torch.manual_seed(cfg.train.seed)
    norm0 = float(torch.linalg.vector_norm(torch.stack([p.detach().norm() for p in build_model("mn_lrn4").parameters()])))
    assert [r["step"] for r in logs] == list(range(1, 7))
    assert max(r["param_norm"] for r in logs) < 1.05 * norm0  # the limit is 10 x
    assert max(r["pred_absmax"] for r in logs) < 5  # the limit is 50


def test_saturated_training_predictions_stop_the_run(tmp_path, monkeypatch):
    """A prediction beyond train.diverge_output_bound stops the run even when the loss is fine."""
    real = trainer.train_step

    def saturating(state, batch, cfg, ctx, checkpoints):
        if state.step == 1:  # the head's bias moves every prediction by 100 (the losses do not notice)
            with torch.no_grad():
                state.raw_model.head.conv.bias += 100.0
        return real(state, batch, cfg, ctx, checkpoints)

    monkeypatch.setattr(trainer, "train_step", saturating)
    cfg = build_config(tiny_raw(train={"steps": 4, "checkpoint_every": 1}, val={"every": 0}))
    with warnings.catch_warnings(), pytest.raises(TrainingError, match=r"step 2: a training prediction reached "
                                                  r"\|log-disparity\| .* beyond train.diverge_output_bound=50"):
        warnings.simplefilter("ignore")
        train(cfg, tmp_path / "run")
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1


# ---- item 2: the last good checkpoint is usable; validating a broken model fails cleanly ---------
def break_eval_mode_after(monkeypatch, step: int) -> None:
    """After ``step``, a BatchNorm running variance turns negative: training mode (batch statistics)
    goes on as before, eval mode (what a checkpoint is used in) predicts NaN."""
    real = trainer.train_step

    def breaking(state, batch, cfg, ctx, checkpoints):
        result = real(state, batch, cfg, ctx, checkpoints)
        if state.step == step:
            bn = next(m for m in state.raw_model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(-1.0)
        return result

    monkeypatch.setattr(trainer, "train_step", breaking)


def test_a_checkpoint_whose_model_predicts_nan_is_never_written_nor_called_good(tmp_path, monkeypatch, capsys):
    break_eval_mode_after(monkeypatch, 3)
    run = tmp_path / "run"
    code, err = svde_train(["--config", write_config(tmp_path, train={"steps": 6, "checkpoint_every": 2},
                                                     val={"every": 0}), "--out", run], capsys)
    line = one_error(err)
    assert code == 1 and "step 4: the model's eval-mode prediction of the probe images holds non-finite values" in line
    assert named_checkpoint(line) == (run / "last.pt", 2)
    assert read_checkpoint(run / "last.pt")["step"] == 2 and torch.isfinite(eval_mode_prediction(run / "last.pt")).all()


def test_validating_a_broken_model_is_a_failed_run_in_one_line(tmp_path, monkeypatch, capsys):
    """The probe is turned off here, so that validation meets the broken model (before: a raw ValueError)."""
    import svde.training.state as state_module

    monkeypatch.setattr(state_module.TrainState, "probe_problem", lambda self: None, raising=False)
    break_eval_mode_after(monkeypatch, 1)
    run = tmp_path / "run"
    code, err = svde_train(["--config", write_config(tmp_path, train={"steps": 4, "checkpoint_every": 2}), "--out", run],
                           capsys)
    line = one_error(err)
    assert code == 1, err[-2000:]
    assert "step 2: validation on synthetic:" in line and "non-finite" in line and "the run diverged" in line
    assert not (run / "last.pt").exists() or read_checkpoint(run / "last.pt")["step"] == 0


# ---- item 6: a full disk, a dataset error in a worker, user errors ------------------------------
def test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    real = svde.atomic.fsync_file

    def full(path):
        if Path(path).name.startswith(".last.pt.") and calls.append(path) is None and len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path)

    calls: list = []
    monkeypatch.setattr(svde.atomic, "fsync_file", full)
    run = tmp_path / "run"
    code, err = svde_train(["--config", write_config(tmp_path, train={"steps": 4, "checkpoint_every": 2},
                                                     val={"every": 0}), "--out", run], capsys)
    line = one_error(err)
    assert code == 1
    assert f"cannot write {run / 'last.pt'}: No space left on device" in line
    assert f"Last good checkpoint: {run / 'last.pt'} (step 2)" in line and f"--resume {run}" in line
    assert read_checkpoint(run / "last.pt")["step"] == 2 and sorted(p.name for p in run.glob(".*.tmp")) == []


def test_torch_saves_failed_write_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """What torch.save raises on a full disk: a RuntimeError of its stream writer."""
    def failing(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", failing)
    run = tmp_path / "run"
    code, err = svde_train(["--config", write_config(tmp_path, train={"steps": 2}, val={"every": 0}), "--out", run],
                           capsys)
    line = one_error(err)
    assert code == 1 and f"cannot write {run / 'last.pt'}: the write failed" in line and "is the disk full?" in line


def test_a_full_disk_for_the_config_copy_is_one_line(tmp_path, monkeypatch, capsys):
    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(svde.atomic, "fsync_file", full)
    run = tmp_path / "run"
    code, err = svde_train(["--config", write_config(tmp_path, val={"every": 0}), "--out", run], capsys)
    assert code == 1 and f"cannot write {run / 'config.yaml'}: No space left on device" in one_error(err)


def test_a_full_disk_for_the_metrics_log_is_one_line(tmp_path):
    from svde.training.logging import RunLogger

    logger = RunLogger(tmp_path)

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    logger._file = Full()
    with pytest.raises(TrainingError, match=f"cannot write {re.escape(str(tmp_path / 'metrics.jsonl'))}: No space"):
        logger.record(1, {"loss": 1.0})
    logger.close()  # logged, not raised: the error that stopped the run is the one shown


def rgbd_folder(root: Path, corrupt: set[int], n: int = 5) -> Path:
    """An rgbd_folder of ``n`` 72x80 samples; those in ``corrupt`` have a truncated PNG."""
    import cv2

    rng = np.random.default_rng(0)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir(parents=True)
    for i in range(n):
        ok, png = cv2.imencode(".png", rng.integers(0, 256, (72, 80, 3), dtype=np.uint8))
        data = png.tobytes()
        (root / "rgb" / f"{i}.png").write_bytes(data[: len(data) // 3] if i in corrupt else data)
        np.save(root / "depth" / f"{i}.npy", rng.uniform(1, 5, (72, 80)).astype(np.float32))
    return root


def test_a_dataset_error_in_a_dataloader_worker_is_the_datasets_one_line(tmp_path, capsys):
    root = rgbd_folder(tmp_path / "data", corrupt={1, 2, 3, 4})  # 0 is good: the depth check before training reads it
    raw = tiny_raw(val={"every": 0})
    raw["data"].update({"train": [{"name": "rgbd_folder", "root": str(root)}], "num_workers": 1, "epoch_length": 4})
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    code, err = svde_train(["--config", config, "--out", tmp_path / "run"], capsys)
    line = one_error(err)
    assert code == 2
    assert re.fullmatch(f"error: {re.escape(str(root / 'rgb'))}/[1-4].png: cannot decode the image "
                        r"\(corrupt or unsupported format\)", line), line


@pytest.mark.parametrize("change, fragment", [
    ({"data": {"batch_size": 16, "epoch_length": 8}}, "data.epoch_length=8 gives 8 samples per process, fewer than one "
                                                      "batch of 16"),
    ({"val": {"dataset": None, "holdout": 2, "every": 2}, "data": {"train": [
        {"name": "synthetic", "convert": "utss", "options": {"length": 8, "height": 64, "width": 64}}]}},
     "val.holdout=2: no training dataset has depth ground truth"),
])
def test_data_size_mistakes_are_user_errors(tmp_path, capsys, change, fragment):
    raw = tiny_raw()
    for key, value in change.items():
        raw[key] = {**raw[key], **value}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    code, err = svde_train(["--config", config, "--out", tmp_path / "run"], capsys)
    assert code == 2 and fragment in one_error(err)


def test_run_folder_mistakes_are_user_errors(tmp_path, capsys):
    config = write_config(tmp_path, train={"steps": 1}, val={"every": 0})
    assert svde_train(["--config", config, "--out", tmp_path / "run"], capsys)[0] == 0
    code, err = svde_train(["--config", config, "--out", tmp_path / "run"], capsys)
    assert code == 2 and "already holds a run" in one_error(err)
    code, err = svde_train(["--resume", tmp_path / "empty"], capsys)
    assert code == 2 and "nothing to resume" in one_error(err)


def test_a_folder_whose_run_diverged_at_once_starts_over(tmp_path, capsys):
    """Its last.pt is the initial state (step 0): a new run there, or --resume, starts from scratch."""
    run = tmp_path / "run"
    config = write_config(tmp_path, val={"every": 0})
    assert svde_train(["--config", config, "--out", run, "optim.name=adam", "optim.lr=1", "train.steps=20"],
                      capsys)[0] == 1
    assert read_checkpoint(run / "last.pt")["step"] == 0
    code, err = svde_train(["--config", config, "--out", run], capsys)
    assert code == 0, err[-2000:]
    assert read_checkpoint(run / "last.pt")["step"] == 2 and [r["step"] for r in records(run)] == [1, 2]
