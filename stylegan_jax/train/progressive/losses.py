"""The objectives of ProGAN and StyleGAN v1 (NVIDIA's TF `training/loss.py`), per sample.

Each function takes scores (or a `score_fn(images) -> [N, 1]` closing over D's params,
labels and lod, where an input gradient is needed) and returns per-sample losses [N, 1]
plus the terms worth reporting; the caller averages over the batch (and devices), as
the official `reduce_mean` + multi-GPU gradient average does. Gradients with respect to
images are taken at the networks' input, i.e. at full resolution after the lod fade.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LOSSES = ("wgan_gp", "logistic_r1")

ScoreFn = Callable[[jax.Array], jax.Array]


def _input_gradient(score_fn: ScoreFn, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(scores [N, 1], d sum(scores) / d images [N, H, W, C])."""
    scores, vjp = jax.vjp(score_fn, images)
    (grads,) = vjp(jnp.ones_like(scores))
    return scores, grads


def g_wgan(fake_scores: jax.Array) -> jax.Array:
    """Official G_wgan: -D(G(z))."""
    return -fake_scores


def d_wgan_gp(score_fn: ScoreFn, reals: jax.Array, fakes: jax.Array, mix: jax.Array, *,
              wgan_lambda: float = 10.0, wgan_epsilon: float = 0.001,
              wgan_target: float = 1.0) -> tuple[jax.Array, dict]:
    """Official D_wgan_gp: D(fake) - D(real) + gradient penalty + epsilon drift.

    mix: [N, 1, 1, 1] uniform factors; the penalty is taken on lerp(reals, fakes, mix):
    (|grad D(mixed)| - target)**2 * lambda / target**2; the drift is epsilon * D(real)**2.
    """
    real_scores, fake_scores = score_fn(reals), score_fn(fakes)
    mixed = reals + (fakes - reals) * mix
    _, grads = _input_gradient(score_fn, mixed)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))[:, None]
    penalty = jnp.square(norms - wgan_target) * (wgan_lambda / wgan_target**2)
    drift = jnp.square(real_scores) * wgan_epsilon
    main = fake_scores - real_scores
    return main + penalty + drift, {"main": main, "reg": penalty, "drift": drift,
                                    "real": real_scores, "fake": fake_scores, "norms": norms}


def g_logistic_nonsaturating(fake_scores: jax.Array) -> jax.Array:
    """Official G_logistic_nonsaturating: softplus(-D(G(z))) = -log sigmoid(D(G(z)))."""
    return jax.nn.softplus(-fake_scores)


def d_logistic_r1(score_fn: ScoreFn, reals: jax.Array, fakes: jax.Array, *,
                  r1_gamma: float = 10.0) -> tuple[jax.Array, dict]:
    """Official D_logistic_simplegp (r2_gamma = 0): softplus(D(fake)) + softplus(-D(real))
    + r1_gamma / 2 * |grad D(real)|**2."""
    fake_scores = score_fn(fakes)
    if r1_gamma != 0:
        real_scores, grads = _input_gradient(score_fn, reals)
        penalty = jnp.sum(jnp.square(grads), axis=(1, 2, 3))[:, None] * (r1_gamma * 0.5)
    else:
        real_scores = score_fn(reals)
        penalty = jnp.zeros_like(real_scores)
    main = jax.nn.softplus(fake_scores) + jax.nn.softplus(-real_scores)
    return main + penalty, {"main": main, "reg": penalty, "real": real_scores,
                            "fake": fake_scores}


def ema_beta(batch_size: int, ema_kimg: float, ema_beta_per_step: float) -> float:
    """G EMA decay per D step: ProGAN's fixed G_smoothing (e.g. 0.999) when given, else
    StyleGAN's half-life 0.5 ** (global minibatch / (G_smoothing_kimg * 1000)); 0 = none."""
    if ema_beta_per_step > 0:
        return float(ema_beta_per_step)
    if ema_kimg > 0:
        return float(0.5 ** (batch_size / (ema_kimg * 1000.0)))
    return 0.0
