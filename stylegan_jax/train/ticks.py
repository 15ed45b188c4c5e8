"""One tick's report: the tick line, its stats.jsonl / TensorBoard record, and the clock
that times ticks.

A tick's time is the wall clock from the previous tick line to this one, maintenance
(grids, checkpoint hand-offs, evaluations) included, so sec/tick and img/s say how fast
the run goes; the `maintenance` field says how much of it maintenance took (as the
official `Timing/maintenance_sec`). A stage's compilation is left out of its tick.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from stylegan_jax.train.report import tick_line
from stylegan_jax.train.run import Run
from stylegan_jax.train.stopping import check_losses


@dataclasses.dataclass
class TickClock:
    """Times the run (time.time() seconds) and its current tick."""

    run_start: float
    tick_start: float
    tick_start_nimg: int
    maintenance_s: float = 0.0  # spent on maintenance since the last tick line

    @classmethod
    def starting(cls, nimg: int) -> TickClock:
        now = time.time()
        return cls(now, now, nimg)

    def leave_out(self, seconds: float) -> None:
        """Takes time (a stage's compilation) out of the current tick."""
        self.tick_start += seconds

    def maintenance(self, action: Callable[..., None], *args) -> None:
        """Runs a maintenance action, counting its time in the tick's maintenance field."""
        start = time.time()
        action(*args)
        self.maintenance_s += time.time() - start


def tick_due(run: Run, clock: TickClock) -> bool:
    return (run.nimg >= clock.tick_start_nimg + run.config.log.tick_kimg * 1000
            or run.nimg >= run.total_nimg)


def report_tick(run: Run, clock: TickClock, last_stats: dict[str, Any]) -> None:
    """Ends a tick: checks the losses, logs the tick line and writes its record (process 0),
    then starts the next tick."""
    values = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in last_stats.items()}
    check_losses(values, run.nimg, run.ckpts.latest_step())
    now = time.time()
    if run.main_process:
        tick_s, tick_kimg = now - clock.tick_start, (run.nimg - clock.tick_start_nimg) / 1000
        run.log(tick_line(run.tick, run.nimg / 1000, run.config.train.total_kimg, tick_s,
                          tick_kimg, clock.maintenance_s, now - clock.run_start, values))
        run.writer.scalars(run.nimg / 1000, {
            **{f"Loss/{k}": v for k, v in values.items() if k != "augment"},
            **({"Progress/augment": values["augment"]} if "augment" in values else {}),
            "Progress/stage": run.stage.index,
            "Timing/sec_per_kimg": tick_s / max(tick_kimg, 1e-8),
            "Timing/maintenance_sec": clock.maintenance_s})
    run.tick += 1
    clock.tick_start, clock.tick_start_nimg, clock.maintenance_s = now, run.nimg, 0.0
