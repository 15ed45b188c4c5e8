"""The official progressive-growing schedule (ProGAN / StyleGAN v1 `TrainingSchedule`).

Time is measured in real images shown (nimg). Training runs in phases of
`lod_training_kimg + lod_transition_kimg`: each phase first trains at a fixed level of
detail (lod), then fades the next resolution in by lowering lod linearly to the next
integer. lod = log2(final / resolution); resolution = final / 2**floor(lod), so the
resolution (and with it the minibatch and learning rates, which are chosen per
resolution) changes when a fade *starts*.

As officially, the schedule is evaluated only every `minibatch_repeats * d_repeats`
minibatches (a "group"); the whole group trains at the lod of its first image. A stage
is the run of groups with one resolution: it fixes the data resolution, the global
minibatch and the base learning rates, so the loop compiles one program per stage,
while lod (the fade) is computed on the device from the state's image count.

W x H images (a power-of-two aspect) grow as squares do: every resolution here is the
shorter side (`data.resolution`, `lod_initial_resolution`, the per-resolution dicts' keys),
and the reals at each level are the W x H images box-downscaled in both axes.

Exact arithmetic: the host side works on integer image counts, so phase boundaries fall
exactly where the official float formula puts them for any kimg with three decimals.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import jax.numpy as jnp


def _pairs(pairs) -> tuple[tuple[int, float], ...]:
    return tuple((int(k), v) for k, v in pairs)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The official TrainingSchedule arguments plus the loop's repeat counts (hashable).

    Per-resolution overrides are ((resolution, value), ...) pairs (the official dicts).
    """

    resolution: int  # final (dataset) resolution
    initial_resolution: int = 4  # lod_initial_resolution
    training_kimg: float = 600.0  # lod_training_kimg
    transition_kimg: float = 600.0  # lod_transition_kimg
    minibatch_base: int = 16
    minibatch_dict: tuple = ()
    g_lrate_base: float = 0.001
    g_lrate_dict: tuple = ()
    d_lrate_base: float = 0.001
    d_lrate_dict: tuple = ()
    lrate_rampup_kimg: float = 0.0
    minibatch_repeats: int = 4
    d_repeats: int = 1

    @classmethod
    def from_config(cls, config) -> Schedule:
        t = config.train
        return cls(
            resolution=config.data.resolution, initial_resolution=t.lod_initial_resolution,
            training_kimg=float(t.lod_training_kimg),
            transition_kimg=float(t.lod_transition_kimg),
            minibatch_base=t.batch_size, minibatch_dict=_pairs(t.minibatch_dict),
            g_lrate_base=float(t.g_lr), g_lrate_dict=_pairs(t.g_lrate_dict),
            d_lrate_base=float(t.d_lr), d_lrate_dict=_pairs(t.d_lrate_dict),
            lrate_rampup_kimg=float(t.lrate_rampup_kimg),
            minibatch_repeats=t.minibatch_repeats, d_repeats=t.d_repeats)

    # -- the official formulas, on exact image counts ------------------------------------
    @property
    def max_lod(self) -> int:
        """lod at the initial resolution (log2 final - floor(log2 initial))."""
        return int(math.log2(self.resolution)) - int(math.floor(math.log2(
            self.initial_resolution)))

    @property
    def training_nimg(self) -> int:
        return round(self.training_kimg * 1000)

    @property
    def transition_nimg(self) -> int:
        return round(self.transition_kimg * 1000)

    def _phase(self, nimg: int) -> tuple[int, int]:
        """(phase index, images into the phase) at nimg."""
        duration = self.training_nimg + self.transition_nimg
        if duration <= 0:
            return 0, nimg
        return nimg // duration, nimg % duration

    def lod(self, nimg: int) -> float:
        """Official `sched.lod` when the schedule is evaluated at nimg images."""
        idx, into = self._phase(nimg)
        lod = Fraction(self.max_lod - idx)
        if self.transition_nimg > 0:
            lod -= Fraction(max(into - self.training_nimg, 0), self.transition_nimg)
        return float(max(lod, 0))

    def level(self, nimg: int) -> int:
        """floor(lod) at nimg: how many halvings the trained resolution is below the final."""
        idx, into = self._phase(nimg)
        fading = self.transition_nimg > 0 and into > self.training_nimg
        return max(self.max_lod - idx - int(fading), 0)

    def resolution_at(self, nimg: int) -> int:
        return self.resolution >> self.level(nimg)

    def minibatch(self, resolution: int) -> int:
        """Global minibatch at a resolution (official: must split evenly over devices)."""
        return int(dict(self.minibatch_dict).get(resolution, self.minibatch_base))

    def base_lrates(self, resolution: int) -> tuple[float, float]:
        """(G, D) learning rates at a resolution, before the rampup."""
        return (float(dict(self.g_lrate_dict).get(resolution, self.g_lrate_base)),
                float(dict(self.d_lrate_dict).get(resolution, self.d_lrate_base)))

    def rampup(self, nimg: int) -> float:
        """Official lrate_rampup_kimg factor min(kimg / rampup, 1) (1 without a rampup)."""
        if self.lrate_rampup_kimg <= 0:
            return 1.0
        return min(nimg / 1000.0 / self.lrate_rampup_kimg, 1.0)

    def lrates(self, nimg: int) -> tuple[float, float]:
        g, d = self.base_lrates(self.resolution_at(nimg))
        r = self.rampup(nimg)
        return g * r, d * r

    def resolutions(self) -> list[int]:
        return [self.resolution >> lvl for lvl in range(self.max_lod, -1, -1)]

    # -- stages -------------------------------------------------------------------------
    def group_nimg(self, resolution: int) -> int:
        """Images per group (schedule evaluations are this far apart at a resolution)."""
        return self.minibatch_repeats * self.d_repeats * self.minibatch(resolution)

    def stages(self) -> list[StagePlan]:
        """Every non-empty stage, in order, with the image count at which it starts."""
        plans, start = [], 0
        duration = self.training_nimg + self.transition_nimg
        last = 0 if duration > 0 else self.max_lod  # without phases lod never drops
        for level in range(self.max_lod, last - 1, -1):
            res = self.resolution >> level
            group = self.group_nimg(res)
            if plans:
                # The first group start of the previous stage's grid at this level or below.
                prev = plans[-1]
                first = self._first_nimg_at_level(level)
                k = max(0, -(-(first - prev.start_nimg) // prev.group_nimg))
                start = prev.start_nimg + k * prev.group_nimg
                if start == prev.start_nimg:  # the previous stage has no group: skip it
                    plans.pop()
            plans.append(StagePlan(index=self.max_lod - level, resolution=res, level=level,
                                   start_nimg=start, group_nimg=group,
                                   batch_size=self.minibatch(res),
                                   lrates=self.base_lrates(res)))
        return plans

    def _first_nimg_at_level(self, level: int) -> int:
        """The smallest image count whose floor(lod) is <= level."""
        drop = self.max_lod - level  # phases that must have passed (fully or into the fade)
        duration = self.training_nimg + self.transition_nimg
        if self.transition_nimg > 0:
            return (drop - 1) * duration + self.training_nimg + 1
        return drop * duration

    def group_start(self, plan: StagePlan, nimg: int) -> int:
        """The image count at which the schedule was evaluated for the group holding nimg."""
        return plan.start_nimg + (nimg - plan.start_nimg) // plan.group_nimg * plan.group_nimg


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One stage: its resolution, where it starts, and what is static within it."""

    index: int  # resolutions above the initial one (stable across skipped stages)
    resolution: int
    level: int  # floor(lod) throughout the stage
    start_nimg: int
    group_nimg: int  # images between schedule evaluations
    batch_size: int  # global minibatch
    lrates: tuple[float, float]  # (G, D) before the rampup


def device_lod(schedule: Schedule, plan: StagePlan, nimg: jnp.ndarray) -> jnp.ndarray:
    """float32 lod of the group holding `nimg` (int32), inside one stage's program.

    Written on integers like `Schedule.lod`, so the phase is exact; only the fade fraction
    is a float32 division.
    """
    group = plan.start_nimg + (nimg - plan.start_nimg) // plan.group_nimg * plan.group_nimg
    duration = schedule.training_nimg + schedule.transition_nimg
    idx = group // duration if duration > 0 else jnp.zeros_like(group)
    lod = (schedule.max_lod - idx).astype(jnp.float32)
    if schedule.transition_nimg > 0:
        past = jnp.maximum(group - idx * duration - schedule.training_nimg, 0)
        lod = lod - past.astype(jnp.float32) / jnp.float32(schedule.transition_nimg)
    return jnp.maximum(lod, 0.0)


def device_rampup(schedule: Schedule, plan: StagePlan, nimg: jnp.ndarray) -> jnp.ndarray:
    """The learning-rate rampup factor of the group holding `nimg` (float32)."""
    if schedule.lrate_rampup_kimg <= 0:
        return jnp.float32(1.0)
    group = plan.start_nimg + (nimg - plan.start_nimg) // plan.group_nimg * plan.group_nimg
    return jnp.minimum(group.astype(jnp.float32) / (schedule.lrate_rampup_kimg * 1000.0), 1.0)
