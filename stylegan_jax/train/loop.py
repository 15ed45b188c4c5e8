"""The training loop: data -> a family's compiled steps -> ticks, grids, checkpoints.

Reads top to bottom: set the run up (train/run.py: config and devices, data, trainer and
state, fresh or the newest checkpoint) -> iterate over stages until a stop condition
(train/stopping.py), ending ticks (train/ticks.py) and doing the periodic maintenance
(train/maintenance.py) on the way; a check that finds the run broken rolls it back
(train/watchdog.py, train/rollback.py). Every process runs this; only process 0 prints,
writes grids, stats and TensorBoard; all take part in checkpoints and evaluations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from stylegan_jax.train import maintenance, rollback
from stylegan_jax.train.inputs import device_batch, open_stage
from stylegan_jax.train.programs import StagePrograms, compile_stage
from stylegan_jax.train.run import Run, open_run
from stylegan_jax.train.stopping import (
    Divergence,
    NonFiniteError,
    StopRequest,
    TrainingDiverged,
    stop_reason,
)
from stylegan_jax.train.ticks import TickClock, report_tick, tick_due

__all__ = ["NonFiniteError", "TrainingDiverged", "train"]


def train(config: ml_collections.ConfigDict, workdir: str | Path, *, devices=None,
          stop_at_step: int | None = None, log=print, detectors=None,
          compile_timeout_s: float = 3600.0) -> dict[str, Any]:
    """Trains until `train.total_kimg` (or `stop_at_step` iterations); resumes from workdir.

    Each stage's programs are compiled before its first step, and the processes start it
    together (train/programs.py); `compile_timeout_s` bounds the wait for the slowest.
    `detectors` replaces the metrics' feature networks (metrics.Detectors; tests).
    Returns a summary: iterations, kimg, the last checkpoint (named by images shown),
    the best one by `metrics.best` (or None), why it stopped, and the final state (one
    copy, as global arrays).
    """
    run = open_run(config, workdir, devices, log, detectors)
    clock = TickClock.starting(run.nimg)
    try:
        clock.maintenance(maintenance.at_start, run)
        with StopRequest() as stop:
            reason = _iterate(run, clock, stop, stop_at_step, compile_timeout_s)
            best = run.ckpts.best_step()
    finally:
        run.close()
    if reason not in ("done", "stop_at_step"):
        run.log(f"Stopped by {reason} at kimg {run.nimg / 1000:.1f}; checkpoint {run.nimg} "
                "saved.")
    return {"step": run.step, "kimg": run.nimg / 1000, "checkpoint": run.ckpts.latest_step(),
            "best": best, "reason": reason, "state": run.backend.host_state(run.state)}


def _iterate(run: Run, clock: TickClock, stop: StopRequest, stop_at_step: int | None,
             compile_timeout_s: float) -> str:
    """Training iterations, each followed by the tick's end when due and the maintenance,
    until a stop condition, then the last evaluation and checkpoint; returns why it
    stopped. A check that finds the run broken (Divergence) rolls it back and the
    iterations go on from there."""
    programs = None
    while True:
        try:
            if reason := stop_reason(run.nimg, run.total_nimg, run.step, stop_at_step,
                                     stop.signal):
                maintenance.at_end(run, reason, stop)
                return reason
            programs = _iteration(run, clock, stop, programs, compile_timeout_s)
        except Divergence as why:
            rollback.roll_back(run, why)
            clock.restart(run.nimg)


def _iteration(run: Run, clock: TickClock, stop: StopRequest, programs: StagePrograms | None,
               compile_timeout_s: float) -> StagePrograms:
    """One iteration, the tick's end when due and the maintenance; returns the programs."""
    if run.stage.end_nimg is not None and run.nimg >= run.stage.end_nimg:
        _next_stage(run)
    batch = device_batch(run.backend, next(run.pipe), run.c_dim)
    if (rollback.follow_lr_factor(run) or programs is None
            or (programs.stage_index, programs.owner) != (run.stage.index, run.trainer)):
        programs = _compile(run, batch, compile_timeout_s)
        clock.leave_out(programs.compile_s + programs.wait_s)
    run.state, stats = programs[run.trainer.program_key(run.stage, run.step)](
        run.state, *batch, run.label_table)
    run.step += 1
    run.nimg += run.stage.batch_size
    run.last_stats.update(stats)  # the newest value of each (phase) statistic
    if tick_due(run, clock):
        report_tick(run, clock)
    clock.maintenance(maintenance.maintain, run, stop)
    return programs


def _next_stage(run: Run) -> None:
    """Progressive growing: the data at the next stage's resolution and batch."""
    run.pipe.close()
    run.stage = run.trainer.stage_at(run.nimg)
    run.pipe = open_stage(run.config, run.source, run.stage, rollbacks=run.watch.rollbacks)


def _compile(run: Run, batch: tuple, compile_timeout_s: float) -> StagePrograms:
    """The stage's programs, compiled for its first batch; all processes start together."""
    programs = compile_stage(run.trainer.programs(run.backend, run.stage),
                             (run.state, *batch, run.label_table), run.stage.index,
                             compile_timeout_s)
    programs.owner = run.trainer  # a new trainer (learning rates) compiles anew
    run.log(programs.summary())
    return programs
