"""Why a run stops: total_kimg reached, `stop_at_step`, SIGTERM / SIGINT, or a non-finite
state or loss (which keeps the last good checkpoint)."""

from __future__ import annotations

import math
import signal

import jax
import numpy as np


class NonFiniteError(RuntimeError):
    """The losses or the state became NaN/Inf; the last good checkpoint is kept."""


class StopRequest:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint and returns."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stop_reason(nimg: int, total_nimg: int, step: int, stop_at_step: int | None,
                signal_name: str | None) -> str | None:
    """Why the run stops before its next iteration ("done", "stop_at_step", the signal's
    name), or None to go on."""
    if nimg >= total_nimg:
        return "done"
    if stop_at_step is not None and step >= stop_at_step:
        return "stop_at_step"
    return signal_name


def check_losses(values: dict[str, float], nimg: int, last_good: int | None) -> None:
    """Raises NonFiniteError if a tick's statistics hold a NaN / Inf."""
    if not all(math.isfinite(v) for v in values.values()):
        raise NonFiniteError(
            f"non-finite loss at kimg {nimg / 1000:.1f}: {values}; the last "
            f"good checkpoint ({last_good}) is kept")


def check_state(host_state, nimg: int, last_good: int | None) -> None:
    """Raises NonFiniteError if a float leaf of the state holds a NaN / Inf (checked before
    a checkpoint or an evaluation uses it)."""
    if not all(bool(np.all(np.isfinite(np.asarray(x))))
               for x in jax.tree_util.tree_leaves(host_state)
               if np.issubdtype(np.asarray(x).dtype, np.floating)):
        raise NonFiniteError(
            f"the training state became non-finite at kimg {nimg / 1000:.1f}; "
            f"the last good checkpoint ({last_good}) is kept")
