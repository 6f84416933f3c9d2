"""The ``svde`` command (svde.cli.main): subcommands, help, unknown names, ``python -m svde``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from svde.cli.main import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"svde": "svde.cli.main:main"}


def test_help_lists_every_subcommand_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: svde ")
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == ["predict", "train", "eval", "export", "benchmark", "paper-table", "poc", "prepare-stereo",
                      "demo"] == list(COMMANDS)
    for name, command in COMMANDS.items():
        assert f"  {name}" in out and command.summary in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_subcommand_help_is_the_commands_own(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: svde {name} ")
    assert "--debug" in out  # every command takes it (svde.cli.common.run_main)


def test_unknown_subcommand_lists_the_valid_ones(capsys):
    assert main(["predcit", "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'predcit' (did you mean 'predict'?)" in err
    assert "valid commands: predict, train, eval, export, benchmark, paper-table" in err
    assert main([]) == 2 and "usage: svde" in capsys.readouterr().out


def test_subcommand_errors_follow_the_convention(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["eval", "--checkpoint", str(missing), "--datasets", "synthetic", "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and str(missing) in err and "Traceback" not in err
    assert main(["benchmark", "--batch", "0"]) == 2  # checked before any model is built
    assert "--batch must be >= 1" in capsys.readouterr().err
    assert main(["export", "--random-weights", "--out", str(tmp_path / "m.onnx")]) == 2  # argparse: needs --model
    assert "--model NAME" in capsys.readouterr().err


def test_python_dash_m_runs_the_command_without_importing_torch_for_help():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = ("import sys; from svde.cli.main import main; rc = main(['--help']); "
            "assert 'torch' not in sys.modules, 'svde --help imported torch'; sys.exit(rc)")
    for argv in (["-m", "svde", "--help"], ["-m", "svde.cli.main", "--help"], ["-c", code]):
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "paper-table" in proc.stdout and proc.stderr == ""


def readme_commands() -> list[tuple[str, list[str]]]:
    """(command module, argv) of every svde / scripts/<name>.py command line in README.md's bash blocks."""
    import re
    import shlex

    text = (REPO / "README.md").read_text()
    modules = {name: cmd.module.rsplit(".", 1)[1] for name, cmd in COMMANDS.items()}
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:  # each part of "a && b"
                part, tokens = (tokens[:tokens.index("&&")], tokens[tokens.index("&&") + 1:]) if "&&" in tokens \
                    else (tokens, [])
                if part[:1] == ["svde"]:
                    assert part[1] in modules, part
                    found.append((modules[part[1]], part[2:]))
                script = next((i for i, t in enumerate(part) if re.fullmatch(r"scripts/(?:experiments/)?\w+\.py", t)), None)
                if script is not None:
                    found.append((Path(part[script]).stem, part[script + 1:]))
    return found


def test_every_readme_command_line_parses(monkeypatch):
    import importlib

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the README's --device cuda examples
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    commands = readme_commands()
    assert {m for m, _ in commands} == {"train", "eval", "predict", "export", "benchmark", "paper_table", "poc",
                                        "prepare_stereo", "demo"}
    for module, argv in commands:
        importlib.import_module(f"svde.cli.{module}").parse_args(argv)  # argparse exits on any unknown option
    text = (REPO / "README.md").read_text()
    for name, command in COMMANDS.items():  # both forms shown for every command
        assert f"svde {name} " in text and f"python {command.script} " in text
        assert (REPO / command.script).is_file()
