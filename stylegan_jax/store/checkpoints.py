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

A checkpoint that cannot be read (truncated, garbled or missing files: a partial copy,
a failing disk) is told apart from one made by another config: the saved layout (names,
shapes, dtypes) is read and compared first, so whatever fails after that is damage.
`restore_newest` then skips damaged checkpoints with one warning each; a trainer sets
them aside (renamed, never deleted) because it will save those step numbers again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts  # Orbax's storage layer
from orbax.checkpoint import checkpoint_managers as policies

from stylegan_jax import distributed
from stylegan_jax.atomic import write_error

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used by this run (the CLI prints it as one line)."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files cannot be read: truncated, garbled, missing, unfinished."""


def higher_is_better(result_key: str) -> bool:
    """Direction of a metric result (`metrics.registry` result keys), for ranking
    checkpoints: FID, KID, PPL, IS std fall; precision, recall, IS and the equivariance
    PSNRs rise."""
    return result_key.endswith(("_precision", "_recall", "_mean")) or result_key.startswith("eq")


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


class _QuietOrbax(logging.Filter):
    """Drops Orbax log lines that repeat what this module says once in its own words:
    saves without metrics (most are, once metrics are tracked), per-step metadata files
    that are missing or garbled (the checkpoint is then reported as damaged), and the
    tracebacks of a failed background save (raised as one WriteError)."""

    NOTES = ("did not provide metrics", "Failed to json parse Metadata file",
             "Metadata file does not exist", "was found in the checkpoint, but could not be",
             "Handler Commit operations or the Commit callback", "_SignalingThread.run() raised",
             "Save Finalize thread")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(note in message for note in self.NOTES)


_QUIET_ORBAX = _QuietOrbax()


def _why(error: BaseException) -> str:
    """The useful part of a read error. TensorStore nests one message per layer and ends
    with a page of JSON spec: keep its status code and the innermost file's complaint."""
    lines = str(error).split(" [tensorstore_spec", 1)[0].strip().splitlines()
    text = lines[0] if lines else ""
    status, innermost = re.match(r"[A-Z_]+: ", text), text.rfind('local file "')
    if status and innermost > 0:
        text = status.group(0) + text[innermost:]
    else:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _layout(template) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{array name: (shape, dtype)} of a state or state template."""
    return {_leaf_name(path): (tuple(np.shape(x)), np.dtype(x.dtype))
            for path, x in jax.tree_util.tree_leaves_with_path(template)}


def _leaf_name(path) -> str:
    """A key path as Orbax names saved arrays ('G.mapping.fc0.bias')."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return ".".join(parts)


class Checkpoints:
    """The checkpoints/ directory of a workdir.

    `writer=False` (generate, metrics, convert) leaves the directory as it is; a writer
    (the trainer) also removes Orbax's temporary directories of unfinished saves.
    `run_meta`: what every save's metadata records about the run beside the meta it is
    given (e.g. the label kind, which tells generate whether the network takes a vector).
    """

    def __init__(self, directory: str | Path, keep_last: int, keep_every: int | None,
                 async_save: bool = True, best: BestBy | None = None, writer: bool = True,
                 run_meta: dict | None = None):
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
            create=writer,
            cleanup_tmp_directories=writer,
        )
        self.best = best
        self.run_meta = dict(run_meta or {})
        self.failed = False  # a write failed (and was reported)
        logging.getLogger("absl").addFilter(_QUIET_ORBAX)  # once
        self.directory = directory
        self.manager = ocp.CheckpointManager(
            directory, options=options, item_names=("state", "data", "meta"),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "data": ocp.JsonCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

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
        results evaluated on this state, used to keep the best checkpoint.

        A failed write (this one or the previous, still asynchronous one) raises
        WriteError; Orbax renames a save into place only when complete, so the newest
        complete checkpoint stays as it was.
        """
        self._writing(lambda: self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_position),
            meta=ocp.args.JsonSave({**self.run_meta, **meta}),
        ), metrics=metrics if self.best is not None else None, force=True))

    def wait(self) -> None:
        self._writing(self.manager.wait_until_finished)

    def _writing(self, fn: Callable[[], None]) -> None:
        failure = None
        try:
            fn()
        except OSError as e:  # ENOSPC, EIO, EACCES, from this save or the one in flight
            failure = e
        if failure is not None:
            self.failed = True
            raise write_error(
                f"a checkpoint in {self.directory} (the newest complete one, "
                f"{self.latest_step()}, is intact)", failure) from None

    def _read(self, step: int, read: Callable[[], T]) -> T:
        """`read()`, with any failure reported as this checkpoint being damaged.

        The error is raised outside the `except` block on purpose: the original one
        holds the frames of Orbax's aborted event loop, and while it lives TensorStore's
        still-running reads report "Event loop is closed" tracebacks.
        """
        failure = None
        try:
            return read()
        except Exception as e:  # TensorStore, JSON, missing items: all mean unreadable
            failure = _why(e)
        raise DamagedCheckpointError(f"{self.directory}/{step} is damaged and cannot be "
                                     f"read ({failure})")

    def _read_every_value(self, step: int) -> None:
        """Reads each stored value of the state once, one after another.

        Orbax reads all arrays at once and, when one read fails, closes its event loop
        with the others in flight: they then print "Event loop is closed" tracebacks.
        Reading the OCDBT store sequentially first (its b-tree nodes carry checksums)
        finds truncated, garbled or missing files before Orbax is asked.
        """
        root = self.directory / str(step) / "state"
        if not (root / "manifest.ocdbt").is_file():
            return  # no OCDBT store: Orbax's own checks report what is missing
        store = ts.KvStore.open({"driver": "ocdbt",
                                 "base": {"driver": "file", "path": f"{root}/"}}).result()
        for key in store.list().result():
            store.read(key).result()

    def _saved_layout(self, step: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """{array name: (shape, dtype)} as saved, read from the checkpoint's metadata."""
        def read():
            self._read_every_value(step)
            tree = self.manager.item_metadata(step)["state"]
            if tree is None:
                raise FileNotFoundError("the state's metadata is missing")
            return {_leaf_name(path): (tuple(x.shape), np.dtype(x.dtype))
                    for path, x in jax.tree_util.tree_leaves_with_path(tree)}
        return self._read(step, read)

    def restore(self, step: int, template, earlier: Sequence[tuple[Any, Callable]] = ()
                ) -> tuple[Any, dict, dict]:
        """(state as NumPy arrays shaped like `template` - arrays or jax.ShapeDtypeStructs -,
        data position, meta). Raises DamagedCheckpointError for unreadable files and
        CheckpointError for a checkpoint of another layout (config).

        `earlier`: (template, upgrade) pairs of layouts older versions of this code saved
        for the same config; a checkpoint in one of them is restored in it and upgraded."""
        saved = self._saved_layout(step)
        for old_template, upgrade in earlier:
            if saved == _layout(old_template) != _layout(template):
                state, data, meta = self._restore_as(step, old_template)
                return upgrade(state), data, meta
        wanted = _layout(template)
        if saved != wanted:
            missing, extra = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
            changed = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
            detail = "; ".join(
                [f"missing {', '.join(missing[:3])}"] * bool(missing)
                + [f"unexpected {', '.join(extra[:3])}"] * bool(extra)
                + [f"{k} is {saved[k][0]} {saved[k][1]}, this config expects {wanted[k][0]} "
                   f"{wanted[k][1]}" for k in changed[:3]])
            raise CheckpointError(
                f"{self.directory}/{step}: cannot be restored into this run's state "
                f"(was it made by a different config?): {detail}")
        return self._restore_as(step, template)

    def _restore_as(self, step: int, template) -> tuple[Any, dict, dict]:
        target = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), x.dtype), template)
        restored = self._read(step, lambda: self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore(),
        )))
        return restored["state"], restored["data"], restored["meta"]

    def restore_saved(self, step: int) -> dict:
        """The state as saved: nested dicts of arrays by field name, in whatever layout the
        run that wrote it had (readers that take only the networks need no template)."""
        def read():
            self._read_every_value(step)
            # As NumPy (a target built from the saved metadata): without one, Orbax places
            # arrays by the saving run's sharding, which another process or device count
            # cannot ("Topology mismatch").
            tree = self.manager.item_metadata(step)["state"]
            target = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), tree)
            return self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
        return self._read(step, read)

    def read_meta(self, step: int) -> dict:
        """The small JSON record saved with a checkpoint (no arrays are read)."""
        restored = self._read(step, lambda: self.manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())))
        return dict(restored["meta"])

    def restore_newest(self, load: Callable[[int], T], warn: Callable[[str], None],
                       set_aside: bool = False) -> tuple[int, T] | None:
        """(step, load(step)) for the newest checkpoint that `load` can read, None when
        there is none at all.

        Each newer damaged checkpoint gets one `warn` line; with `set_aside` (a trainer,
        which will save those steps again) it is renamed to `<step>.damaged`, never
        deleted. When every checkpoint is damaged nothing is moved and the error says so.
        """
        damaged = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                result = load(step)
            except DamagedCheckpointError as e:
                damaged.append((step, e))
                continue
            for bad, error in damaged:
                kept = self._set_aside(bad) if set_aside else None
                warn(f"warning: {error}; skipped" + (f", moved to {kept}" if kept else "")
                     + f"; using checkpoint {step}")
            if set_aside and damaged:
                distributed.barrier(f"checkpoints-set-aside-{step}", 600)
                self.manager.reload()
            return step, result
        if damaged:
            raise DamagedCheckpointError(
                f"no checkpoint in {self.directory} can be read: "
                + "; ".join(str(e) for _, e in damaged))
        return None

    def set_aside_after(self, step: int | None, label: str) -> list[Path]:
        """Renames every checkpoint newer than `step` (all: None) to `<step>.<label>`: a
        rollback abandons them, and a trainer will save those steps again. Kept for a
        post-mortem, never deleted; every process must call it."""
        self.wait()
        moved = [self._set_aside(s, label) for s in sorted(self.manager.all_steps())
                 if step is None or s > step]
        distributed.barrier(f"checkpoints-{label}-{step}", 600)
        self.manager.reload()
        return moved

    def _set_aside(self, step: int, label: str = "damaged") -> Path | None:
        """Renames a checkpoint out of Orbax's way (process 0; the others see it)."""
        source = self.directory / str(step)
        dest = self.directory / f"{step}.{label}"
        n = 1
        while dest.exists():
            n += 1
            dest = self.directory / f"{step}.{label}{n}"
        if jax.process_index() == 0:
            source.rename(dest)
        return dest

    def close(self) -> None:
        """Waits for the save in flight, then stops Orbax's threads (after a reported
        write failure it only stops them)."""
        try:
            if not self.failed:
                self.wait()
        finally:
            try:
                self.manager.close()
            except OSError:
                if not self.failed:
                    raise
