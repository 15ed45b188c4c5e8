"""What the training loop needs from a model family: stages and the trainer protocol.

A trainer owns its networks, state layout and compiled programs; the loop owns data,
devices, ticks, grids and checkpoints. Training runs in stages (StyleGAN2 has one;
progressive growing has one per resolution and fade): a stage fixes the data
resolution and the global batch, so the loop reopens the data at each new stage and
the trainer compiles a program per stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from stylegan_jax.train.backends import Backend


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stretch of training with one data resolution and one global batch."""

    index: int
    resolution: int  # of the real images the data pipeline serves
    batch_size: int  # global
    end_nimg: int | None = None  # images shown when the next stage starts (None: last)


class Trainer(Protocol):
    """The family-specific half of training (see the module docstring)."""

    z_dim: int

    def init_state(self, seed: int) -> Any:
        """Fresh state pytree with integer fields `step` and `nimg`."""

    def stage_at(self, nimg: int) -> Stage: ...

    def programs(self, backend: Backend, stage: Stage) -> dict:
        """Every mapped fn(state, images_u8, labels, label_table) -> (state, stats) that the
        stage runs, by key; the loop compiles them all before the stage's first step."""

    def program_key(self, stage: Stage, step: int):
        """The key (in `programs`) of the program that runs iteration `step`."""

    def export(self, host_state) -> dict:
        """{'G', 'G_ema', 'D': registry.Network} for the grids, generate, metrics and
        convert (outside the training program: no device axis)."""
