"""What every svde command shares: the error convention, the model-source arguments and the
checks every value gets before any work starts.

:func:`run_main` wraps a command's ``main(argv)``:

* an error svde raises on purpose (:mod:`svde.errors`) prints ``error: <message>`` on stderr and
  exits 2 (bad input) or 1 (the work failed), without a traceback;
* a missing or unreadable file the user named (``OSError`` with a file name) is a user error;
* ``--debug`` anywhere on the command line shows the full traceback instead;
* Ctrl-C exits 130 with one line; anything else is a bug and shows its traceback.

Example:
    >>> from svde.errors import UserError
    >>> def main(argv):
    ...     raise UserError("config.yaml: optim.lr must be finite and > 0, got inf")
    >>> run_main(main, [])  # doctest: +SKIP
    error: config.yaml: optim.lr must be finite and > 0, got inf
    2
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from svde.atomic import check_writable
from svde.errors import EXIT_USER, UserError, exit_code
from svde.models.model import DepthModel
from svde.models.registry import MODELS
from svde.models.loading import load
from svde.preprocess import STRIDE

DEBUG_FLAG = "--debug"
log = logging.getLogger(__name__)


def error_line(exc: BaseException) -> str:
    """The one line shown for ``exc`` (file errors name the file and the reason)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"error: {exc.filename}: {exc.strerror or exc}"
    return f"error: {exc}"


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` under the error convention above and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s")
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the point is to classify everything
        code = exit_code(exc)
        if code is None and isinstance(exc, OSError) and exc.filename is not None:
            code = EXIT_USER
        if debug or code is None:
            raise
        if int(os.environ.get("RANK", "0")) == 0 or code == EXIT_USER:
            print(error_line(exc), file=sys.stderr)
        return code


# ---- checking arguments before any work -------------------------------------------------------
def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable (a probe file is created and removed).

    Called before any work, so that a run does not compute everything and then fail to save it.
    """
    path = Path(path)
    try:
        check_writable(path)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write there ({exc.strerror or exc}); "
                        f"expected a writable folder") from None
    return path


def check_network_size(height: int, width: int, what: str = "--height/--width") -> None:
    """Height and width must be positive multiples of the network stride (32)."""
    if height <= 0 or width <= 0 or height % STRIDE or width % STRIDE:
        raise UserError(f"{what}: the size must be positive multiples of {STRIDE}, got {height}x{width} (HxW)")


def check_positive(option: str, value: float | None, minimum: float = 1) -> None:
    """``option`` must be finite and >= ``minimum`` (``None``: not given, nothing to check)."""
    if value is not None and not (math.isfinite(value) and value >= minimum):
        raise UserError(f"{option} must be >= {minimum:g}, got {value:g}")


# ---- CPU threads -------------------------------------------------------------------------------
def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def add_threads_argument(parser: argparse.ArgumentParser, default: int | None = None, workers: bool = False) -> None:
    """Add ``--threads N``, the CPU threads of this process (apply it with :func:`apply_threads`).

    ``default`` is the value when the flag is not given (``None``: :func:`default_threads`);
    ``workers``: the command has data-loading worker processes, which the help text mentions.
    """
    if default is not None:
        rule = "default: %(default)s"
    elif workers:
        rule = ("default: the cores other programs leave free; with data-loading workers or under torchrun "
                "free cores // processes - workers, at least 1 (each worker runs on one thread); OMP_NUM_THREADS "
                "wins outside torchrun")
    else:
        rule = "default: the cores other programs leave free (all when idle); OMP_NUM_THREADS wins"
    parser.add_argument("--threads", type=int, default=default, metavar="N",
                        help=f"CPU threads of PyTorch and OpenCV, >= 1; 1 on a machine other jobs share ({rule})")


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """(idle, total) clock ticks of each CPU since boot, from Linux's ``/proc/stat``
    (``cpuN user nice system idle iowait irq softirq steal ...``; idle = idle + iowait)."""
    ticks = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields[:8]]
                ticks[int(name[3:])] = (values[3] + values[4], sum(values))
    return ticks


def busy_cores(interval: float = 0.1) -> int:
    """How many of the cores this process may run on other programs keep busy right now: the
    non-idle share of each over ``interval`` seconds (this process sleeps meanwhile), summed and
    rounded (a core less than a quarter busy counts as idle); 0 where the OS does not say (no
    ``/proc/stat`` or affinity mask)."""
    try:
        cores = os.sched_getaffinity(0)
        before = _cpu_ticks()
        time.sleep(interval)
        after = _cpu_ticks()
    except (OSError, AttributeError, ValueError, IndexError):
        return 0
    busy = 0.0
    for core in cores:
        if core in before and core in after and after[core][1] > before[core][1]:
            idle, total = (a - b for a, b in zip(after[core], before[core]))
            share = 1.0 - min(max(idle, 0), total) / total  # iowait may step back (proc(5))
            busy += share if share >= 0.25 else 0.0  # background noise on an idle core is not a job
    return int(busy + 0.5)


def default_threads(workers: int = 0) -> int | None:
    """The thread count when ``--threads`` is not given; ``None`` keeps torch's own.

    The cores this process may use, less those other programs keep busy now (:func:`busy_cores`,
    outside ``torchrun``: OpenMP threads that share a core with another job wait for each other,
    2-40x slower), are
    shared out so that processes x (threads + workers) stays within them: ``free // processes -
    workers``, at least 1, where ``processes`` is ``torchrun``'s ``LOCAL_WORLD_SIZE`` and
    ``workers`` the data-loading processes (PyTorch runs each on one thread). A set
    ``OMP_NUM_THREADS`` wins outside ``torchrun`` (which sets it to 1 itself); with no worker,
    no ``torchrun`` and no busy core, torch's default stands (all cores).
    """
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if processes == 1 and "OMP_NUM_THREADS" in os.environ:
        return None
    cores = available_cores()
    # Under torchrun the sibling ranks, starting up now, would look busy: their share is divided out instead.
    busy = min(busy_cores(), cores - 1) if cores > 1 and processes == 1 else 0
    if busy:
        log.info("%d of this process's %d CPU cores are busy with other programs: leaving them alone "
                 "(--threads N to choose)", busy, cores)
    if processes == 1 and workers == 0 and busy == 0:
        return None
    return max(1, (cores - busy) // processes - workers)


def apply_threads(threads: int | None, workers: int = 0) -> int:
    """Set this process's CPU threads before any work; returns the count torch uses.

    ``threads`` is ``--threads`` (checked: >= 1, else a :class:`UserError`, one ``error:`` line) or
    ``None`` for :func:`default_threads`. PyTorch gets the count (``torch.set_num_threads``) and so
    does OpenCV when this process loads its own data; with ``workers`` OpenCV gets one thread,
    which the (forked) workers inherit, as each already runs PyTorch on one.
    """
    check_positive("--threads", threads)
    count = threads if threads is not None else default_threads(workers)
    if count is not None:
        torch.set_num_threads(count)
    if count is not None or workers:
        import cv2

        cv2.setNumThreads(1 if workers else torch.get_num_threads())
    return torch.get_num_threads()


def add_model_arguments(parser: argparse.ArgumentParser, random_weights: str | None = None,
                        released: bool = False) -> None:
    """Add the commands' shared ``--checkpoint | --official [--random-weights]`` and ``--model``.

    ``random_weights`` is the help text of ``--random-weights``; ``None`` leaves that option out.
    With ``released``, ``--model NAME`` alone means the authors' released weights of ``NAME``
    (:func:`svde.models.released.load_released`), so no weight source is required.
    Check the parsed arguments with :func:`check_model_arguments`.
    """
    src = parser.add_mutually_exclusive_group(required=not released)
    src.add_argument("--checkpoint", type=Path, help="a checkpoint of this project (knows its model)")
    src.add_argument("--official", type=Path, help="an authors' released state dict (needs --model)")
    if random_weights is not None:
        src.add_argument("--random-weights", action="store_true", help=random_weights)
    alone = " alone: the authors' released weights, downloaded once into torch.hub's cache" if released else ""
    parser.add_argument("--model", choices=list(MODELS), metavar="NAME",
                        help=f"model name, one of {', '.join(MODELS)}" + alone + " (with --official"
                             + (" or --random-weights)" if random_weights else ")"))


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the full traceback of an error (handled by :func:`svde.cli.common.run_main`)."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback instead of one error line")


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          released: bool = False) -> None:
    """``parser.error`` unless ``--model`` is given exactly where it is needed.

    With ``released`` (see :func:`add_model_arguments`) a bare ``--model`` is a source of its own.
    """
    if released and args.checkpoint is None and args.official is None and not getattr(args, "random_weights", False):
        if args.model is None:
            parser.error("give --model NAME (the authors' released weights) or --checkpoint FILE "
                         "(or --official FILE --model NAME)")
        return
    if (args.official is not None or getattr(args, "random_weights", False)) and args.model is None:
        parser.error("--official" + (" and --random-weights need" if hasattr(args, "random_weights") else " needs")
                     + " --model NAME (a released file does not record its architecture)")
    if args.checkpoint is not None and args.model is not None:
        parser.error("--model goes with --official; a project checkpoint knows its model")


def uses_released_weights(args: argparse.Namespace) -> bool:
    """Whether the parsed arguments name the released weights (``--model`` alone)."""
    return (args.checkpoint is None and args.official is None and not getattr(args, "random_weights", False)
            and args.model is not None)


def load_network(args: argparse.Namespace, device: str | torch.device = "cpu") -> DepthModel:
    """The network the model arguments name (:func:`add_model_arguments`), in eval mode on ``device``,
    through :func:`svde.load`: the released weights by name, a project checkpoint, a released file,
    or (``--random-weights``) random weights."""
    source = args.checkpoint or args.official or args.model
    return load(source, device=device, model=args.model, pretrained=not getattr(args, "random_weights", False))


def weights_source(args: argparse.Namespace) -> str:
    """Where the weights come from, for run records: a file, ``released:<name>`` or ``random``."""
    if uses_released_weights(args):
        return f"released:{args.model}"
    return str(args.checkpoint or args.official or "random")


def parse_pairs(items: Sequence[str], option: str) -> dict[str, str]:
    """``NAME=VALUE`` items of a repeatable option (``--root nyu=/data/nyu``) as a dict.

    Example:
        >>> parse_pairs(["nyu=/data/nyu", "diw=/data/DIW"], "--root")
        {'nyu': '/data/nyu', 'diw': '/data/DIW'}
    """
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserError(f"{option} expects NAME=PATH, got {item!r}")
        out[name] = value
    return out


def output_stems(images: Sequence[Path], root: Path) -> list[Path]:
    """Output name stems relative to ``root`` (a folder, or the single image's parent).

    ``a.jpg`` and ``a.png`` in the same folder would collide, so those keep their extension
    (``a_jpg``, ``a_png``).

    Example:
        >>> [str(s) for s in output_stems([Path("r/a.jpg"), Path("r/a.png"), Path("r/s/b.png")], Path("r"))]
        ['a_jpg', 'a_png', 's/b']
    """
    rel = [p.relative_to(root) for p in images]
    plain = [r.with_suffix("") for r in rel]
    counts: dict[Path, int] = {}
    for stem in plain:
        counts[stem] = counts.get(stem, 0) + 1
    return [s if counts[s] == 1 else r.with_name(r.name.replace(".", "_")) for s, r in zip(plain, rel)]


def check_camera(fov: float | None = None, intrinsics: Sequence[float] | None = None) -> None:
    """A horizontal field of view must be in (0, 180) degrees; intrinsics fx, fy > 0, cx, cy finite."""
    if fov is not None and not (math.isfinite(fov) and 0.0 < fov < 180.0):
        raise UserError(f"--fov: the horizontal field of view must be in (0, 180) degrees, got {fov:g}")
    if intrinsics is not None:
        if len(intrinsics) != 4 or not all(math.isfinite(v) for v in intrinsics):
            raise UserError(f"--intrinsics: expected four finite numbers FX FY CX CY, got {list(intrinsics)}")
        if intrinsics[0] <= 0 or intrinsics[1] <= 0:
            raise UserError(f"--intrinsics: focal lengths FX and FY must be > 0 pixels, got {intrinsics[0]:g} "
                            f"and {intrinsics[1]:g}")


def command_parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of one command: ``doc`` (the module docstring) as its help text, ``prog`` as its name
    (``svde predict`` under the ``svde`` command; ``None``: the script's file name)."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
