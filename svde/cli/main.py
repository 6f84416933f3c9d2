"""The ``svde`` command: ``svde <command> [options]`` runs one of the subcommands below.

Each subcommand is the same program as ``python scripts/<command>.py`` (the subcommand's
module, :mod:`svde.cli.<command>`, is imported only when it runs, so ``svde --help`` is quick).
``svde <command> --help`` shows its options; errors follow :func:`svde.cli.common.run_main`
(one ``error:`` line, exit 2 for bad input, 1 when the work failed; ``--debug``: traceback).

Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    usage: svde [--help] [--version] <command> [options]
    ...
    0
"""

from __future__ import annotations

import difflib
import functools
import importlib
import sys
from typing import NamedTuple, Sequence

EXIT_USAGE = 2


class Command(NamedTuple):
    """A subcommand: the module with its ``main(argv, prog)``, one line for ``svde --help``, and
    the script that runs the same program."""

    module: str
    summary: str
    script: str


COMMANDS: dict[str, Command] = {
    "predict": Command("svde.cli.predict", "depth for photos and videos: released weights by name, or a checkpoint",
            "scripts/predict.py"),
    "train": Command("svde.cli.train", "train a model from a YAML config (or resume a run)",
            "scripts/train.py"),
    "eval": Command("svde.cli.eval", "zero-shot evaluation with the paper's protocol",
            "scripts/eval.py"),
    "export": Command("svde.cli.export", "export a model to ONNX or TorchScript, checked against PyTorch",
            "scripts/export.py"),
    "benchmark": Command("svde.cli.benchmark", "parameters, multiply-adds, latency and FPS of the models",
            "scripts/benchmark.py"),
    "paper-table": Command("svde.cli.paper_table", "measured vs published results of the released models",
            "scripts/paper_table.py"),
    "poc": Command("svde.cli.poc", "the paper's proof of concept (§4.4.1, Fig. 2): a resumable sweep",
            "scripts/experiments/poc.py"),
    "prepare-stereo": Command("svde.cli.prepare_stereo", "stereo pairs or 3D videos -> UTSS training data (stereo_folder)",
            "scripts/prepare_stereo.py"),
    "demo": Command("svde.cli.demo", "a local web app: drop a photo, see its depth, a 3D mesh, get the files",
            "scripts/demo.py"),
}


def usage() -> str:
    """The text of ``svde --help``."""
    from svde import __version__

    width = max(map(len, COMMANDS))
    lines = ["usage: svde [--help] [--version] <command> [options]", "",
             f"svde {__version__}: light-weight, geometry-preserving single-view depth (Romanov et al., 2020).",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", "svde <command> --help shows a command's options; the same programs run as scripts: "
                  + ", ".join(f"python {cmd.script}" for cmd in COMMANDS.values()) + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``svde argv`` and return the exit status (the console script ``svde`` calls this)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        from svde import __version__

        print(f"svde {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"usage: svde <command> [options]\nerror: unknown command {name!r}{hint}; "
              f"valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    from svde.cli.common import run_main  # imports torch: only once a command runs

    module = importlib.import_module(COMMANDS[name].module)
    try:
        return run_main(functools.partial(module.main, prog=f"svde {name}"), argv[1:])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
