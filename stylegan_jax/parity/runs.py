"""The training runs of a parity comparison: NVIDIA's loop (the official driver under the
user's torch Python) and this project's `train`, each in its own directory, one at a time.

Each run is a subprocess that resumes by itself (the driver from its resume.pt, `train` from
its newest checkpoint), so a parity run that stops part-way continues where it stopped. The
sides never run at once: PyTorch's CPU threads and XLA's collapse when they share cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stylegan_jax.atomic import replace_file

DRIVER = Path(__file__).with_name("official_driver.py")


class RunFailed(ValueError):
    """A side's training process failed; the message ends with its log's last lines."""


@dataclass(frozen=True)
class Snapshot:
    """One evaluation point of one run: its kimg on the parity axis and where G_ema is."""

    side: str
    seed: int
    kimg: float
    path: Path  # an official .pkl, or a run's checkpoints/<nimg> directory


def _run_logged(argv: list[str], log: Path, what: str, say) -> None:
    """Runs argv with its output appended to `log`; a failure names the log and its end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RunFailed(f"{what} failed (exit code {code}); its log {log} ends:\n"
                           + "\n".join(tail))
    say(f"{what}: finished in {time.time() - start:.0f} s (log {log})")


def official_run(out: Path, seed: int, spec: dict, data_dir: Path, official: Path,
                 python: str, threads: int, say) -> Path:
    """Trains (or finishes) the official side of `seed`; returns its directory."""
    run_dir = out / "official" / f"seed{seed}"
    if (run_dir / "done.json").is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / "spec.json"
    if spec_path.is_file() and json.loads(spec_path.read_text()) != spec:
        raise ValueError(f"{spec_path}: this official run was started with other settings; "
                         "use a new --out for new settings")
    replace_file(spec_path, json.dumps(spec, indent=1))
    argv = [python, str(DRIVER), "--official", str(official), "--spec", str(spec_path),
            "--data", str(data_dir), "--out", str(run_dir), "--threads", str(threads)]
    say(f"official seed {seed}: training {spec['total_kimg']:g} kimg with NVIDIA's modules")
    _run_logged(argv, run_dir / "driver.log", f"official seed {seed}", say)
    return run_dir


def ours_run(out: Path, side: str, seed: int, config_name: str, overrides: list[str],
             total_kimg: float, every_kimg: float, say, resume: Path | None = None) -> Path:
    """Trains (or finishes) this project's side of `seed` with `stylegan-jax train` in its own
    process; checkpoints every `every_kimg`, all kept, no metrics while training."""
    workdir = out / side / f"seed{seed}"
    if (workdir / "checkpoints" / str(round(total_kimg * 1000))).is_dir():
        return workdir
    argv = [sys.executable, "-m", "stylegan_jax.cli", "train", "--config", config_name,
            "--workdir", str(workdir), *overrides,
            f"--config.seed={seed}", f"--config.train.total_kimg={total_kimg}",
            f"--config.log.checkpoint_kimg={every_kimg}", "--config.log.keep_last=100000",
            "--config.log.keep_every_kimg=0", "--config.metrics.names=",
            "--config.metrics.best="]
    if resume is not None and not (workdir / "checkpoints").is_dir():
        argv += ["--resume", str(resume)]
    say(f"{side} seed {seed}: training {total_kimg:g} kimg with this project")
    _run_logged(argv, out / side / f"seed{seed}.log", f"{side} seed {seed}", say)
    return workdir


def official_snapshots(run_dir: Path, seed: int) -> list[Snapshot]:
    """The snapshots the driver listed (snapshots.jsonl: kimg, nimg, pkl)."""
    listing = run_dir / "snapshots.jsonl"
    if not listing.is_file():
        return []
    out = []
    for line in listing.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append(Snapshot("official", seed, rec["nimg"] / 1000, run_dir / rec["pkl"]))
    return out


def our_snapshots(workdir: Path, side: str, seed: int, offset_kimg: float = 0.0
                  ) -> list[Snapshot]:
    """A run's checkpoints (named by images shown), on the parity axis (+ `offset_kimg` for a
    run started from an official snapshot)."""
    root = workdir / "checkpoints"
    if not root.is_dir():
        return []
    steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())
    return [Snapshot(side, seed, offset_kimg + s / 1000, root / str(s)) for s in steps]
