"""The StyleGAN2 objective, one pure function per training phase (official StyleGAN2Loss).

Every random draw is an explicit input (`PhaseDraws`), so one iteration can be replayed
on recorded draws. The same functions serve StyleGAN3 (NVIDIA's stylegan3 repository runs
this loss with its alias-free generator; there the D input may be blurred first, see
`blur_images`, which the caller folds into `augment`). Each function returns the phase
loss already multiplied by its `gain` (the lazy-regularisation interval) plus auxiliary
outputs; the caller differentiates it. Every discriminator evaluation first passes its
images through `augment` (the ADA pipe with that evaluation's draws, or None: no
augmentation), as the official `run_D` does, so generator gradients and R1 flow through
the augmentation. Inside a per-device program, `axis_name` averages batch statistics
(w_avg, the path-length mean) over devices so that N devices compute what one device
would compute on the global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from stylegan_jax.models.registry import Networks


class PhaseDraws(NamedTuple):
    """The random inputs of one phase on one device (local batch b)."""

    z: jax.Array  # [b, z_dim]
    c: jax.Array  # [b, c_dim]
    mix_z: jax.Array | None  # [b, z_dim] latents of the second style; None: no mixing
    mix_cutoff: jax.Array  # int32 scalar: ws[cutoff:] come from mix_z; num_ws = no mixing
    noise_key: jax.Array  # PRNG key of the synthesis noise (noise_mode 'random')


Augment = Callable[[jax.Array], jax.Array] | None  # NHWC images -> what D sees


def run_discriminator(nets: Networks, d_params, img, c, augment: Augment = None):
    """D logits [b, 1] of the (augmented) images: the official run_D."""
    if augment is not None:
        img = augment(img)
    return nets.D.apply({"params": d_params}, img, c)


def _pmean(x, axis_name):
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def run_generator(nets: Networks, g_params, g_buffers, d: PhaseDraws, noise_mode: str,
                  update_emas: bool = True):
    """Mapping, style mixing, synthesis -> (img, ws, new buffers, synth_fn).

    `update_emas` moves the generator's running statistics toward this batch: w_avg and,
    for StyleGAN3, every synthesis layer's magnitude_ema (updated before it is used, as
    officially). `synth_fn` (for path length) updates nothing.
    """
    G = nets.G
    variables = {"params": g_params, "buffers": g_buffers}
    ws, updates = G.apply(variables, d.z, d.c, update_w_avg=update_emas,
                          method=G.mapping_fn, mutable=["buffers"])
    buffers = {**g_buffers, **updates["buffers"]}
    if d.mix_z is not None:
        mixed = G.apply(variables, d.mix_z, d.c, method=G.mapping_fn)
        layer = jnp.arange(ws.shape[1])[None, :, None]
        ws = jnp.where(layer >= d.mix_cutoff, mixed, ws)

    def synthesis(ws, buffers, update):
        return G.apply({"params": g_params, "buffers": buffers}, ws, noise_mode, update,
                       method=G.synthesis_fn, rngs={"noise": d.noise_key},
                       mutable=["buffers"] if update else False)

    def synth_fn(ws):
        return synthesis(ws, buffers, False)

    if update_emas:
        img, updates = synthesis(ws, buffers, True)
        buffers = {**buffers, **updates["buffers"]}
    else:
        img = synth_fn(ws)
    return img, ws, buffers, synth_fn


def blur_images(img: jax.Array, sigma, radius: int) -> jax.Array:
    """The official D input blur of stylegan3-r: a separable kernel 2^-(x/sigma)^2 over
    |x| <= floor(3 sigma), normalised, zero-padded to the same size; sigma <= 1/3: identity.

    sigma may be traced (it fades with the images shown), so the kernel has the static
    `radius` (floor(3 * the initial sigma)) with zero taps beyond floor(3 sigma). The taps
    carry no gradient: R1 differentiates through the blur with respect to the images only.
    """
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    inside = jnp.abs(x) <= jnp.floor(sigma * 3)
    taps = jnp.where(inside, jnp.exp2(-jnp.square(x / jnp.maximum(sigma, 1e-8))), 0.0)
    taps = jax.lax.stop_gradient(taps / jnp.sum(taps)).astype(img.dtype)
    channels = img.shape[-1]

    def one_axis(img, shape):
        kernel = jnp.tile(taps.reshape(*shape, 1, 1), (1, 1, 1, channels))
        return jax.lax.conv_general_dilated(
            img, kernel, (1, 1), [(shape[0] // 2,) * 2, (shape[1] // 2,) * 2],
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)

    return one_axis(one_axis(img, (2 * radius + 1, 1)), (1, 2 * radius + 1))


def g_main_loss(g_params, nets: Networks, g_buffers, d_params, d: PhaseDraws, *,
                gain: float, noise_mode: str, augment: Augment = None,
                update_emas: bool = True):
    """Gmain: softplus(-D(G(z))), the non-saturating generator loss."""
    img, _, buffers, _ = run_generator(nets, g_params, g_buffers, d, noise_mode, update_emas)
    logits = run_discriminator(nets, d_params, img, d.c, augment)
    loss = jnp.mean(jax.nn.softplus(-logits))
    return loss * gain, (buffers, {"G/loss": loss, "scores/fake": jnp.mean(logits)})


def g_reg_loss(g_params, nets: Networks, g_buffers, d: PhaseDraws, pl_noise, pl_mean, *,
               gain: float, noise_mode: str, pl_weight: float, pl_decay: float,
               axis_name: str | None, update_emas: bool = True):
    """Greg: path-length regularisation on the first len(pl_noise) samples of the phase.

    pl_noise is the already scaled noise (randn / sqrt(H * W)). As officially, the
    penalty is taken against the *updated* running mean, gradient included.
    """
    b = pl_noise.shape[0]
    draws = d._replace(z=d.z[:b], c=d.c[:b], mix_z=None if d.mix_z is None else d.mix_z[:b])
    _, ws, buffers, synth_fn = run_generator(nets, g_params, g_buffers, draws, noise_mode,
                                             update_emas)
    _, vjp = jax.vjp(synth_fn, ws)
    (pl_grads,) = vjp(pl_noise.astype(jnp.float32))
    pl_lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(pl_grads), axis=2), axis=1))
    new_mean = pl_mean + pl_decay * (_pmean(jnp.mean(pl_lengths), axis_name) - pl_mean)
    penalty = jnp.square(pl_lengths - new_mean)
    loss = jnp.mean(penalty * pl_weight)
    stats = {"G/reg": loss, "pl_penalty": jnp.mean(penalty)}
    return loss * gain, (buffers, jax.lax.stop_gradient(new_mean), stats)


def d_main_loss(d_params, nets: Networks, gen_img, gen_c, real, real_c, *, gain: float,
                augment_fake: Augment = None, augment_real: Augment = None):
    """Dmain: softplus(D(fake)) + softplus(-D(real)); `gen_img` comes without gradient.

    `signs/real` (mean sign of the real logits) is the ADA overfitting statistic.
    """
    fake_logits = run_discriminator(nets, d_params, gen_img, gen_c, augment_fake)
    real_logits = run_discriminator(nets, d_params, real, real_c, augment_real)
    loss_gen = jnp.mean(jax.nn.softplus(fake_logits))
    loss_real = jnp.mean(jax.nn.softplus(-real_logits))
    loss = loss_gen + loss_real
    stats = {"D/loss": loss, "scores/fake": jnp.mean(fake_logits),
             "scores/real": jnp.mean(real_logits), "signs/real": jnp.mean(jnp.sign(real_logits))}
    return loss * gain, stats


def d_reg_loss(d_params, nets: Networks, real, real_c, *, gain: float, r1_gamma: float,
               augment: Augment = None):
    """Dreg: R1, the squared gradient norm of D on reals, times gamma / 2.

    The gradient is taken with respect to the reals *before* augmentation (official), and
    the real logits' mean sign is reported as in Dmain (ADA counts both).
    """
    def d_sum(x):
        logits = run_discriminator(nets, d_params, x, real_c, augment)
        return jnp.sum(logits), logits

    r1_grads, logits = jax.grad(d_sum, has_aux=True)(real)
    r1_penalty = jnp.sum(jnp.square(r1_grads), axis=(1, 2, 3))
    loss = jnp.mean(r1_penalty * (r1_gamma / 2))
    return loss * gain, {"D/reg": loss, "r1_penalty": jnp.mean(r1_penalty),
                         "signs/real": jax.lax.stop_gradient(jnp.mean(jnp.sign(logits)))}

