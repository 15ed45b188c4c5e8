"""Orbax checkpoints of a run: train state (global arrays), data position, run metadata.

Checkpoints are numbered by images shown (so `checkpoints/120000` is 120 kimg) and
written asynchronously; Orbax writes each into a temporary directory and renames it
when complete, so a killed process never leaves a checkpoint that looks finished.
Retention keeps the newest `keep_last` plus one checkpoint per `keep_every` images, and,
when the run evaluates metrics, the `best.keep` best checkpoints by one metric result:
the results are saved with the checkpoint (Orbax's `metrics` item), so the ranking
survives restarts and `best_step()` names the best checkpoint at any time.
The state is saved as one copy of plain arrays and restored as NumPy, so it can be
placed onto any device count and either backend.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used by this run."""


@dataclasses.dataclass(frozen=True)
class BestBy:
    """Keep the `keep` checkpoints with the best value of metric result `key`."""

    key: str  # a metric result key, e.g. 'fid50k_full' or 'pr50k3_full_recall'
    higher_is_better: bool
    keep: int = 1

    def score(self, metrics: dict) -> float:
        """Larger is better; a missing or non-finite result ranks last."""
        value = metrics.get(self.key) if isinstance(metrics, dict) else None
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return -math.inf
        return float(value) if self.higher_is_better else -float(value)


class _WithoutMetricsNote(logging.Filter):
    """Orbax warns at every save without metrics once metrics are tracked; most saves are."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


_WITHOUT_METRICS_NOTE = _WithoutMetricsNote()


class Checkpoints:
    """The checkpoints/ directory of a workdir."""

    def __init__(self, directory: str | Path, keep_last: int, keep_every: int | None,
                 async_save: bool = True, best: BestBy | None = None):
        directory = Path(directory).absolute()  # Orbax needs absolute paths
        preserve = [policies.LatestN(max(1, keep_last))]
        if keep_every:
            preserve.append(policies.EveryNSteps(keep_every, exact_interval=False))
        if best is not None:
            preserve.append(policies.BestN(get_metric_fn=best.score, n=best.keep,
                                           keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(preserve),
            # best_fn makes Orbax store each save's metrics and rank by them.
            best_fn=None if best is None else best.score,
            best_mode="max",
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.best = best
        if best is not None:
            logging.getLogger("absl").addFilter(_WITHOUT_METRICS_NOTE)  # once
        self.directory = directory
        self.manager = ocp.CheckpointManager(directory, options=options,
                                             item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The checkpoint with the best metric result so far (None: no evaluated one)."""
        if self.best is None:
            return None
        step = self.manager.best_step()  # ranks by best.score as BestN does (ties: newest)
        if step is None or self.best.score(self.manager.metrics(step) or {}) == -math.inf:
            return None
        return step

    def save(self, step: int, state, data_position: dict, meta: dict,
             metrics: dict[str, float] | None = None) -> None:
        """Starts an asynchronous save (every process must call it); `metrics` are the
        results evaluated on this state, used to keep the best checkpoint."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_position),
            meta=ocp.args.JsonSave(meta),
        ), metrics=metrics if self.best is not None else None, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, step: int, template) -> tuple[Any, dict, dict]:
        """(state as NumPy arrays shaped like `template` - arrays or jax.ShapeDtypeStructs -,
        data position, meta)."""
        target = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), x.dtype), template)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{self.directory}/{step}: cannot be restored into this run's state "
                f"(was it made by a different config?): {e}") from None
        state = restored["state"]
        for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(target),
                                     jax.tree_util.tree_leaves(state), strict=True):
            if np.shape(got) != np.shape(want):
                raise CheckpointError(
                    f"{self.directory}/{step}: {jax.tree_util.keystr(path)} has shape "
                    f"{np.shape(got)}, this config expects {np.shape(want)}")
        return state, restored["data"], restored["meta"]

    def read_meta(self, step: int) -> dict:
        """The small JSON record saved with a checkpoint (no arrays are read)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
