"""The networks of a training workdir: its newest, a chosen, or its best checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from stylegan_jax.train.checkpoint import Checkpoints
from stylegan_jax.train.config import best_by
from stylegan_jax.train.trainers import trainer_class


def is_workdir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (path / "checkpoints").is_dir()


def checkpoint_path(path: str | Path) -> tuple[Path, int | str | None] | None:
    """(workdir, step) for `runs/x` (newest: None), `runs/x/checkpoints/<nimg>` or
    `runs/x/checkpoints/best`; None when `path` is not in a training workdir."""
    path = Path(path)
    if is_workdir(path):
        return path, None
    if path.parent.name == "checkpoints" and is_workdir(path.parent.parent):
        if path.name == "best":
            return path.parent.parent, "best"
        if path.name.isdigit():
            return path.parent.parent, int(path.name)
        raise FileNotFoundError(f"{path}: expected checkpoints/<images shown> or "
                                "checkpoints/best")
    return None


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(json.loads((Path(workdir) / "config.json").read_text()))


def _checkpoints(workdir: Path, config: ml_collections.ConfigDict) -> Checkpoints:
    return Checkpoints(workdir / "checkpoints", keep_last=1_000_000, keep_every=None,
                       best=best_by(config), writer=False)


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _named_step(ckpts: Checkpoints, workdir: Path, step: int | str) -> int:
    """The checkpoint a number or 'best' names (it must exist)."""
    if step == "best":
        step = ckpts.best_step()
        if step is None:
            raise FileNotFoundError(
                f"{workdir}/checkpoints: no checkpoint evaluated by a best metric yet "
                "(config.metrics.best)")
    if step not in ckpts.manager.all_steps():
        raise FileNotFoundError(f"{workdir}/checkpoints/{step} does not exist; there are "
                                f"{sorted(ckpts.manager.all_steps())}")
    return step


def _load(ckpts: Checkpoints, config: ml_collections.ConfigDict, step: int):
    """The trainer and restored state of one checkpoint (DamagedCheckpointError if unreadable)."""
    meta = ckpts.read_meta(step)
    trainer = trainer_class(config.family)(config, int(meta.get("c_dim", 0)))
    layout = jax.eval_shape(trainer.init_state, config.seed)
    state, _, _ = ckpts.restore(step, layout,
                                getattr(trainer, "earlier_layouts", lambda _: [])(layout))
    return trainer, state


def restore_checkpoint(workdir: Path, step: int | str | None):
    """(step, trainer, state): the named checkpoint, or the newest readable one (None),
    skipping damaged ones with a warning each."""
    config = read_config(workdir)
    ckpts = _checkpoints(workdir, config)
    try:
        if step is not None:
            step = _named_step(ckpts, workdir, step)
            return (step, *_load(ckpts, config, step))
        found = ckpts.restore_newest(lambda s: _load(ckpts, config, s), warn=_warn)
    finally:
        ckpts.close()
    if found is None:
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint yet")
    return (found[0], *found[1])


def networks_from_workdir(workdir: str | Path, step: int | str | None = None) -> dict:
    """{'G', 'G_ema', 'D': Network} restored from a checkpoint of a training workdir
    (`step`: images shown, 'best' by the run's `metrics.best`, or None for the newest
    that can be read)."""
    return networks_at(workdir, step)[1]


def networks_at(workdir: str | Path, step: int | str | None = None) -> tuple[int, dict]:
    """(the checkpoint's step, its networks) from one restore: a caller that names the
    checkpoint it evaluated need not restore it twice."""
    step, trainer, state = restore_checkpoint(Path(workdir), step)
    return step, trainer.export(jax.tree_util.tree_map(jnp.asarray, state))
