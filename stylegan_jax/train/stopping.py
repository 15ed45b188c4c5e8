"""Why a run stops: total_kimg reached, `stop_at_step`, SIGTERM / SIGINT, or a broken run
that the watchdog could not roll back (which keeps the last good checkpoint)."""

from __future__ import annotations

import signal

import jax
import numpy as np


class TrainingDiverged(RuntimeError):
    """The run broke and the watchdog could not (or was told not to) roll it back; the last
    good checkpoint is kept."""


class NonFiniteError(TrainingDiverged):
    """The losses or the state became NaN/Inf with the watchdog off."""


class Divergence(Exception):  # noqa: N818 - a signal to the loop, not an error to a user
    """Raised inside the loop when a check finds the run broken; the loop rolls back
    (train/rollback.py) or, with the watchdog off, stops with NonFiniteError."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason  # kind: non-finite | loss-bound | metric


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


def check_state(host_state) -> None:
    """Raises Divergence if a float leaf of the state holds a NaN / Inf (checked before a
    checkpoint or an evaluation uses it)."""
    if not all(bool(np.all(np.isfinite(np.asarray(x))))
               for x in jax.tree_util.tree_leaves(host_state)
               if np.issubdtype(np.asarray(x).dtype, np.floating)):
        raise Divergence("non-finite", "the training state became non-finite")
