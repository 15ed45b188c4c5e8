"""A training run's networks, read from its saved layout and `config.json` alone.

A run describes itself: `config.json` says which family and modules it trains, each
checkpoint's `meta` its label count, and its `state` holds G, G_buffers, G_ema,
G_ema_buffers and D by name. So generate, metrics, convert and a new run's `train.resume`
read any checkpoint (the newest, a chosen one, or the best by the run's metric) without
building the trainer, whatever its optimiser state looks like.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_jax.models.registry import Network, family_named, networks_from_config
from stylegan_jax.store.checkpoints import BestBy, Checkpoints, higher_is_better


@dataclasses.dataclass
class RunCheckpoint:
    """One checkpoint of a run: its step (images shown), networks and ADA strength."""

    workdir: Path
    step: int
    networks: dict[str, Network]
    augment_p: float | None  # None: the run trains without a `augment_p` state field


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


def best_rule(config: ml_collections.ConfigDict) -> BestBy | None:
    """The best-checkpoint rule of `metrics.best` (None: not kept, or no metrics run)."""
    m = config.get("metrics")
    if m is None or not m.best or not m.names.strip():
        return None
    return BestBy(m.best, higher_is_better(m.best), int(m.keep_best))


def _checkpoints(workdir: Path, config: ml_collections.ConfigDict) -> Checkpoints:
    return Checkpoints(workdir / "checkpoints", keep_last=1_000_000, keep_every=None,
                       best=best_rule(config), writer=False)


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


def networks_from_state(config: ml_collections.ConfigDict, c_dim: int, state
                        ) -> dict[str, Network]:
    """{'G', 'G_ema', 'D'} of a state (a mapping of its fields: as restored, or a trainer's
    state's `vars`), outside the training program (no device axis). A progressive run's
    networks carry the lod of its latest iteration (the official Gs keeps G's lod); before
    the first one, the schedule's first lod, that of the initial resolution."""
    family = family_named(config.family)
    G, D = networks_from_config(config, c_dim)
    lod = 0.0
    if family.lod:
        lod = float(np.asarray(state["lod"]))
        if lod < 0:
            lod = float(int(math.log2(config.data.resolution))
                        - math.floor(math.log2(config.train.lod_initial_resolution)))

    def variables(params, buffers):
        return {"params": params, **({"buffers": buffers} if buffers else {})}

    return {"G": Network(G, variables(state["G"], state.get("G_buffers")), lod),
            "G_ema": Network(G, variables(state["G_ema"], state.get("G_ema_buffers")), lod),
            "D": Network(D, {"params": state["D"]}, lod)}


# The state fields `networks_from_state` reads.
_NETWORK_FIELDS = ("G", "G_buffers", "G_ema", "G_ema_buffers", "D", "lod")


def _read(ckpts: Checkpoints, workdir: Path, config: ml_collections.ConfigDict,
          step: int) -> RunCheckpoint:
    """One checkpoint's networks (DamagedCheckpointError if unreadable)."""
    meta = ckpts.read_meta(step)
    saved = ckpts.restore_saved(step)
    # Only the networks go to the device; the optimiser moments (twice the parameters) stay.
    state = {k: jax.tree_util.tree_map(jnp.asarray, v) for k, v in saved.items()
             if k in _NETWORK_FIELDS}
    p = saved.get("augment_p")
    networks = networks_from_state(config, int(meta.get("c_dim", 0)), state)
    return RunCheckpoint(workdir, step, networks, None if p is None else float(np.asarray(p)))


def read_checkpoint(workdir: str | Path, step: int | str | None = None) -> RunCheckpoint:
    """A checkpoint of a training workdir (`step`: images shown, 'best' by the run's
    `metrics.best`, or None for the newest that can be read, skipping damaged ones with a
    warning each)."""
    workdir = Path(workdir)
    config = read_config(workdir)
    ckpts = _checkpoints(workdir, config)
    try:
        if step is not None:
            return _read(ckpts, workdir, config, _named_step(ckpts, workdir, step))
        found = ckpts.restore_newest(lambda s: _read(ckpts, workdir, config, s), warn=_warn)
    finally:
        ckpts.close()
    if found is None:
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint yet")
    return found[1]


def networks_at(workdir: str | Path, step: int | str | None = None) -> tuple[int, dict]:
    """(the checkpoint's step, its networks) from one restore: a caller that names the
    checkpoint it evaluated need not restore it twice."""
    found = read_checkpoint(workdir, step)
    return found.step, found.networks


def networks_from_workdir(workdir: str | Path, step: int | str | None = None) -> dict:
    """{'G', 'G_ema', 'D': Network} of a checkpoint of a training workdir (see
    `read_checkpoint`)."""
    return read_checkpoint(workdir, step).networks


def meta_at(workdir: str | Path, step: int | str | None = None) -> dict | None:
    """A checkpoint's metadata (newest by default; None: no checkpoint yet): c_dim,
    class_names and label_kind among them (runs from before a field lack it)."""
    workdir = Path(workdir)
    ckpts = _checkpoints(workdir, read_config(workdir))
    try:
        step = ckpts.latest_step() if step is None else _named_step(ckpts, workdir, step)
        return None if step is None else ckpts.read_meta(step)
    finally:
        ckpts.close()
