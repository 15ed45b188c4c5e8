"""The networks of a training workdir (its newest, or a chosen, checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from stylegan_jax.train.checkpoint import Checkpoints
from stylegan_jax.train.trainers import trainer_class


def is_workdir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (path / "checkpoints").is_dir()


def networks_from_workdir(workdir: str | Path, step: int | None = None) -> dict:
    """{'G', 'G_ema', 'D': Network} restored from a checkpoint of a training workdir."""
    workdir = Path(workdir)
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=1_000_000, keep_every=None)
    try:
        step = ckpts.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint yet")
        meta = ckpts.read_meta(step)
        trainer = trainer_class(config.family)(config, int(meta.get("c_dim", 0)))
        state, _, _ = ckpts.restore(step, trainer.init_state(config.seed))
    finally:
        ckpts.close()
    return trainer.export(jax.tree_util.tree_map(jnp.asarray, state))
