"""The progressive-growing families: ProGAN (`G_paper`/`D_paper`) and StyleGAN v1
(`G_style`/`D_basic`), trained with NVIDIA's TF training loop (stylegan `training_loop.py`,
ProGAN `train.py`).

`ProgressiveTrainer` turns the schedule (schedule.py) into the loop's stages
(one per resolution), compiles the iteration (step.py) once per stage, and
exports G EMA at the lod of the latest iteration, so the snapshot grids and metrics
see the network as it has grown.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

from stylegan_jax.models import registry, stylegan
from stylegan_jax.models.registry import Networks
from stylegan_jax.nn.layers import NOISE_MODES
from stylegan_jax.shapes import ImageShape, data_shape
from stylegan_jax.store.runs import networks_from_state
from stylegan_jax.train.backends import AXIS, Backend
from stylegan_jax.train.progressive import step as step_lib
from stylegan_jax.train.progressive.losses import LOSSES
from stylegan_jax.train.progressive.schedule import Schedule
from stylegan_jax.train.stage import Stage


def step_config(config: ml_collections.ConfigDict) -> step_lib.StepConfig:
    t = config.train
    stylegan_only = {}
    if config.family == "stylegan":
        stylegan_only = dict(style_mixing_prob=float(t.style_mixing_prob),
                             noise_mode=t.noise_mode)
    return step_lib.StepConfig(
        loss=t.loss, wgan_lambda=float(t.wgan_lambda), wgan_epsilon=float(t.wgan_epsilon),
        wgan_target=float(t.wgan_target), r1_gamma=float(t.r1_gamma),
        betas=tuple(float(b) for b in t.betas), eps=float(t.eps),
        ema_kimg=float(t.ema_kimg), ema_beta=float(t.ema_beta),
        reset_opt_for_new_lod=bool(t.reset_opt_for_new_lod), **stylegan_only)


def build_networks(config: ml_collections.ConfigDict, c_dim: int) -> Networks:
    """G and D of the config's family (models.registry) inside the training program."""
    return registry.progressive_networks(config, c_dim, axis_name=AXIS)


def init_state(nets: Networks, seed: int) -> step_lib.ProgressiveState:
    """Fresh networks (official initialisation), G EMA = G, zero Adam moments, lod -1."""
    G, D = nets
    k_g, k_d, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
    z, c = jnp.zeros((1, G.z_dim)), jnp.zeros((1, G.c_dim))
    g_vars = G.init({"params": k_g, "noise": k_g}, z, c)
    n = max(D.mbstd_group_size, 1)
    size = registry.image_shape(D)  # W x H where the data is
    images = jnp.zeros((n, size.height, size.width, D.img_channels))
    d_vars = D.init(k_d, images, jnp.zeros((n, D.c_dim)))
    g_params, g_buffers = g_vars["params"], dict(g_vars.get("buffers", {}))
    return step_lib.ProgressiveState(
        G=g_params, G_buffers=g_buffers, D=d_vars["params"], G_ema=g_params,
        G_ema_buffers=g_buffers, G_opt=step_lib.adam_init(g_params),
        D_opt=step_lib.adam_init(d_vars["params"]), lod=jnp.float32(-1.0),
        step=jnp.zeros((), jnp.int32), nimg=jnp.zeros((), jnp.int32), rng=k_run)


class ProgressiveTrainer:
    """ProGAN / StyleGAN v1: one stage per resolution, the fade computed on the device."""

    def __init__(self, config: ml_collections.ConfigDict, c_dim: int):
        self.config, self.c_dim = config, c_dim
        self.family = config.family
        self.schedule = Schedule.from_config(config)
        self.cfg = step_config(config)
        self.nets = build_networks(config, c_dim)
        self.z_dim = self.nets.G.z_dim
        self.plans = {p.index: p for p in self.schedule.stages()}
        starts = [p.start_nimg for p in self.plans.values()]
        self._stages = [
            Stage(p.index, p.resolution, p.batch_size, end)
            for p, end in zip(self.plans.values(), [*starts[1:], None], strict=True)]

    @staticmethod
    def validate(config: ml_collections.ConfigDict, num_devices: int, fail) -> None:
        _validate(config, num_devices, fail)

    def init_state(self, seed: int) -> step_lib.ProgressiveState:
        return init_state(self.nets, seed)

    def stage_at(self, nimg: int) -> Stage:
        current = self._stages[0]
        for stage in self._stages:
            if self.plans[stage.index].start_nimg <= nimg:
                current = stage
        return current

    def programs(self, backend: Backend, stage: Stage) -> dict:
        keys = {self.program_key(stage, step) for step in range(self.schedule.d_repeats)}
        return {do_g: compiled_iteration(backend, self.nets, self.cfg, self.schedule,
                                         self.plans[stage.index], do_g)
                for do_g in sorted(keys)}

    def program_key(self, stage: Stage, step: int):
        return step % self.schedule.d_repeats == self.schedule.d_repeats - 1  # a G step?

    def export(self, host_state) -> dict:
        """G, G EMA (at the lod of the latest iteration, as the official Gs keeps G's lod)
        and D, for the grids, generate, metrics and convert."""
        return networks_from_state(self.config, self.c_dim, vars(host_state))


_PROGRAMS: dict = {}


def compiled_iteration(backend: Backend, nets, cfg, schedule, plan, do_g: bool):
    """The mapped iteration of one stage (and G-step flag), built once per process."""
    key = (backend.kind, tuple(backend.devices), nets, cfg, schedule, plan, do_g)
    if key not in _PROGRAMS:
        fn = functools.partial(step_lib.iteration, nets=nets, cfg=cfg, schedule=schedule,
                               plan=plan, do_g=do_g)
        _PROGRAMS[key] = backend.compile(
            fn, ("replicated", "sharded", "sharded", "replicated"),
            ("replicated", "replicated"))
    return _PROGRAMS[key]


# -- validation --------------------------------------------------------------------------
def _pairs_ok(value) -> bool:
    try:
        return all(len(p) == 2 for p in value)
    except TypeError:
        return False


def _validate(config, num_devices: int, fail) -> None:
    m, t, res = config.model, config.train, config.data.resolution
    family = config.family
    for field in ("fmap_base", "fmap_max", "latent_size"):
        if not isinstance(m[field], int) or m[field] < 1:
            fail(f"model.{field}", "expected a positive integer")
    if not m.fmap_decay >= 0:
        fail("model.fmap_decay", "expected a number >= 0")
    if not isinstance(m.mbstd_group_size, int) or m.mbstd_group_size < 0:
        fail("model.mbstd_group_size", "expected an integer >= 0 (0 or 1 = no minibatch stddev)")
    fused = registry.parse_fused_scale(m.fused_scale)
    allowed = (True, False) if family == "progan" else stylegan.FUSED_SCALES
    if not any(fused is a or (isinstance(a, str) and fused == a) for a in allowed):
        fail("model.fused_scale", f"expected one of {allowed}")
    if family == "stylegan":
        for field in ("dlatent_size", "mapping_fmaps"):
            if not isinstance(m[field], int) or m[field] < 1:
                fail(f"model.{field}", "expected a positive integer")
        if not isinstance(m.mapping_layers, int) or m.mapping_layers < 1:
            fail("model.mapping_layers", "expected an integer >= 1")
        for field in ("nonlinearity", "mapping_nonlinearity"):
            if m[field] not in stylegan.NONLINEARITIES:
                fail(f"model.{field}", f"expected one of {stylegan.NONLINEARITIES}")
        if m.blur_filter and sum(m.blur_filter) == 0:
            fail("model.blur_filter", "expected taps with a non-zero sum, or () for none")
        if not 0 <= m.dlatent_avg_beta < 1:
            fail("model.dlatent_avg_beta", "expected a decay in [0, 1)")
        if t.noise_mode not in NOISE_MODES:
            fail("train.noise_mode", f"expected one of {NOISE_MODES}")
        if not 0 <= t.style_mixing_prob <= 1:
            fail("train.style_mixing_prob", "expected a probability in [0, 1]")

    # Schedule.
    init = t.lod_initial_resolution
    if not isinstance(init, int) or init < 4 or init & (init - 1) or init > res:
        fail("train.lod_initial_resolution",
             f"expected a power of two in [4, data.resolution={res}]")
    for field in ("lod_training_kimg", "lod_transition_kimg", "lrate_rampup_kimg"):
        if not 0 <= t[field] < float("inf"):
            fail(f"train.{field}", "expected a finite number of kimg >= 0")
    if init < res and t.lod_training_kimg + t.lod_transition_kimg <= 0:
        fail("train.lod_training_kimg",
             "with lod_transition_kimg = 0 the resolution would never grow; expected > 0")
    for field in ("minibatch_repeats", "d_repeats"):
        if not isinstance(t[field], int) or t[field] < 1:
            fail(f"train.{field}", "expected an integer >= 1")
    for field in ("minibatch_dict", "g_lrate_dict", "d_lrate_dict"):
        if not _pairs_ok(t[field]):
            fail(f"train.{field}", "expected ((resolution, value), ...) pairs")
        for r, v in t[field]:
            if not isinstance(r, int) or r < 4 or r & (r - 1):
                fail(f"train.{field}", f"resolution {r!r} is not a power of two >= 4")
            if not v > 0:
                fail(f"train.{field}", f"value {v!r} at resolution {r} is not positive")
    for field in ("g_lr", "d_lr"):
        if not t[field] > 0:
            fail(f"train.{field}", "expected a positive learning rate")
    schedule = Schedule.from_config(config)
    aspect = data_shape(config.data).aspect  # the per-resolution dicts name the shorter side
    for r in schedule.resolutions():
        at = ImageShape.of(r, aspect)  # W x H of the reals at this level
        mb = schedule.minibatch(r)
        field = "train.minibatch_dict" if r in dict(schedule.minibatch_dict) else \
            "train.batch_size"
        if not isinstance(mb, int) or mb < 1 or mb % num_devices:
            fail(field, f"the minibatch {mb} at {at} must be a positive multiple of the "
                        f"{num_devices} devices")
        per_device, group = mb // num_devices, m.mbstd_group_size
        if group > 1 and per_device % min(group, per_device):
            fail("model.mbstd_group_size", f"must divide the per-device minibatch "
                                           f"{per_device} at {at} (or exceed it)")

    # Optimizer, loss, EMA.
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        fail("train.betas", "expected (beta1, beta2) in [0, 1)")
    if not t.eps > 0:
        fail("train.eps", "expected a positive epsilon")
    if t.loss not in LOSSES:
        fail("train.loss", f"expected one of {LOSSES}")
    for field in ("wgan_lambda", "wgan_epsilon", "r1_gamma"):
        if not 0 <= t[field] < float("inf"):
            fail(f"train.{field}", "expected a finite number >= 0")
    if not t.wgan_target > 0:
        fail("train.wgan_target", "expected a positive gradient-norm target")
    if not 0 <= t.ema_beta < 1:
        fail("train.ema_beta", "expected a decay per step in [0, 1) (0 = use ema_kimg)")
    if not 0 <= t.ema_kimg < float("inf"):
        fail("train.ema_kimg", "expected a half-life in kimg >= 0 (0 = use ema_beta)")
    if t.ema_beta > 0 and t.ema_kimg > 0:
        fail("train.ema_kimg", f"both ema_beta={t.ema_beta} and ema_kimg are set; "
                               "set the one you mean and the other to 0")
    if not math.isfinite(t.total_kimg):
        fail("train.total_kimg", "expected a finite number")
    if t.get("resume", "") or t.get("freeze_d", 0):
        fail("train.resume" if t.get("resume", "") else "train.freeze_d",
             f"transfer learning is for StyleGAN2/3 runs, not family {config.family!r}")
