"""Image-space filtering: random per-band amplification with the 4-band sym2 filter bank.

Each band is amplified with probability imgfilter * p * band multiplier by a log-normal
gain; after each band the gains are renormalised so that an image with the expected
1/f power spectrum keeps its power. The combined per-image filter is one symmetric 1-D
filter, applied separably after reflect padding (folded into a matrix per image).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.augment.config import AugmentConfig
from stylegan_jax.augment.draws import DrawSource
from stylegan_jax.augment.filters import BAND_POWER, filter_bank

_BANK = filter_bank()
_HALF = _BANK.shape[1] // 2  # reflect padding per side (the official pad)


def draw_filter(cfg: AugmentConfig, draws: DrawSource, p: jax.Array,
                batch: int) -> tuple[jax.Array, jax.Array]:
    """([batch, taps] per-image filters, [batch] bool: no band amplified)."""
    bands = _BANK.shape[0]
    power = jnp.asarray(BAND_POWER, jnp.float32)
    gains = jnp.ones((batch, bands), jnp.float32)
    untouched = jnp.ones((batch,), bool)
    for band, strength in enumerate(cfg.imgfilter_bands):
        t = jnp.exp2(draws.randn([batch]) * cfg.imgfilter_std)
        t = jnp.where(draws.rand([batch]) < cfg.imgfilter * p * strength, t, 1.0)
        untouched = untouched & (t == 1)
        band_gains = jnp.ones((batch, bands), jnp.float32).at[:, band].set(t)
        band_gains = band_gains / jnp.sqrt(jnp.sum(power * band_gains**2, -1, keepdims=True))
        gains = gains * band_gains
    return gains @ jnp.asarray(_BANK, jnp.float32), untouched


def _reflect_filter_matrix(taps: jax.Array, n: int) -> jax.Array:
    """[b, n, n] matrices that correlate a length-n signal with taps after reflect padding.

    Folding the padding into a (banded) matrix makes each filter pass one batched matmul,
    which compiles and differentiates as fast as any op (taps never need a gradient).
    """
    k = taps.shape[1]
    src = np.arange(n)[:, None] + np.arange(k)[None, :] - k // 2  # [out, tap]
    src = np.abs(src)  # reflect at the start (no edge repeat)
    src = np.where(src > n - 1, 2 * (n - 1) - src, src)  # and at the end
    rows = np.repeat(np.arange(n), k)
    values = jnp.tile(taps, (1, n))  # [b, out * tap], row-major like rows / src
    return jnp.zeros((taps.shape[0], n, n), taps.dtype).at[:, rows, src.reshape(-1)].add(values)


def apply_filter(images: jax.Array, taps: jax.Array, untouched: jax.Array) -> jax.Array:
    """Filters NHWC images with their per-image symmetric filters (rows, then columns)."""
    _, h, w, _ = images.shape
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("bhwc,bvw->bhvc", images, _reflect_filter_matrix(taps, w), precision=hi)
    x = jnp.einsum("bhwc,bvh->bvwc", x, _reflect_filter_matrix(taps, h), precision=hi)
    return jnp.where(untouched[:, None, None, None], images, x)


def check_size(height: int, width: int) -> None:
    """Reflect padding by half the filter length needs a larger image."""
    if min(height, width) <= _HALF:
        raise ValueError(f"augment: imgfilter needs images larger than {_HALF} pixels per "
                         f"side, got {height}x{width}")
