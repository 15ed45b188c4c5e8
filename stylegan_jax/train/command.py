"""`stylegan-jax train`: train a config into a workdir, resuming from its newest checkpoint.

    stylegan-jax train                                  # quickstart -> ./runs/quickstart
    stylegan-jax train --config paper256 --workdir runs/ffhq256 \\
        --config.data.path=/data/ffhq256 --config.train.batch_size=32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

from stylegan_jax import distributed
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import loop


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="quickstart",
                   help="a name in configs/ or a path, optionally with ':arg' "
                   "(e.g. auto:res=256,gpus=8); override fields with --config.a.b=value")
    p.add_argument("--workdir", type=Path, default=None,
                   help="run directory (default: runs/<config name>); reruns resume from it")
    p.add_argument("--resume", type=Path, default=None, metavar="NET",
                   help="start a new run from trained networks: a network directory, a "
                   "training run (or RUN/checkpoints/N) or an official .pkl (sets "
                   "--config.train.resume; the first D layers freeze with "
                   "--config.train.freeze_d=N)")
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="stop (with a checkpoint) after this many iterations")
    g = p.add_argument_group("multi-process (see launch/ and the README)")
    g.add_argument("--processes", type=int, default=1,
                   help="start N processes on this machine with a 127.0.0.1 coordinator")
    g.add_argument("--devices-per-process", type=int, default=None,
                   help="with --processes on CPU: fake devices per process")
    g.add_argument("--coordinator", default=None, help="host:port of process 0 "
                   "(not needed on SLURM, Open MPI, Cloud TPU pods, Kubernetes JobSets)")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)
    g.add_argument("--heartbeat-timeout", type=int, default=60,
                   help="seconds after which the others give up on a silent process")
    g.add_argument("--compile-timeout", type=float, default=3600,
                   help="seconds a process waits for the others to finish compiling a "
                   "stage's programs before the stage's first step")


def run(args: argparse.Namespace) -> int:
    name = Path(args.config.partition(":")[0]).stem
    workdir = args.workdir or Path("runs") / name
    overrides = list(getattr(args, "overrides", []))
    resume = args.resume or _resumed_from(Path(workdir))
    if resume is not None:
        overrides.append(f"--config.train.resume={Path(resume).absolute()}")
    if args.processes > 1:
        argv = ["train", "--config", args.config, "--workdir", str(Path(workdir).absolute()),
                "--heartbeat-timeout", str(args.heartbeat_timeout),
                "--compile-timeout", str(args.compile_timeout), *overrides]
        if args.stop_at_step is not None:
            argv += ["--stop-at-step", str(args.stop_at_step)]
        return distributed.launch_local(args.processes, argv, args.devices_per_process)
    distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                           args.heartbeat_timeout)

    config = config_lib.load_config(args.config, overrides)
    try:
        summary = loop.train(config, workdir, stop_at_step=args.stop_at_step,
                        compile_timeout_s=args.compile_timeout)
    except loop.TrainingDiverged as e:
        print(f"stylegan-jax train: {e}", file=sys.stderr)
        return 3
    if jax.process_index() == 0:
        print(f"Finished: {summary['kimg']:.1f} kimg, {summary['step']} iterations, "
              f"checkpoint {summary['checkpoint']} in {Path(workdir).absolute() / 'checkpoints'}"
              f" ({summary['reason']})")
    return 0


def _resumed_from(workdir: Path) -> str | None:
    """The `train.resume` a rerun of the workdir keeps (its hyperparameters follow it)."""
    path = workdir / "config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("train", {}).get("resume") or None
