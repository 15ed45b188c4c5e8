"""Progress reporting on process 0: the official tick line, stats.jsonl, TensorBoard."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import jax
import numpy as np
from tensorboardX import SummaryWriter

from stylegan_jax.atomic import write_error


def device_memory_gib() -> tuple[float | None, float | None]:
    """(in use, peak) GiB on the first local device, where the backend reports them."""
    stats = jax.local_devices()[0].memory_stats() or {}
    in_use, peak = stats.get("bytes_in_use"), stats.get("peak_bytes_in_use")
    return (None if in_use is None else in_use / 2**30, None if peak is None else peak / 2**30)


def host_rss_gib() -> float:
    """This process's resident memory (GiB): /proc where there is one, else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def _fmt_seconds(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s // 60 % 60:02d}m"
    return f"{s // 86400}d {s // 3600 % 24:02d}h"


def tick_line(tick: int, kimg: float, total_kimg: float, tick_s: float, tick_kimg: float,
              maintenance_s: float, elapsed_s: float, stats: dict[str, float],
              alarm: bool = False) -> str:
    """The official tick line: tick, kimg, time, sec/tick, sec/kimg, img/s, maintenance,
    losses, memory, ETA. `tick_s` is the whole tick, `maintenance_s` of it spent on grids,
    checkpoints and metrics; `alarm`: the ADA leak alarm is raised (after p)."""
    sec_per_kimg = tick_s / max(tick_kimg, 1e-8)
    img_s = tick_kimg * 1000 / max(tick_s, 1e-8)
    eta = (total_kimg - kimg) * sec_per_kimg
    parts = [f"tick {tick:<5d}", f"kimg {kimg:<8.1f}"]
    if "lod" in stats:  # progressive growing, as the official ProGAN / StyleGAN tick line
        parts.append(f"lod {stats['lod']:<5.2f}")
    parts += [f"time {_fmt_seconds(elapsed_s):<9s}", f"sec/tick {tick_s:<7.1f}",
              f"sec/kimg {sec_per_kimg:<7.2f}", f"img/s {img_s:<7.1f}",
              f"maintenance {maintenance_s:<6.1f}"]
    for name in ("G/loss", "D/loss", "G/reg", "D/reg", "pl_mean"):
        if name in stats:
            parts.append(f"{name} {stats[name]:<7.3f}")
    if "augment" in stats:  # the ADA strength p, as the official tick line
        parts.append(f"augment {stats['augment']:.3f}")
    if alarm:
        parts.append("LEAK-ALARM")
    in_use, peak = device_memory_gib()
    if peak is not None:
        parts.append(f"gpumem {in_use:<5.2f} peak {peak:<5.2f}")
    parts.append(f"eta {_fmt_seconds(eta)}")
    return " ".join(parts)


class StatsWriter:
    """stats.jsonl (one JSON object per tick) and TensorBoard scalars and images.

    stats.jsonl is the run's record: failing to write it stops the run (WriteError).
    TensorBoard is a view of the same numbers: if it cannot be written, `warn` says so
    once and the run goes on without it.
    """

    def __init__(self, workdir: Path, tensorboard: bool, warn=print):
        self.path = Path(workdir) / "stats.jsonl"
        self.warn = warn
        try:
            self.jsonl = open(self.path, "a")  # noqa: SIM115 - kept open for the run
        except OSError as e:
            raise write_error(str(self.path), e) from None
        self.tb = None
        if tensorboard:
            self._tensorboard(lambda: setattr(self, "tb", SummaryWriter(str(workdir))))

    def _tensorboard(self, fn) -> None:
        """Runs a TensorBoard write; on an I/O error warns once and drops TensorBoard."""
        try:
            fn()
        except OSError as e:
            tb, self.tb = self.tb, None
            self.warn(f"warning: cannot write TensorBoard events ({e}); training goes on "
                      "without them")
            if tb is not None:
                try:
                    tb.close()
                except OSError:
                    pass

    def scalars(self, kimg: float, values: dict[str, float], jsonl: bool = True) -> None:
        if jsonl:
            record = {"kimg": round(kimg, 3), "timestamp": time.time(), **values}
            try:
                self.jsonl.write(json.dumps(record) + "\n")
                self.jsonl.flush()
            except OSError as e:
                raise write_error(str(self.path), e) from None
        if self.tb is not None:
            step = int(kimg * 1000)

            def write():
                for name, value in values.items():
                    self.tb.add_scalar(name, value, global_step=step)
                self.tb.flush()
            self._tensorboard(write)

    def image(self, name: str, kimg: float, image_hwc: np.ndarray) -> None:
        if self.tb is not None:
            def write():
                self.tb.add_image(name, image_hwc, global_step=int(kimg * 1000),
                                  dataformats="HWC")
                self.tb.flush()
            self._tensorboard(write)

    def close(self) -> None:
        try:
            self.jsonl.close()
        except OSError:
            pass  # a failed flush was already raised by scalars()
        if self.tb is not None:
            self._tensorboard(self.tb.close)
