"""One progressive-growing training iteration, written per device (collectives over 'data').

An iteration is one official minibatch: a D step on this minibatch of reals, the G EMA
update (the official `Gs_update_op` runs with `D_train_op`, so it averages the G of the
previous G step), then, on the last of every `d_repeats` minibatches, a G step. The
level of detail comes from the state's image count (`device_lod`), so every lod of a
stage shares one compiled program. Adam is TensorFlow's (`tf.train.AdamOptimizer`, the
epsilon outside the bias correction); as officially, gradients are averaged over devices,
an update whose gradients are not all finite is skipped, and both optimizers restart
from zero moments whenever floor(lod) or ceil(lod) changes (`reset_opt_for_new_lod`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from stylegan_jax.models.registry import Networks, family_of
from stylegan_jax.nn import ops
from stylegan_jax.train.backends import AXIS
from stylegan_jax.train.progressive import losses
from stylegan_jax.train.progressive import nets as stage_nets
from stylegan_jax.train.progressive.schedule import (
    Schedule,
    StagePlan,
    device_lod,
    device_rampup,
)


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static hyperparameters of the iteration (hashable: part of the compiled program)."""

    loss: str = "wgan_gp"  # wgan_gp | logistic_r1
    wgan_lambda: float = 10.0
    wgan_epsilon: float = 0.001
    wgan_target: float = 1.0
    r1_gamma: float = 10.0
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    ema_kimg: float = 0.0  # StyleGAN: G_smoothing_kimg half-life
    ema_beta: float = 0.999  # ProGAN: G_smoothing per D step (used when > 0)
    reset_opt_for_new_lod: bool = True
    style_mixing_prob: float = 0.9  # StyleGAN only
    noise_mode: str = "random"  # StyleGAN only


class AdamState(NamedTuple):
    count: jax.Array  # int32 updates since the last reset (TF's beta powers)
    m: dict
    v: dict


@flax.struct.dataclass
class ProgressiveState:
    G: dict
    G_buffers: dict  # StyleGAN: dlatent_avg and the stored noise; ProGAN: empty
    D: dict
    G_ema: dict
    G_ema_buffers: dict
    G_opt: AdamState
    D_opt: AdamState
    lod: jax.Array  # float32: lod of the latest iteration (official prev_lod; -1 at start)
    step: jax.Array  # int32 iterations (minibatches) done
    nimg: jax.Array  # int32 real images shown
    rng: jax.Array  # iteration i on device d draws from fold_in(fold_in(rng, i), d)


def adam_init(params) -> AdamState:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return AdamState(jnp.zeros((), jnp.int32), zeros, zeros)


def tf_adam(params, grads, state: AdamState, lr, betas, eps):
    """tf.train.AdamOptimizer: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""
    b1, b2 = betas
    t = state.count + 1
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.m, grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.v, grads)
    tf = t.astype(jnp.float32)
    lr_t = lr * jnp.sqrt(1 - b2**tf) / (1 - b1**tf)
    params = jax.tree_util.tree_map(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + eps),
                                    params, m, v)
    return params, AdamState(t, m, v)


def _apply_if_finite(params, grads, opt: AdamState, lr, cfg: StepConfig):
    """Device-averaged gradients -> Adam step, skipped (as officially) unless all finite."""
    grads = jax.lax.pmean(grads, AXIS)
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    new_params, new_opt = tf_adam(params, grads, opt, lr, cfg.betas, cfg.eps)
    keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    return (jax.tree_util.tree_map(keep, new_params, params),
            jax.tree_util.tree_map(keep, new_opt, opt))


def fade_reals(real_u8: jax.Array, lod: jax.Array, level: int, resolution: int) -> jax.Array:
    """Official process_reals (FadeLOD + UpscaleLOD): uint8 [N, r*ah, r*aw, C] -> [-1, 1]
    with shorter side `resolution`, crossfaded toward the 2x box-averaged image by
    lod - level (both axes alike, so a W x H image keeps its aspect)."""
    x = real_u8.astype(jnp.float32) / 127.5 - 1.0
    t = jnp.clip(lod - level, 0.0, 1.0)
    x = ops.lerp(x, ops.upscale2d_nearest(ops.downscale2d_box(x, 2), 2), t)
    return ops.upscale2d_nearest(x, resolution // min(x.shape[1], x.shape[2]))


def fake_images(nets: Networks, cfg: StepConfig, params, buffers, z, c, lod, level: int, key):
    """G in training mode within a stage -> (images at full resolution, updated buffers)."""
    if family_of(nets.G).w_space:  # StyleGAN v1: buffers, noise, style mixing
        return stage_nets.fake_images(
            nets.G, {"params": params, "buffers": buffers}, z, c, lod, level,
            noise_mode=cfg.noise_mode, style_mixing_prob=cfg.style_mixing_prob,
            update_dlatent_avg=True, noise_key=key)
    images, _ = stage_nets.fake_images(nets.G, {"params": params}, z, c, lod, level)
    return images, buffers


def iteration(state: ProgressiveState, real_u8, real_c, label_table, *, nets: Networks,
              cfg: StepConfig, schedule: Schedule, plan: StagePlan, do_g: bool):
    """One official minibatch on this device's share -> (state, stats)."""
    G, D = nets
    key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))
    k_dz, k_mix, k_dnoise, k_gz, k_gc, k_gnoise = jax.random.split(key, 6)
    b = real_u8.shape[0]
    lod = device_lod(schedule, plan, state.nimg)
    ramp = device_rampup(schedule, plan, state.nimg)
    g_lr, d_lr = plan.lrates[0] * ramp, plan.lrates[1] * ramp

    G_opt, D_opt = state.G_opt, state.D_opt
    if cfg.reset_opt_for_new_lod:
        new_lod = ((jnp.floor(lod) != jnp.floor(state.lod))
                   | (jnp.ceil(lod) != jnp.ceil(state.lod)))
        reset = lambda x: jnp.where(new_lod, jnp.zeros_like(x), x)  # noqa: E731
        G_opt, D_opt = jax.tree_util.tree_map(reset, (G_opt, D_opt))

    reals = fade_reals(real_u8, lod, plan.level, schedule.resolution)

    # D step: fakes from the current G with the reals' labels.
    z = jax.random.normal(k_dz, (b, G.z_dim))
    fakes, buffers = fake_images(nets, cfg, state.G, state.G_buffers, z, real_c, lod, plan.level,
                              k_dnoise)
    fakes = jax.lax.stop_gradient(fakes)
    mix = jax.random.uniform(k_mix, (b, 1, 1, 1))

    def d_objective(d_params):
        def score(images):
            return stage_nets.score(D, {"params": d_params}, images, real_c, lod, plan.level)

        if cfg.loss == "wgan_gp":
            per_sample, terms = losses.d_wgan_gp(
                score, reals, fakes, mix, wgan_lambda=cfg.wgan_lambda,
                wgan_epsilon=cfg.wgan_epsilon, wgan_target=cfg.wgan_target)
        else:
            per_sample, terms = losses.d_logistic_r1(score, reals, fakes, r1_gamma=cfg.r1_gamma)
        return jnp.mean(per_sample), terms

    (_, terms), grads = jax.value_and_grad(d_objective, has_aux=True)(state.D)
    D_params, D_opt = _apply_if_finite(state.D, grads, D_opt, d_lr, cfg)
    stats = {"D/loss": jnp.mean(terms["main"]), "D/reg": jnp.mean(terms["reg"]),
             "D/scores/real": jnp.mean(terms["real"]), "D/scores/fake": jnp.mean(terms["fake"]),
             "lod": lod}
    if "drift" in terms:
        stats["D/drift"] = jnp.mean(terms["drift"])

    # G EMA (official Gs_update_op, run with the D step): trainables averaged, the
    # non-trainable buffers copied.
    beta = losses.ema_beta(plan.batch_size, cfg.ema_kimg, cfg.ema_beta)
    G_ema = jax.tree_util.tree_map(lambda e, p: ops.lerp(p, e, beta), state.G_ema, state.G)
    G_ema_buffers = buffers

    G_params = state.G
    if do_g:
        z = jax.random.normal(k_gz, (b, G.z_dim))
        c = label_table[jax.random.randint(k_gc, (b,), 0, label_table.shape[0])]

        def g_objective(g_params):
            images, new_buffers = fake_images(nets, cfg, g_params, buffers, z, c, lod, plan.level,
                                           k_gnoise)
            scores = stage_nets.score(D, {"params": D_params}, images, c, lod, plan.level)
            per_sample = (losses.g_wgan(scores) if cfg.loss == "wgan_gp"
                          else losses.g_logistic_nonsaturating(scores))
            return jnp.mean(per_sample), new_buffers

        (g_loss, buffers), grads = jax.value_and_grad(g_objective, has_aux=True)(G_params)
        G_params, G_opt = _apply_if_finite(G_params, grads, G_opt, g_lr, cfg)
        stats["G/loss"] = g_loss

    new_state = state.replace(
        G=G_params, G_buffers=buffers, D=D_params, G_ema=G_ema, G_ema_buffers=G_ema_buffers,
        G_opt=G_opt, D_opt=D_opt, lod=lod, step=state.step + 1,
        nimg=state.nimg + plan.batch_size)
    return new_state, jax.lax.pmean(stats, AXIS)
