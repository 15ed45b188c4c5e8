"""Color augmentations: one homogeneous 4x4 color matrix per image, `C @ rgb1 ==> rgb1'`.

Brightness (add), contrast (scale), luma flip (Householder reflection about the luma
axis), hue rotation (about the luma axis) and saturation (scale away from it), drawn in
the official order. One-channel images follow the official rule: the matrix's three
color rows are averaged, hue and saturation are skipped (and draw nothing). RGBA images
are transformed as RGB (the same draws) and keep their alpha channel unchanged: alpha is
coverage, not colour, and a brightness or hue change must not make a sprite transparent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.augment.config import COLOR_CHANNELS, AugmentConfig
from stylegan_jax.augment.draws import DrawSource

_LUMA = np.array([1.0, 1.0, 1.0, 0.0]) / np.sqrt(3)  # luma axis, homogeneous
_LUMA_OUTER = np.outer(_LUMA, _LUMA)


def _rotation_about_luma(theta: jax.Array) -> jax.Array:
    """[b, 4, 4] rotations by theta about the luma axis (Rodrigues' formula)."""
    v = jnp.asarray(_LUMA[:3], jnp.float32)
    c, s = jnp.cos(theta)[:, None, None], jnp.sin(theta)[:, None, None]
    cross = jnp.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    r = c * jnp.eye(3) + s * cross + (1 - c) * jnp.outer(v, v)
    return jnp.pad(r, ((0, 0), (0, 1), (0, 1))).at[:, 3, 3].set(1.0)


def draw_color(cfg: AugmentConfig, draws: DrawSource, p: jax.Array,
               batch: int, channels: int) -> jax.Array:
    """[batch, 4, 4] color matrices, drawn in the official order."""
    b = batch
    eye = jnp.eye(4, dtype=jnp.float32)
    m = jnp.broadcast_to(eye, (b, 4, 4))
    if cfg.brightness > 0:
        t = draws.randn([b]) * cfg.brightness_std
        t = jnp.where(draws.rand([b]) < cfg.brightness * p, t, 0.0)
        m = (eye + jnp.zeros((b, 4, 4)).at[:, :3, 3].set(t[:, None])) @ m
    if cfg.contrast > 0:
        s = jnp.exp2(draws.randn([b]) * cfg.contrast_std)
        s = jnp.where(draws.rand([b]) < cfg.contrast * p, s, 1.0)
        m = (jnp.eye(4) * jnp.stack([s, s, s, jnp.ones_like(s)], -1)[:, None, :]) @ m
    luma = jnp.asarray(_LUMA_OUTER, jnp.float32)
    if cfg.lumaflip > 0:
        i = jnp.floor(draws.rand([b, 1, 1]) * 2)
        i = jnp.where(draws.rand([b, 1, 1]) < cfg.lumaflip * p, i, 0.0)
        m = (eye - 2 * luma * i) @ m
    if cfg.hue > 0 and channels > 1:
        theta = (draws.rand([b]) * 2 - 1) * np.pi * cfg.hue_max
        theta = jnp.where(draws.rand([b]) < cfg.hue * p, theta, 0.0)
        m = _rotation_about_luma(theta) @ m
    if cfg.saturation > 0 and channels > 1:
        s = jnp.exp2(draws.randn([b, 1, 1]) * cfg.saturation_std)
        s = jnp.where(draws.rand([b, 1, 1]) < cfg.saturation * p, s, 1.0)
        # luma + (I - luma) * s, written so that s = 1 gives exactly the identity.
        m = (eye + (eye - luma) * (s - 1)) @ m
    return m


def apply_color(images: jax.Array, m: jax.Array) -> jax.Array:
    """Applies [b, 4, 4] color matrices to NHWC L, RGB or RGBA images (alpha untouched)."""
    channels = images.shape[-1]
    if channels not in COLOR_CHANNELS:
        raise ValueError(f"augment: color operations need 1 (L), 3 (RGB) or 4 (RGBA) "
                         f"channels, got {channels}")
    rgb = images[..., :COLOR_CHANNELS[channels]]
    if rgb.shape[-1] == 3:
        out = jnp.einsum("bij,bhwj->bhwi", m[:, :3, :3], rgb) + m[:, None, None, :3, 3]
    else:
        rows = m[:, :3, :].mean(axis=1)  # [b, 4]: the average of the three color rows
        gain = rows[:, :3].sum(axis=1)
        out = rgb * gain[:, None, None, None] + rows[:, 3, None, None, None]
    if channels == 4:
        out = jnp.concatenate([out, images[..., 3:]], axis=-1)
    identity = jnp.all(m == jnp.eye(4, dtype=m.dtype), axis=(1, 2))
    return jnp.where(identity[:, None, None, None], images, out)
