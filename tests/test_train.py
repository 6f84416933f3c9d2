"""The trainer on tiny synthetic runs: loss configurations, logs and checkpoints, resume, errors, DDP."""

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import svde.data.sampling as sampling
import svde.training.loaders as loaders
from svde.config import build_config, read_yaml
from svde.data import DataError
from svde.models import load_model, read_checkpoint
from svde.training import TrainingError, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"height": 64, "width": 64}  # 32x32 would leave a 1x1 bottleneck: degenerate BatchNorm statistics


def tiny_raw(**sections):
    """A seconds-long run: mn_lrn4 on 64x64 synthetic rooms, absolute + converted UTSS data."""
    raw = {
        "name": "tiny",
        "data": {"train": [{"name": "synthetic", "options": {"length": 8, "height": 72, "width": 80}},
                           {"name": "synthetic", "convert": "utss", "options": {"length": 8, **TINY, "seed": 1}}],
                 **TINY, "batch_size": 2, "epoch_length": 8},
        "val": {"dataset": {"name": "synthetic", "split": "val", "options": {"length": 1, **TINY}},
                "every": 2, "short_side": 64, "batch_size": 1},
        "train": {"steps": 2, "log_every": 1, "checkpoint_every": 2, "image_every": 2},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loss", [
    {"si_weight": 1.0, "ssi_weight": 0.0},  # SI only (UTSS samples contribute nothing)
    {"si_weight": 0.0, "ssi_weight": 1.0},  # SSI only
    {"si_types": []},  # no sample gets SI, all get SSI
])
def test_every_loss_configuration_trains(tmp_path, loss):
    cfg = build_config(tiny_raw(loss=loss, val={"every": 0}))
    summary = train(cfg, tmp_path / "run")
    logs = records(summary["run_dir"])
    assert [r["step"] for r in logs] == [1, 2]
    for r in logs:
        assert all(math.isfinite(r[k]) for k in ("loss", "si", "ssi", "lr", "images_per_s"))
        assert r["loss"] == pytest.approx(cfg.loss.si_weight * r["si"] + cfg.loss.ssi_weight * r["ssi"], rel=1e-5)
        if not cfg.loss.si_types:
            assert r["si"] == 0.0  # nothing was given SI
    assert read_checkpoint(summary["last"])["step"] == 2 and summary["best"] is None  # no validation, no best


def test_schedule_clipping_and_contiguous_layout(tmp_path):
    cfg = build_config(tiny_raw(train={"channels_last": False, "steps": 3}, val={"every": 0},
                                optim={"name": "adamw", "grad_clip": 0.5, "schedule": "cosine", "warmup_steps": 1}))
    logs = records(train(cfg, tmp_path / "run")["run_dir"])
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in logs)
    # the lr each step used: warm-up (1 step), then cosine over the remaining 2 steps
    assert [r["lr"] for r in logs] == pytest.approx([1e-3, 1e-3, 5e-4])


@pytest.mark.slow  # bf16 autocast is emulated on most CPUs: tens of seconds for one tiny step
def test_bf16_autocast_on_cpu(tmp_path):
    cfg = build_config(tiny_raw(train={"amp": "bf16", "steps": 1}, val={"every": 0}))
    logs = records(train(cfg, tmp_path / "run")["run_dir"])
    assert len(logs) == 1 and math.isfinite(logs[0]["loss"])


def test_mixture_run_logs_validates_and_checkpoints(tmp_path):
    """Eq. 5 on absolute + UTSS data: logs, validation from step 0, last/best checkpoints with the config."""
    cfg = build_config(tiny_raw())
    summary = train(cfg, tmp_path / "run")
    run = Path(summary["run_dir"])

    logs = records(run)
    train_logs = [r for r in logs if "loss" in r]
    val_logs = [r for r in logs if "val_delta1_err" in r]
    assert [r["step"] for r in train_logs] == [1, 2]
    assert [r["step"] for r in val_logs] == [0, 2]  # step 0: the untrained model's score
    for r in train_logs:
        assert r["si"] > 0 and r["ssi"] > 0 and r["images_per_s"] > 0
        assert r["loss"] == pytest.approx(r["si"] + r["ssi"], rel=1e-5)
    assert all(0 <= r["val_delta1_err"] <= 1 and r["val_abs_rel"] > 0 for r in val_logs)
    assert summary["val"]["first"]["step"] == 0 and summary["val"]["last"]["step"] == 2

    last = read_checkpoint(run / "last.pt")
    assert last["step"] == 2 and last["config"] == cfg.to_dict()
    assert build_config(last["config"]) == cfg  # the checkpoint alone rebuilds the run
    assert load_model(run / "last.pt").name == "mn_lrn4"
    best = read_checkpoint(run / "best.pt")
    assert best["best"] == pytest.approx(min(r["val_delta1_err"] for r in val_logs))
    assert build_config(read_yaml(run / "config.yaml")) == cfg
    events = list((run / "tb").iterdir())
    assert events and events[0].stat().st_size > 0


def _weights(path):
    return read_checkpoint(path)["model"]


def test_resume_ends_with_the_same_weights_as_a_straight_run(tmp_path, monkeypatch):
    # warm-up + linear decay: the schedule's position must survive the restart too
    raw = tiny_raw(train={"steps": 4, "checkpoint_every": 2}, optim={"schedule": "linear", "warmup_steps": 2},
                   val={"every": 3})
    cfg = build_config(raw)
    straight = train(cfg, tmp_path / "straight")

    from svde import losses

    real = losses.mixture_loss
    calls = {"n": 0}

    def crashing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # during step 4, after the step-2 checkpoint and step 3
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "mixture_loss", crashing_loss)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed")
    monkeypatch.undo()
    interrupted = _weights(tmp_path / "resumed" / "last.pt")
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 2

    train(cfg, tmp_path / "resumed", resume=True)
    a, b = _weights(straight["last"]), _weights(tmp_path / "resumed" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # not trivially equal: the last two steps changed the weights
    assert any(not torch.equal(a[k], interrupted[k]) for k in a)
    # the resumed run's log reads as one run: each step logged once, validations included
    assert [r["step"] for r in records(tmp_path / "resumed")] == [r["step"] for r in records(straight["run_dir"])]


def test_non_finite_loss_skips_the_step_then_stops(tmp_path, monkeypatch):
    from svde import losses

    real = losses.mixture_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        if calls["n"] == 2:  # one bad batch: skipped with a warning, the run goes on
            out = {**out, "loss": out["loss"] * float("nan")}
        if calls["n"] == 3:  # a NaN prediction makes the loss raise: skipped the same way
            raise FloatingPointError("mixture_loss: pred is NaN/inf at valid pixels of sample(s) [0]")
        return out

    monkeypatch.setattr(losses, "mixture_loss", flaky)
    with pytest.warns(UserWarning, match="non-finite loss"):
        train(build_config(tiny_raw(val={"every": 0})), tmp_path / "flaky")
    assert calls["n"] == 4  # 2 good steps + the two skipped ones
    assert read_checkpoint(tmp_path / "flaky" / "last.pt")["step"] == 2

    monkeypatch.setattr(losses, "mixture_loss", lambda *a, **k: {**real(*a, **k), "loss": torch.tensor(float("inf"),
                                                                                                          requires_grad=True)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingError, match="3 consecutive non-finite"):
            train(build_config(tiny_raw(train={"max_nonfinite": 3}, val={"every": 0})), tmp_path / "broken")
    assert not (tmp_path / "broken" / "last.pt").exists()


def test_missing_data_root_fails_before_training(tmp_path):
    raw = tiny_raw()
    raw["data"]["train"].append({"name": "redweb", "root": str(tmp_path / "no_such_redweb")})
    with pytest.raises(DataError, match="no_such_redweb"):
        train(build_config(raw), tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_existing_run_is_not_overwritten_and_resume_needs_a_run(tmp_path):
    cfg = build_config(tiny_raw(train={"steps": 1}, val={"every": 0}))
    train(cfg, tmp_path / "run")
    with pytest.raises(TrainingError, match="--resume"):
        train(cfg, tmp_path / "run")
    with pytest.raises(TrainingError, match="no last.pt"):
        train(cfg, tmp_path / "empty", resume=True)


def test_a_run_from_before_colour_on_resumes_with_its_jitter_in_the_workers(tmp_path):
    """A last.pt whose stored config has no data.colour_on (svde 0.2) resumes with "workers", as it
    trained, not auto (which would move the jitter to the device on CUDA); an override still wins."""
    from svde.training import resume_config

    cfg = build_config(tiny_raw(train={"steps": 1}, val={"every": 0}))
    run = tmp_path / "run"
    train(cfg, run)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert resume_config(run).data.colour_on == "auto"  # a run that has the key keeps it
    assert resume_config(run).data.warp_on == "auto"
    del ckpt["config"]["data"]["warp_on"]  # a run from before data.warp_on (svde 0.3's first colour_on)
    torch.save(ckpt, run / "last.pt")
    assert (resume_config(run).data.colour_on, resume_config(run).data.warp_on) == ("auto", "workers")
    del ckpt["config"]["data"]["colour_on"]
    torch.save(ckpt, run / "last.pt")
    assert (resume_config(run).data.colour_on, resume_config(run).data.warp_on) == ("workers", "workers")
    assert resume_config(run, ["data.colour_on=device"]).data.colour_on == "device"
    assert resume_config(run, ["data.colour_on=device", "data.warp_on=device"]).data.warp_on == "device"


def run_script(args, launcher=(sys.executable,)):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, str(REPO / "scripts" / "train.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def write_tiny_config(tmp_path, **sections):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(**sections)))
    return path


def test_cli_rejects_a_misspelled_override_before_any_work(tmp_path):
    config = write_tiny_config(tmp_path)
    proc = run_script(["--config", str(config), "--out", str(tmp_path / "run"), "train.stpes=3"])
    assert proc.returncode == 2
    assert "train.stpes" in proc.stderr and "did you mean 'steps'" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_cli_trains_and_says_where_the_results_are(tmp_path):
    config = write_tiny_config(tmp_path)
    proc = run_script(["--config", str(config), "--out", str(tmp_path / "run")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for needle in ("run folder:", "checkpoint:", str(tmp_path / "run" / "last.pt"), "tensorboard --logdir"):
        assert needle in proc.stdout
    # --resume alone reads the run's own config.yaml; an override extends the run
    proc = run_script(["--resume", str(tmp_path / "run"), "train.steps=3"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3
    assert [r["step"] for r in records(tmp_path / "run") if "loss" in r] == [1, 2, 3]


def test_ddp_two_cpu_processes(tmp_path):
    """torchrun, gloo: both ranks train on their shares; rank 0 alone logs and checkpoints."""
    config = write_tiny_config(tmp_path, train={"device": "cpu", "log_every": 2})
    proc = run_script(["--config", str(config), "--out", str(tmp_path / "run")],
                      launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    logs = records(tmp_path / "run")
    assert [r["step"] for r in logs if "loss" in r] == [2]  # one writer
    assert proc.stdout.count("run folder:") == 1
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 2 and len(ckpt["rng"]) == 2  # both ranks' random states


DDP_RAW = {"optim": {"name": "sgd", "lr": 0.1}, "model": {"name": "mn_lrn4"}}  # SGD's first step: w - lr * g


def _ddp_batch(rank):
    from svde.data import SyntheticDataset, collate

    return collate([SyntheticDataset(length=2, **TINY)[rank]])  # different data on each rank


def _ddp_worker(rank, world_size, port, out):
    """One rank of a CPU gloo run: svde's own TrainState.wrap (DDP) and train_step, one step."""
    from svde.training.checkpoints import Checkpointer
    from svde.training.distributed import cleanup, init_distributed
    from svde.training.state import TrainState
    from svde.training.step import train_step

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu", timeout_s=60)
    cfg = build_config(DDP_RAW)
    torch.manual_seed(0)
    state = TrainState.build(cfg, ctx.device)
    state.wrap(ctx, compile=False)
    assert train_step(state, _ddp_batch(rank), cfg, ctx, Checkpointer(Path(out), cfg)) is not None
    torch.save(dict(state.raw_model.named_parameters()), Path(out) / f"rank{rank}.pt")
    cleanup(ctx)


@pytest.mark.slow  # two spawned processes, about 10 s
def test_a_ddp_step_applies_the_gradient_averaged_over_ranks(tmp_path):
    """Two gloo ranks on different data end one step with the same weights: those of a single
    process that averages the two ranks' gradients and takes the SGD step ``w - lr * mean(g)``."""
    import socket

    from svde import losses
    from svde.training.state import TrainState

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    cfg = build_config(DDP_RAW)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: the same summation order, so float rounding agrees too
    torch.manual_seed(0)
    ref = TrainState.build(cfg, torch.device("cpu"))
    start = {n: p.detach().clone() for n, p in ref.raw_model.named_parameters()}
    grads = []
    for rank in range(2):  # each rank's own gradient, as its process computes it (BatchNorm on its batch)
        batch = _ddp_batch(rank)
        ref.raw_model.zero_grad(set_to_none=True)
        pred = ref.raw_model(batch["image"])
        losses.mixture_loss(pred.float(), batch["target"], batch["mask"], batch["depth_type"],
                            si_weight=cfg.loss.si_weight, ssi_weight=cfg.loss.ssi_weight, si_types=cfg.loss.si_types,
                            si_reduction=cfg.loss.si_reduction)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in ref.raw_model.named_parameters()})
    torch.set_num_threads(threads)
    expected = {n: start[n] - cfg.optim.lr * (grads[0][n] + grads[1][n]) / 2 for n in start}
    assert set(ranks[0]) == set(expected) and len(expected) > 100
    assert any(not torch.allclose(grads[0][n], grads[1][n]) for n in start)  # the ranks' data really differ
    torch.testing.assert_close(ranks[0], ranks[1], rtol=0, atol=0)  # every rank holds the same weights
    torch.testing.assert_close(ranks[0], expected, rtol=1e-5, atol=1e-6)
    moved = max((ranks[0][n] - start[n]).abs().max().item() for n in start)
    alone = max((start[n] - cfg.optim.lr * grads[0][n] - ranks[0][n]).abs().max().item() for n in start)
    assert moved > 1e-3 and alone > 100 * 1e-6  # a step was taken, and not on rank 0's gradient alone


def test_ranks_get_disjoint_shares_of_an_epoch():
    from svde.data.mixing import MixedDataset
    from svde.data.synthetic import SyntheticDataset

    mixed = MixedDataset([SyntheticDataset(length=8, **TINY)], [1.0], epoch_length=10)
    shares = []
    for rank in range(2):
        sampler = sampling.ResumableSampler(mixed, rank=rank, world_size=2)
        sampler.set_epoch(3)
        shares.append(list(sampler))
    assert not set(shares[0]) & set(shares[1]) and len(shares[0]) == len(shares[1]) == 5
    sampler.set_epoch(3, skip=2)
    assert list(sampler) == shares[1][2:]


def test_seeded_samples_do_not_depend_on_the_callers_random_state():
    from svde.data.mixing import MixedDataset
    from svde.data.synthetic import SyntheticDataset

    ds = SyntheticDataset(length=4, height=72, width=80, transform=loaders.build_train_transform(64, 64))
    seeded = sampling.SeededSamples(MixedDataset([ds], [1.0], epoch_length=4), seed=0)
    torch.manual_seed(1)
    a = seeded[(0, 1)]
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = seeded[(0, 1)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    torch.manual_seed(1)
    seeded[(0, 1)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is left as it was
