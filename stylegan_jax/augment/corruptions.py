"""Image-space corruptions: additive Gaussian noise and cutout.

On RGBA images noise goes to the colour channels only (the official "additive RGB noise";
noise on alpha would turn an opaque or empty pixel partly transparent, a change of shape,
not of pixel values), and draws what the RGB pipe draws. Cutout erases alpha too: it hides
a region from the discriminator, and an untouched alpha would still show the silhouette
there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stylegan_jax.augment.config import COLOR_CHANNELS, AugmentConfig
from stylegan_jax.augment.draws import DrawSource


def add_noise(images: jax.Array, cfg: AugmentConfig, draws: DrawSource,
              p: jax.Array) -> jax.Array:
    """Adds N(0, sigma^2) per pixel and colour channel, sigma = |N(0, noise_std^2)| per image.

    The per-pixel noise is drawn in the official NCHW shape (colour channels) for every
    image, applied or not, so a recording replays and a key stays in step with the
    official order.
    """
    b, h, w, c = images.shape
    cc = COLOR_CHANNELS.get(c, c)
    sigma = jnp.abs(draws.randn([b, 1, 1, 1])) * cfg.noise_std
    sigma = jnp.where(draws.rand([b, 1, 1, 1]) < cfg.noise * p, sigma, 0.0)
    noise = jnp.transpose(draws.randn([b, cc, h, w]), (0, 2, 3, 1))
    noisy = images[..., :cc] + noise * sigma.astype(images.dtype)
    return noisy if cc == c else jnp.concatenate([noisy, images[..., cc:]], axis=-1)


def cutout(images: jax.Array, cfg: AugmentConfig, draws: DrawSource,
           p: jax.Array) -> jax.Array:
    """Zeroes a square of side cutout_size (relative) at a uniform random centre."""
    b, h, w, _ = images.shape
    size = jnp.where(draws.rand([b, 1, 1, 1, 1]) < cfg.cutout * p, cfg.cutout_size, 0.0)
    centre = draws.rand([b, 2, 1, 1, 1])
    size, centre = size[:, 0, 0, 0, 0], centre[:, :, 0, 0, 0]
    xs = (jnp.arange(w) + 0.5) / w
    ys = (jnp.arange(h) + 0.5) / h
    outside_x = jnp.abs(xs[None, :] - centre[:, 0, None]) >= size[:, None] / 2  # [b, w]
    outside_y = jnp.abs(ys[None, :] - centre[:, 1, None]) >= size[:, None] / 2  # [b, h]
    keep = outside_x[:, None, :] | outside_y[:, :, None]
    return images * keep[..., None].astype(images.dtype)
