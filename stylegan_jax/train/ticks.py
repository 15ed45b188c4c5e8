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

from stylegan_jax.train import watchdog
from stylegan_jax.train.report import device_memory_gib, host_rss_gib, tick_line
from stylegan_jax.train.run import Run
from stylegan_jax.train.stopping import Divergence


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

    def restart(self, nimg: int) -> None:
        """A new tick from `nimg` (after a rollback)."""
        self.tick_start, self.tick_start_nimg, self.maintenance_s = time.time(), nimg, 0.0

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


def report_tick(run: Run, clock: TickClock) -> None:
    """Ends a tick: logs the tick line and writes its record (process 0), raises the ADA
    leak alarm, starts the next tick; then raises Divergence if the losses say the run
    broke (the watchdog's rules)."""
    values = run.stat_values()
    _ada_alarm(run, values.get("augment"))
    now = time.time()
    if run.main_process:
        tick_s, tick_kimg = now - clock.tick_start, (run.nimg - clock.tick_start_nimg) / 1000
        run.log(tick_line(run.tick, run.nimg / 1000, run.config.train.total_kimg, tick_s,
                          tick_kimg, clock.maintenance_s, now - clock.run_start, values,
                          alarm=run.alarm is not None))
        _, device_peak = device_memory_gib()
        run.writer.scalars(run.nimg / 1000, {
            **{f"Loss/{k}": v for k, v in values.items() if k != "augment"},
            **({"Progress/augment": values["augment"]} if "augment" in values else {}),
            "Progress/stage": run.stage.index,
            "Timing/sec_per_kimg": tick_s / max(tick_kimg, 1e-8),
            "Timing/img_per_sec": tick_kimg * 1000 / max(tick_s, 1e-8),
            "Timing/maintenance_sec": clock.maintenance_s,
            **({"Resources/device_peak_gib": device_peak} if device_peak is not None else {}),
            "Resources/host_rss_gib": host_rss_gib(),
            "Health/rollbacks": run.watch.rollbacks,
            **({"Health/ada_alarm": int(run.alarm is not None)} if "augment" in values else {}),
            **{f"Health/{k}": v for k, v in (run.leak or {}).items()}})
    run.tick += 1
    clock.tick_start, clock.tick_start_nimg, clock.maintenance_s = now, run.nimg, 0.0
    problem = watchdog.tick_problem(values, run.watch_cfg)
    if problem is not None:
        raise Divergence(*problem)


def _ada_alarm(run: Run, p: float | None) -> None:
    """Raises (a warning line when it starts or its reason changes) or clears the alarm."""
    alarm = watchdog.ada_alarm(run.watch_cfg, run.watch, p, run.nimg, run.leak)
    if alarm is not None and alarm != run.alarm:
        run.log(f"warning: ADA leak alarm at kimg {run.nimg / 1000:.1f}: {alarm}; look at the "
                "latest snapshot grid for rotated, mirrored or recoloured images")
    run.alarm = alarm
