"""What the training loop needs from a model family, and the StyleGAN2 family.

A trainer owns its networks, state layout and compiled programs; the loop owns data,
devices, ticks, grids and checkpoints. Training runs in stages (StyleGAN2 has one;
progressive growing has one per resolution and fade): a stage fixes the data
resolution and the global batch, so the loop reopens the data at each new stage and
the trainer compiles a program per stage.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Protocol

import ml_collections

from stylegan_jax.models import stylegan2
from stylegan_jax.train import step as step_lib
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
        """{'G', 'G_ema', 'D': model_store.Network} for the grids, generate, metrics and
        convert (outside the training program: no device axis)."""


# family -> "module:class"; the progressive families live in their own module.
FAMILIES = {
    "stylegan2": "stylegan_jax.train.trainers:StyleGAN2Trainer",
    "stylegan3": "stylegan_jax.train.trainers:StyleGAN2Trainer",
    "progan": "stylegan_jax.train.progressive:ProgressiveTrainer",
    "stylegan": "stylegan_jax.train.progressive:ProgressiveTrainer",
}


def trainer_class(family: str):
    if family not in FAMILIES:
        raise ValueError(f"config.family={family!r}: expected one of {sorted(FAMILIES)}")
    module, _, name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module), name)


class StyleGAN2Trainer:
    """StyleGAN2(-ADA) and StyleGAN3: one stage, lazy regularisation, G EMA (train/step.py;
    StyleGAN3 trains in the same loop with its generator and three step settings)."""

    def __init__(self, config: ml_collections.ConfigDict, c_dim: int):
        from stylegan_jax.train.config import step_config

        self.cfg = step_config(config)
        self.nets = step_lib.build_networks(config.model, config.data.resolution,
                                            config.data.channels, c_dim, config.family,
                                            config.train.batch_size)
        self.z_dim = self.nets.G.z_dim
        # StyleGAN3-r: a first stage while the D input blur acts, then one without it.
        end = self.cfg.blur_end_nimg
        self._stages = [Stage(i, config.data.resolution, config.train.batch_size, e)
                        for i, e in enumerate([] if end is None else [end])]
        self._stages.append(Stage(len(self._stages), config.data.resolution,
                                  config.train.batch_size))

    @staticmethod
    def validate(config: ml_collections.ConfigDict, num_devices: int, fail) -> None:
        m, t = config.model, config.train
        sg3 = config.family == "stylegan3"
        for field in ("d_architecture",) if sg3 else ("g_architecture", "d_architecture"):
            if m[field] not in stylegan2.ARCHITECTURES:
                fail(f"model.{field}", f"expected one of {stylegan2.ARCHITECTURES}")
        positive = ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")
        if sg3:
            positive += ("g_channel_multiplier", "num_layers")
        for field in positive:
            if not isinstance(m[field], int) or m[field] < 1:
                fail(f"model.{field}", "expected a positive integer")
        if sg3:
            if m.num_layers <= 2:
                fail("model.num_layers", "expected more than the 2 critically sampled layers")
            if m.conv_kernel not in (1, 3):
                fail("model.conv_kernel", "expected 3 (stylegan3-t) or 1 (stylegan3-r)")
            if not m.magnitude_ema_kimg > 0:
                fail("model.magnitude_ema_kimg", "expected a positive number")
            if t.pl_weight != 0 or t.style_mixing_prob != 0:
                fail("train.pl_weight" if t.pl_weight != 0 else "train.style_mixing_prob",
                     "StyleGAN3 trains without path length regularisation and style mixing "
                     "(official); expected 0")
            for field in ("blur_init_sigma", "blur_fade_kimg"):
                if not 0 <= t[field] < float("inf"):
                    fail(f"train.{field}", "expected a finite number >= 0")
        elif t.get("blur_init_sigma", 0):
            fail("train.blur_init_sigma", "the D input blur is a StyleGAN3 setting; expected 0")
        if t.noise_mode not in stylegan2.NOISE_MODES:
            fail("train.noise_mode", f"expected one of {stylegan2.NOISE_MODES}")
        per_device = t.batch_size // num_devices
        group = m.mbstd_group_size
        if group is not None and group > 0 and per_device % min(group, per_device):
            fail("model.mbstd_group_size",
                 f"must divide the per-device batch {per_device} (or exceed it)")
        for field in ("g_reg_interval", "d_reg_interval", "pl_batch_shrink"):
            if t[field] < 1 and not (field == "g_reg_interval" and t[field] == 0
                                     and t.pl_weight == 0):
                fail(f"train.{field}", "expected an integer >= 1 (g_reg_interval: 0, no lazy "
                     "regularisation, when train.pl_weight is 0)")
        if t.pl_weight > 0 and per_device // t.pl_batch_shrink < 1:
            fail("train.pl_batch_shrink", f"leaves no sample of the per-device batch {per_device}")
        for field in ("g_lr", "d_lr", "ema_kimg"):
            if not t[field] > 0:
                fail(f"train.{field}", "expected a positive number")
        for field in ("r1_gamma", "pl_weight", "pl_decay", "style_mixing_prob"):
            if not 0 <= t[field] < float("inf"):
                fail(f"train.{field}", "expected a finite number >= 0")
        if t.style_mixing_prob > 1:
            fail("train.style_mixing_prob", "expected a probability in [0, 1]")

    def init_state(self, seed: int):
        return step_lib.init_state(self.nets, self.cfg, seed)

    def earlier_layouts(self, template) -> list:
        """(template, upgrade) of state layouts older checkpoints of this config hold."""
        if self.cfg.r1_skips_out_bias:  # StyleGAN3 runs began with flat moments
            return []
        return [(step_lib.per_tensor_moments_layout(template), step_lib.flat_moments)]

    def start_from(self, host_state, source: str, log=print):
        """A new run's state with the networks (and ADA p) of `source` (train.resume)."""
        from stylegan_jax.train import transfer

        networks, p = transfer.load_source(source)
        return transfer.apply_resume(host_state, networks, p, source, log)

    def stage_at(self, nimg: int) -> Stage:
        return next(s for s in self._stages if s.end_nimg is None or nimg < s.end_nimg)

    def programs(self, backend: Backend, stage: Stage) -> dict:
        return {key: compiled_iteration(backend, self.nets, self.cfg, key)
                for key in sorted({self.program_key(stage, step)
                                   for step in range(self.cfg.period)})}

    def program_key(self, stage: Stage, step: int):
        """(run Greg, run Dreg[, blur D's input]) at iteration `step` of `stage`."""
        phases = self.cfg.phases(step)
        return phases if len(self._stages) == 1 else (*phases, stage.index == 0)

    def export(self, host_state) -> dict:
        from stylegan_jax.model_store import Network

        G = self.nets.G.clone(axis_name=None)  # outside the training program: no device axis
        return {
            "G": Network(G, {"params": host_state.G, "buffers": host_state.G_buffers}),
            "G_ema": Network(G, {"params": host_state.G_ema,
                                 "buffers": host_state.G_ema_buffers}),
            "D": Network(self.nets.D, {"params": host_state.D}),
        }


_PROGRAMS: dict = {}


def compiled_iteration(backend: Backend, nets, cfg: step_lib.StepConfig, flags):
    """The mapped iteration for one program key (StepConfig.program_key), built once per
    process."""
    key = (backend.kind, tuple(backend.devices), nets, cfg, flags)
    if key not in _PROGRAMS:
        fn = functools.partial(step_lib.iteration_from_key, nets=nets, cfg=cfg,
                               do_greg=flags[0], do_dreg=flags[1],
                               blur=len(flags) > 2 and flags[2])
        _PROGRAMS[key] = backend.compile(
            fn, ("replicated", "sharded", "sharded", "replicated"),
            ("replicated", "replicated"))
    return _PROGRAMS[key]
