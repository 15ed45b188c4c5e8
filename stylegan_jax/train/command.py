"""`stylegan-jax train`: train a config into a workdir, resuming from its newest checkpoint.

    stylegan-jax train                                  # quickstart -> ./runs/quickstart
    stylegan-jax train --config paper256 --workdir runs/ffhq256 \\
        --config.data.path=/data/ffhq256 --config.train.batch_size=32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="quickstart",
                   help="a name in configs/ or a path, optionally with ':arg' "
                   "(e.g. auto:res=256,gpus=8); override fields with --config.a.b=value")
    p.add_argument("--workdir", type=Path, default=None,
                   help="run directory (default: runs/<config name>); reruns resume from it")
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="stop (with a checkpoint) after this many iterations")


def run(args: argparse.Namespace) -> int:
    from stylegan_jax.train import config as config_lib
    from stylegan_jax.train.loop import NonFiniteError, train

    config = config_lib.load_config(args.config, getattr(args, "overrides", []))
    name = Path(args.config.partition(":")[0]).stem
    workdir = args.workdir or Path("runs") / name
    try:
        summary = train(config, workdir, stop_at_step=args.stop_at_step)
    except NonFiniteError as e:
        print(f"stylegan-jax train: {e}", file=sys.stderr)
        return 3
    print(f"Finished: {summary['kimg']:.1f} kimg, {summary['step']} iterations, "
          f"checkpoint {summary['checkpoint']} in {Path(workdir).absolute() / 'checkpoints'}"
          f" ({summary['reason']})")
    return 0
