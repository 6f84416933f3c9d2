"""The front door (issue 24): installing without a GPU, and ``--threads`` on every command, applied
before any work, with a default that does not oversubscribe the cores."""

import re
from pathlib import Path

import cv2
import pytest
import torch

from svde.cli import common
from svde.cli.common import apply_threads, default_threads
from svde.cli.main import COMMANDS, main
from svde.models import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
CI_LINES = (  # what CI runs (.ci/run): the README shows them as they are
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && python scripts/train.py '
    '--config configs/quickstart.yaml',
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && HF_HUB_OFFLINE=1 '
    'NO_ALBUMENTATIONS_UPDATE=1 python -m pytest -m "not slow"',
)


@pytest.fixture
def restore_threads():
    """Commands set this process's thread counts: put them back for the tests that follow."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


# ---- install -------------------------------------------------------------------------------------
def test_readme_shows_the_cpu_build_next_to_the_unchanged_install_lines():
    readme = (REPO / "README.md").read_text()
    lines = readme.splitlines()
    for line in CI_LINES:
        assert line in lines
    (cpu,) = [line for line in lines if "download.pytorch.org/whl/cpu" in line]
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and cpu.endswith('pip install -e ".[dev]"')
    assert lines.index(cpu) > lines.index(CI_LINES[1])  # next to them, after
    # the CPU wheels asked for are within pyproject.toml's bounds, or `pip install -e .` would replace them
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for package in ("torch", "torchvision"):
        (pin,) = [d for d in deps if re.match(rf"{package}[<>=]", d)]
        upper = re.search(r"<=\s*([\d.]+)", pin).group(1)
        assert f'"{package}<={upper}"' in cpu, (package, pin)
    assert "GB" in readme[readme.index("No NVIDIA GPU"):readme.index(cpu)]  # the sizes, with their source


# ---- --threads -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_takes_threads(name, capsys):
    assert main([name, "--help"]) == 0
    assert "--threads" in capsys.readouterr().out


THREADS_ZERO = {
    "predict": ["--model", "mn_lrn4", "photo.jpg"],
    "train": ["--config", str(REPO / "configs" / "quickstart.yaml")],
    "eval": ["--model", "mn_lrn4", "--datasets", "synthetic"],
    "export": ["--model", "mn_lrn4", "--out", "m.onnx"],
    "benchmark": [],
    "paper-table": ["--random-weights"],
    "poc": ["--config", str(REPO / "configs" / "poc" / "synthetic.yaml")],
}  # prepare-stereo: tests/test_stereo.py


@pytest.mark.parametrize("name", list(THREADS_ZERO))
def test_threads_below_one_is_one_error_line_before_any_work(name, tmp_path, monkeypatch, capsys, restore_threads):
    monkeypatch.chdir(tmp_path)
    assert main([name, *THREADS_ZERO[name], "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == ["error: --threads must be >= 1, got 0"]
    assert "Traceback" not in err and not list(tmp_path.iterdir())  # nothing written, nothing downloaded


def test_apply_threads_sets_torch_and_opencv(restore_threads):
    assert apply_threads(1) == 1 and torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    assert apply_threads(2) == 2 and cv2.getNumThreads() == 2
    # with data-loading workers, OpenCV gets one thread: the forked workers inherit it
    assert apply_threads(2, workers=3) == 2 and cv2.getNumThreads() == 1


def test_default_threads_leaves_cores_for_workers_and_torchrun(monkeypatch):
    monkeypatch.setattr(common, "available_cores", lambda: 8)
    monkeypatch.setattr(common, "busy_cores", lambda: 0)  # an idle machine (busy cores: below)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads(0) is None  # one process loading its own data: torch's own default
    assert default_threads(2) == 6 and default_threads(8) == 1  # workers run on one thread each
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(2) is None  # the user's OMP_NUM_THREADS wins
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc_per_node=4 (which sets OMP_NUM_THREADS=1)
    assert default_threads(0) == 2 and default_threads(1) == 1 and default_threads(5) == 1
    for workers in range(4):
        assert 4 * (default_threads(workers) + workers) <= 8 or default_threads(workers) == 1


def test_quickstart_does_not_oversubscribe_the_cores(monkeypatch, caplog):
    """Issue 25, item 4: with another program keeping a core busy, the default leaves it alone."""
    from svde.config import load_config

    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    assert cfg.data.num_workers == 0  # the rooms are rendered in the training process: its threads are all
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(common, "available_cores", lambda: 2)
    monkeypatch.setattr(common, "busy_cores", lambda: 0)
    assert default_threads(cfg.data.num_workers) is None  # an idle machine: torch's own (all cores)
    monkeypatch.setattr(common, "busy_cores", lambda: 1)
    with caplog.at_level("INFO"):
        assert default_threads(cfg.data.num_workers) == 1 and default_threads(2) == 1
    assert "1 of this process's 2 CPU cores are busy with other programs: leaving them alone" in caplog.text
    monkeypatch.setattr(common, "busy_cores", lambda: 2)  # every core busy: still one thread, never zero
    assert default_threads(0) == 1
    monkeypatch.setattr(common, "available_cores", lambda: 8)
    monkeypatch.setattr(common, "busy_cores", lambda: 3)
    assert default_threads(0) == 5 and default_threads(2) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_threads(0) == 4  # under torchrun the starting sibling ranks are not counted as busy: 8 // 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert default_threads(0) is None  # the user's choice wins
    readme = (REPO / "README.md").read_text()
    assert "python scripts/train.py --config configs/quickstart.yaml --threads 1" in readme


@pytest.mark.skipif(not Path("/proc/stat").exists() or common.available_cores() < 2, reason="needs Linux, 2 cores")
def test_busy_cores_sees_a_program_spinning():
    import subprocess
    import sys
    import time

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert common.busy_cores(0.5) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_cpu_ticks_reads_proc_stat_lines(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 5 0 0 0 0 0\ncpu0 4 0 6 50 2 0 0 0 0 0\ncpu1 6 0 4 50 3 0 0 1 0 0\n"
                    "intr 123\nctxt 9\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(stat if path == "/proc/stat" else path, *a, **k))
    assert common._cpu_ticks() == {0: (52, 62), 1: (53, 64)}


def test_train_threads_reach_the_trainer_before_work(tmp_path, restore_threads):
    import yaml

    tiny = {"height": 64, "width": 64}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny",
        "data": {"train": [{"name": "synthetic", "options": {"length": 4, **tiny}}], **tiny, "batch_size": 2,
                 "epoch_length": 4},
        "val": {"every": 0},
        "train": {"steps": 1, "log_every": 1, "checkpoint_every": 1, "image_every": 1, "device": "cpu"},
    }))
    torch.set_num_threads(2)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--threads", "1"]) == 0
    assert read_checkpoint(tmp_path / "run" / "last.pt")["threads"] == 1  # what the trainer ran on


def test_a_resume_keeps_the_thread_count_it_was_written_on(tmp_path, restore_threads, monkeypatch, caplog):
    """Without --threads a resumed run takes its last.pt's thread count, whatever the load now
    (busy_cores would pick another), so it stays bit-identical; --threads still wins."""
    import yaml

    from svde.training.checkpoints import resume_plan

    tiny = {"height": 64, "width": 64}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "val": {"every": 0},
        "data": {"train": [{"name": "synthetic", "options": {"length": 4, **tiny}}], **tiny, "batch_size": 2,
                 "epoch_length": 4},
        "train": {"steps": 1, "log_every": 1, "checkpoint_every": 1, "image_every": 0, "device": "cpu"}}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--threads", "1"]) == 0
    assert resume_plan(run)[1] == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(common, "available_cores", lambda: 2)
    monkeypatch.setattr(common, "busy_cores", lambda: 0)  # the default alone would now take 2
    torch.set_num_threads(2)
    with caplog.at_level("INFO"):
        assert main(["train", "--resume", str(run), "train.steps=2"]) == 0
    assert torch.get_num_threads() == 1 and read_checkpoint(run / "last.pt")["threads"] == 1
    assert "resuming on the 1 CPU thread(s) the run was written on" in caplog.text
    assert "no longer bit-identical" not in caplog.text
    assert main(["train", "--resume", str(run), "train.steps=3", "--threads", "2"]) == 0
    assert read_checkpoint(run / "last.pt")["threads"] == 2
    # not taken where it would oversubscribe the cores, nor against OMP_NUM_THREADS
    monkeypatch.setattr(common, "available_cores", lambda: 1)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["train", "--resume", str(run), "train.steps=4"]) == 0
    assert "resuming on the" not in caplog.text
    monkeypatch.setattr(common, "available_cores", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["train", "--resume", str(run), "train.steps=5"]) == 0
    assert "resuming on the" not in caplog.text  # (torch read OMP_NUM_THREADS at its start: a new process)
