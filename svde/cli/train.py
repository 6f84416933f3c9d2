"""Train a depth model: ``svde train --config FILE [--out RUN_DIR] [--resume RUN_DIR] [key.sub=value ...]``.

A resumed run continues with the config stored in its last.pt (config.yaml is a copy for
reading); overrides may change only what does not alter the trained state (train.steps,
logging and checkpoint cadence, device, ...: svde.training.trainer.RESUME_SAFE).

Bad input (a config key or value, a missing file or unreadable sample, an unusable device or run
folder, a folder that already holds a run) prints one ``error:`` line and exits 2; a run that
cannot learn exits 1 and names its last good checkpoint (one whose model predicts finite values):
non-finite steps, a diverging loss, weights whose global norm outgrew ``train.diverge_norm_factor``
x its start, predictions beyond ``train.diverge_output_bound``, a model that predicts NaN or
saturated values in eval mode, or that validation cannot score; so does a full disk (one line
naming the file). ``--debug`` shows tracebacks.

``--threads N`` sets the CPU threads of the training process (of each process under torchrun)
before any work; without it a resumed run takes the count its last.pt was written on (so it
stays bit-identical), and otherwise the cores other programs keep busy are left alone (said in
one line): a process that loads its data itself takes the rest (torch's default, OMP_NUM_THREADS
or all cores, when none is busy), one with ``data.num_workers`` workers, or each of torchrun's
processes, its share: free cores // processes - workers, at least 1.

Examples:
    svde train --config configs/quickstart.yaml
    svde train --config configs/quickstart.yaml --threads 1                  # a busy 2-core machine
    python scripts/train.py --config configs/quickstart.yaml                 # the same
    svde train --config configs/paper/b0_lrn4.yaml data.num_workers=8 train.amp=bf16
    torchrun --nproc_per_node=4 scripts/train.py --config configs/paper/b5_lrn4.yaml
    svde train --resume runs/quickstart-20260101-120000
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from svde.cli.common import add_debug_argument, add_threads_argument, apply_threads, check_positive, command_parser

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse and check the arguments (the config itself is checked by :func:`svde.config.load_config`)."""
    parser = command_parser(__doc__, prog)
    parser.add_argument("--config", type=Path, help="YAML config (may name base: files); with --resume, "
                        "defaults to the config stored in the run's last.pt, and must agree with it")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>-<timestamp>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, applied last")
    add_threads_argument(parser, workers=True)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_positive("--threads", args.threads)
    if args.config is None and args.resume is None:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    if args.resume is not None and args.out is not None and args.out != args.resume:
        parser.error("--out and --resume name different folders; a resumed run stays in its folder")
    return args


def resumes_on_recorded_threads(cfg: Any, recorded: int) -> bool:
    """Whether a resume without ``--threads`` takes the thread count its ``last.pt`` recorded: only
    on the CPU (elsewhere the count does not change the numbers), outside ``torchrun``, with no
    ``OMP_NUM_THREADS`` (which wins, as for any run) and no more threads than free cores (more
    would oversubscribe them: TrainState.restore then warns that the numbers may differ)."""
    from svde.cli.common import available_cores
    from svde.device import resolve_device

    return ("LOCAL_WORLD_SIZE" not in os.environ and "OMP_NUM_THREADS" not in os.environ
            and recorded <= available_cores() and resolve_device(cfg.train.device).type == "cpu")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Train (or resume) and say where the results are; returns 0."""
    args = parse_args(argv, prog)
    from svde.config import load_config
    from svde.training import train
    from svde.training.checkpoints import resume_plan

    recorded = None
    if args.resume is not None:
        cfg, recorded = resume_plan(args.resume, args.overrides, config=args.config)
        run_dir = args.resume
    else:
        cfg = load_config(args.config, args.overrides)
        run_dir = args.out if args.out is not None else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    threads = args.threads
    if threads is None and recorded is not None and resumes_on_recorded_threads(cfg, recorded):
        threads = recorded  # the count the run was on: it stays bit-identical
        log.info("resuming on the %d CPU thread(s) the run was written on (--threads N to choose)", threads)
    apply_threads(threads, workers=cfg.data.num_workers)  # before the model's first tensor is made
    summary = train(cfg, run_dir, resume=args.resume is not None)
    if int(os.environ.get("RANK", "0")) == 0:
        val = summary["val"]
        metric = cfg.val.metric
        if all(isinstance(val.get(k, {}).get(metric), (int, float)) for k in ("first", "last")):
            print(f"validation {metric}: {val['first'][metric]:.4f} at step {val['first']['step']} -> "
                  f"{val['last'][metric]:.4f} at step {val['last']['step']}")
        print(f"run folder:  {summary['run_dir']}")
        print(f"checkpoint:  {summary['last']}" + (f" (best: {summary['best']})" if summary["best"] else ""))
        print(f"tensorboard: tensorboard --logdir {summary['tb_dir']}")
    return 0
