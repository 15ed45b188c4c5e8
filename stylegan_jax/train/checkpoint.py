"""Orbax checkpoints of a run: train state (global arrays), data position, run metadata.

Checkpoints are numbered by images shown (so `checkpoints/120000` is 120 kimg) and
written asynchronously; Orbax writes each into a temporary directory and renames it
when complete, so a killed process never leaves a checkpoint that looks finished.
Retention keeps the newest `keep_last` plus one checkpoint per `keep_every` images.
The state is saved as one copy of plain arrays and restored as NumPy, so it can be
placed onto any device count and either backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used by this run."""


class Checkpoints:
    """The checkpoints/ directory of a workdir."""

    def __init__(self, directory: str | Path, keep_last: int, keep_every: int | None,
                 async_save: bool = True):
        directory = Path(directory).absolute()  # Orbax needs absolute paths
        preserve = [policies.LatestN(max(1, keep_last))]
        if keep_every:
            preserve.append(policies.EveryNSteps(keep_every, exact_interval=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(preserve),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.directory = directory
        self.manager = ocp.CheckpointManager(directory, options=options,
                                             item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_position: dict, meta: dict) -> None:
        """Starts an asynchronous save (every process must call it)."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_position),
            meta=ocp.args.JsonSave(meta),
        ), force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, step: int, template) -> tuple[Any, dict, dict]:
        """(state as NumPy arrays shaped like `template`, data position, meta)."""
        target = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype),
                                        template)
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
