"""`stylegan-jax soak`: train through N random SIGKILLs and SIGTERMs, restarting each time,
and check that every restart resumes from the newest checkpoint that existed at the kill.

    stylegan-jax soak --kills 20 --workdir runs/soak -- \\
        --config quickstart --config.log.checkpoint_kimg=0.5

Everything after `--` goes to `stylegan-jax train`. Each kill comes a random time
(`--min-s`..`--max-s`, seeded) after the trainer's first tick line; a SIGKILL gives no
warning, a SIGTERM asks for a checkpoint and a clean exit. Prints one line per kill and a
summary: kills, resumes, wrong resumes, crashes, checkpoints lost, max kimg lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_RESUMED = re.compile(r"^Resuming from .*/checkpoints/(\d+) ")
_TICK_KIMG = re.compile(r"^tick \d+\s+kimg ([0-9.]+)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kills", type=int, default=20, help="number of kills (default 20)")
    p.add_argument("--workdir", type=Path, required=True, help="the run directory (new or not)")
    p.add_argument("--seed", type=int, default=0, help="seed of kill times and signals")
    p.add_argument("--min-s", type=float, default=2.0,
                   help="earliest kill, seconds after the first tick line (default 2)")
    p.add_argument("--max-s", type=float, default=30.0,
                   help="latest kill, seconds after the first tick line (default 30)")
    p.add_argument("--sigterm-fraction", type=float, default=0.5,
                   help="share of kills that are SIGTERM instead of SIGKILL (default 0.5)")
    p.add_argument("--timeout-s", type=float, default=1800.0,
                   help="longest a single trainer process may run (default 1800)")
    p.add_argument("--no-finish", action="store_true",
                   help="after the last kill, only check the restart's resume (SIGTERM at "
                   "its first tick) instead of training to the end")
    p.add_argument("--verbose", action="store_true", help="echo the trainer's output")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="-- then the arguments of `stylegan-jax train`")


@dataclasses.dataclass
class Attempt:
    """One trainer process: what it resumed from, how far it got, how it ended."""

    resumed: int | None = None  # checkpoint (images shown); None: a fresh start
    kimg: float | None = None  # of its last tick line
    ticked: threading.Event = dataclasses.field(default_factory=threading.Event)
    lines: list[str] = dataclasses.field(default_factory=list)
    returncode: int | None = None


def complete_checkpoints(workdir: Path) -> list[int]:
    """Checkpoints on disk that Orbax finished (renamed into place), oldest first."""
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _train_command(workdir: Path, train_args: list[str], compilation_cache) -> list[str]:
    cmd = [sys.executable, "-m", "stylegan_jax.cli"]
    if compilation_cache is not None:
        cmd += ["--compilation-cache", str(compilation_cache)]
    return cmd + ["train", "--workdir", str(workdir), *train_args]


def _run_once(cmd: list[str], kill: tuple[str, float] | None, timeout_s: float,
              verbose: bool, say) -> Attempt:
    """Starts a trainer; `kill` = (signal name, seconds after its first tick line)."""
    attempt = Attempt()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)

    def read():
        for line in proc.stdout:
            line = line.rstrip("\n")
            attempt.lines.append(line)
            if verbose:
                say(f"  | {line}")
            if (m := _RESUMED.match(line)) is not None:
                attempt.resumed = int(m.group(1))
            if (m := _TICK_KIMG.match(line)) is not None:
                attempt.kimg = float(m.group(1))
                attempt.ticked.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    if kill is not None:
        while not attempt.ticked.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if proc.poll() is None and attempt.ticked.is_set():
            time.sleep(kill[1])
            if proc.poll() is None:
                proc.send_signal(getattr(signal, kill[0]))
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=30)
    attempt.returncode = proc.returncode
    return attempt


def soak(workdir: Path, train_args: list[str], kills: int, seed: int = 0,
         min_s: float = 2.0, max_s: float = 30.0, sigterm_fraction: float = 0.5,
         timeout_s: float = 1800.0, finish: bool = True, verbose: bool = False,
         compilation_cache=None, say=print) -> dict:
    """Runs the soak; returns the summary (also printed by `say`).

    A restart is right when it resumes from the newest checkpoint complete on disk after
    the previous process died (None: a fresh start); the checkpoints newer than the one it
    used count as lost, and the kimg between the killed process's progress (its last tick,
    or its SIGTERM checkpoint) and the resumed checkpoint as kimg lost.
    """
    rng = random.Random(seed)
    workdir = Path(workdir).absolute()
    cmd = _train_command(workdir, train_args, compilation_cache)
    summary = {"kills": 0, "sigkill": 0, "sigterm": 0, "resumes": 0, "wrong_resumes": 0,
               "crashes": 0, "checkpoints_lost": 0, "max_kimg_lost": 0.0, "finished": False}
    progress = None  # kimg the previous (killed) process had reached
    for i in range(kills + 1):
        on_disk = complete_checkpoints(workdir)
        if i < kills:
            kill = ("SIGTERM" if rng.random() < sigterm_fraction else "SIGKILL",
                    rng.uniform(min_s, max_s))
        else:  # the last restart: to the end, or stopped at its first tick
            kill = None if finish else ("SIGTERM", 0.0)
        attempt = _run_once(cmd, kill, timeout_s, verbose, say)
        if attempt.resumed is not None or on_disk:
            summary["resumes"] += 1
        expected = on_disk[-1] if on_disk else None
        if attempt.resumed != expected:
            summary["wrong_resumes"] += 1
            summary["checkpoints_lost"] += len(
                [s for s in on_disk if attempt.resumed is None or s > attempt.resumed])
            say(f"soak: restart {i} resumed from {attempt.resumed}, expected {expected}")
        if progress is not None:
            lost = progress - (attempt.resumed or 0) / 1000
            summary["max_kimg_lost"] = max(summary["max_kimg_lost"], lost)
        stopped = [float(m.group(1)) for line in attempt.lines
                   if (m := re.match(r"^Stopped by \w+ at kimg ([0-9.]+)", line))]
        progress = max([x for x in (attempt.kimg, *stopped) if x is not None], default=None)
        code = attempt.returncode
        finished = code == 0 and not stopped
        if i == kills or finished:
            summary["finished"] = finished
            if finished or (not finish and stopped and code == 0):
                say(f"soak: the last restart {'finished the run' if finished else 'stopped'}")
            else:
                summary["crashes"] += 1
                say(f"soak: the last restart exited with {code}")
            break
        if code not in (0, -signal.SIGKILL, -signal.SIGTERM) or attempt.kimg is None:
            summary["crashes"] += 1  # died by itself, or never reached a tick
            say(f"soak: trainer exited with {code} before/around kill {i + 1}; last lines:")
            for line in attempt.lines[-15:]:
                say(f"  | {line}")
            continue
        summary["kills"] += 1
        summary["sigkill" if kill[0] == "SIGKILL" else "sigterm"] += 1
        say(f"soak: kill {i + 1}/{kills}: {kill[0]} {kill[1]:.1f} s after the first tick "
            f"(kimg {progress}); it had resumed from {attempt.resumed}; newest checkpoint "
            f"now {(complete_checkpoints(workdir) or [None])[-1]}")
    say("soak: {kills} kills ({sigkill} SIGKILL, {sigterm} SIGTERM), {resumes} resumes, "
        "{wrong_resumes} wrong resumes, {crashes} crashes, checkpoints lost "
        "{checkpoints_lost}, max kimg lost {max_kimg_lost:.3f}".format(**summary))
    return summary


def run(args: argparse.Namespace) -> int:
    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    if "--workdir" in train_args:
        raise ValueError("give --workdir to soak, before the --")
    if args.kills < 0 or not 0 <= args.min_s <= args.max_s:
        raise ValueError(f"--kills must be >= 0 and 0 <= --min-s <= --max-s; got "
                         f"{args.kills}, {args.min_s}, {args.max_s}")
    if not 0 <= args.sigterm_fraction <= 1:
        raise ValueError(f"--sigterm-fraction must be in [0, 1], got {args.sigterm_fraction}")
    summary = soak(args.workdir, train_args, args.kills, args.seed, args.min_s, args.max_s,
                   args.sigterm_fraction, args.timeout_s, not args.no_finish, args.verbose,
                   compilation_cache=getattr(args, "compilation_cache", None)
                   or os.environ.get("SGJ_COMPILATION_CACHE"))
    ok = summary["wrong_resumes"] == 0 and summary["crashes"] == 0
    return 0 if ok and (summary["finished"] or args.no_finish) else 1
