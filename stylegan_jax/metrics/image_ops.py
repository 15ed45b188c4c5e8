"""Resampling as the reference feature networks do it, separably per axis (NHWC).

`F.interpolate(mode='bilinear', align_corners=False)` (no antialiasing: pytorch-fid
resizes to 299 with it, downscaling included) and adaptive average pooling, which is
also `F.interpolate(mode='area')`. Weights are fixed [out, in] matrices built in NumPy
from static shapes; bilinear applies its two taps per output as gathers (a 1024²
image would otherwise cost 40% of an Inception pass in matmuls), area as matmuls.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


@functools.cache
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of torch's bilinear resize with align_corners=False."""
    m = np.zeros((out_size, in_size), np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)  # torch clamps negative source coordinates
        i0 = min(int(np.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m.astype(np.float32)


@functools.cache
def area_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of adaptive average pooling (torch's bins: floor/ceil edges)."""
    m = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        lo = (i * in_size) // out_size
        hi = -((-(i + 1) * in_size) // out_size)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m.astype(np.float32)


def _apply(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
    x = jnp.einsum("oh,nhwc->nowc", mh, x, precision=HIGHEST)
    return jnp.einsum("pw,nowc->nopc", mw, x, precision=HIGHEST)


def _two_taps(x: jax.Array, m: np.ndarray, axis: int) -> jax.Array:
    """out[i] = sum of the (at most two) nonzero m[i, j] * x[j] along `axis`."""
    lo = np.argmax(m > 0, axis=1)
    hi = np.minimum(lo + 1, m.shape[1] - 1)
    w_lo = m[np.arange(len(m)), lo]
    w_hi = np.where(hi != lo, m[np.arange(len(m)), hi], 0.0).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = len(m)
    return (jnp.take(x, lo, axis=axis) * w_lo.reshape(shape)
            + jnp.take(x, hi, axis=axis) * w_hi.reshape(shape))


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """[N, H, W, C] -> [N, size[0], size[1], C]; identity when the size already matches."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    x = _two_taps(x, bilinear_matrix(h, size[0]), axis=1)
    return _two_taps(x, bilinear_matrix(w, size[1]), axis=2)


def resize_area(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Adaptive average pooling to `size` (= torch `F.interpolate(mode='area')`)."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    return _apply(x, area_matrix(h, size[0]), area_matrix(w, size[1]))


def to_rgb(x: jax.Array, drange: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
    """[N, H, W, 1 | 3 | 4] in `drange` -> RGB for the feature networks: grayscale as 3 equal
    channels (as the official metrics repeat them); RGBA composited over black (the
    dataset tool's transparent padding) with its alpha, the same for reals and fakes."""
    c = x.shape[-1]
    if c == 3:
        return x
    if c == 1:
        return jnp.repeat(x, 3, axis=-1)
    if c == 4:
        lo, hi = drange
        alpha = (x[..., 3:] - lo) / (hi - lo)
        return lo + (x[..., :3] - lo) * alpha
    raise ValueError(f"images must have 1, 3 or 4 channels, got shape {x.shape}")
