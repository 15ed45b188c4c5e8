"""The StyleGAN2-ADA / StyleGAN3 trainer: one stage (two for StyleGAN3-r's D input blur),
lazy regularisation, G EMA; the iteration itself is step.py."""

from __future__ import annotations

import functools

import ml_collections

from stylegan_jax.shapes import data_shape
from stylegan_jax.store.runs import networks_from_state
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stage import Stage
from stylegan_jax.train.stylegan2 import step as step_lib
from stylegan_jax.train.stylegan2 import transfer
from stylegan_jax.train.stylegan2.config import step_config, validate


class StyleGAN2Trainer:
    """StyleGAN2(-ADA) and StyleGAN3: one stage, lazy regularisation, G EMA (step.py;
    StyleGAN3 trains in the same loop with its generator and three step settings)."""

    def __init__(self, config: ml_collections.ConfigDict, c_dim: int):
        self.config, self.c_dim = config, c_dim
        self.cfg = step_config(config)
        self.nets = step_lib.build_networks(config.model, data_shape(config.data),
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
        validate(config, num_devices, fail)

    def init_state(self, seed: int):
        return step_lib.init_state(self.nets, self.cfg, seed)

    def earlier_layouts(self, template) -> list:
        """(template, upgrade) of state layouts older checkpoints of this config hold."""
        if self.cfg.r1_skips_out_bias:  # StyleGAN3 runs began with flat moments
            return []
        return [(step_lib.per_tensor_moments_layout(template), step_lib.flat_moments)]

    def start_from(self, host_state, source: str, log=print):
        """A new run's state with the networks (and ADA p) of `source` (train.resume)."""
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
        return networks_from_state(self.config, self.c_dim, vars(host_state))


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
