"""Train a depth model: ``python scripts/train.py --config FILE [--out RUN_DIR] [--resume RUN_DIR] [key.sub=value ...]``.

Examples:
    python scripts/train.py --config configs/quickstart.yaml
    python scripts/train.py --config configs/paper/b0_lrn4.yaml data.num_workers=8 train.amp=bf16
    torchrun --nproc_per_node=4 scripts/train.py --config configs/paper/b5_lrn4.yaml
    python scripts/train.py --resume runs/quickstart-20260101-120000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (may name base: files); "
                        "with --resume, defaults to the run folder's config.yaml")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>-<timestamp>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, applied last")
    args = parser.parse_args(argv)
    if args.config is None and args.resume is None:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    if args.resume is not None and args.out is not None and args.out != args.resume:
        parser.error("--out and --resume name different folders; a resumed run stays in its folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone, uninstalled
    from svde.config import ConfigError, load_config
    from svde.data import DataError
    from svde.training import TrainingError, train

    try:
        config = args.config if args.config is not None else args.resume / "config.yaml"
        cfg = load_config(config, args.overrides)
        if args.resume is not None:
            run_dir = args.resume
        elif args.out is not None:
            run_dir = args.out
        else:
            run_dir = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        summary = train(cfg, run_dir, resume=args.resume is not None)
    except (ConfigError, DataError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    if int(os.environ.get("RANK", "0")) == 0:
        val = summary["val"]
        if "first" in val and "last" in val:
            metric = cfg.val.metric
            print(f"validation {metric}: {val['first'][metric]:.4f} at step {val['first']['step']} -> "
                  f"{val['last'][metric]:.4f} at step {val['last']['step']}")
        print(f"run folder:  {summary['run_dir']}")
        print(f"checkpoint:  {summary['last']}" + (f" (best: {summary['best']})" if summary["best"] else ""))
        print(f"tensorboard: tensorboard --logdir {summary['tb_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
