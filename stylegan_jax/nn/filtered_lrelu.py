"""Filtered leaky ReLU (StyleGAN3): bias, FIR upsampling, leaky ReLU, FIR downsampling.

The non-linearity runs at a higher sampling rate so the harmonics it creates are
removed by the downsampling low-pass instead of aliasing (alias-free GAN, section 3.2).
The official reference implementation (whose numbers the tests compare against) is
`upfirdn2d` -> `bias_act` -> `upfirdn2d`; its CUDA kernel fuses them. Here:

- every FIR step is 1-D passes of shifted multiply-adds (no dense resampling matrices):
  upsampling is polyphase (each output phase correlates the input with every up-th tap,
  so no multiply touches an inserted zero), downsampling evaluates only the kept
  samples. A radial (`stylegan3-r`) down filter is one 2-D strided pass: XLA fuses
  consecutive 1-D passes into one loop anyway, so splitting it into its (SVD) separable
  terms measured several times slower than the direct 2-D taps.
- the gradient is written out (custom VJP): the adjoint of a polyphase upsampler is a
  strided downsampler with the reversed taps and vice versa, and the leaky ReLU / clamp
  derivative is kept as one int8 code per sample (as the official kernel keeps sign
  bits), so XLA cannot fuse the forward upsampler back into the backward pass, which
  it otherwise does, recomputing it per tap (measured 30x slower than the forward).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_SLOPES = (0.2, 1.0)


def _down_taps(f: np.ndarray | None) -> tuple:
    """Correlation taps of the down filter: 1-D (separable) or 2-D, float64 tuples."""
    if f is None:
        return (1.0,)
    f = np.asarray(f, np.float64)
    if f.ndim == 1:
        return tuple(f[::-1])
    if f.ndim != 2:
        raise ValueError(f"filtered_lrelu: fd must be None, 1-D or 2-D, got shape {f.shape}")
    return tuple(tuple(row) for row in f[::-1, ::-1])


# ---------------------------------------------------------------------------------
# FIR passes over one axis (1-D taps) or two (2-D taps). `g` are correlation taps
# (numpy): y[i] = sum_k g[k] * x[i * step + k] along each of `axes`.

Pads = tuple[tuple[int, int], ...]  # (lo, hi) per axis; negative crops


def _pad(x: jax.Array, axes: Sequence[int], pads: Pads) -> jax.Array:
    """Zero padding; a negative pad crops, written as a slice (TFLite's converter aborts on
    a negative pad under a symbolic batch)."""
    cfg = [(0, 0, 0)] * x.ndim
    for ax, (lo, hi) in zip(axes, pads, strict=True):
        if lo < 0 or hi < 0:
            x = jax.lax.slice_in_dim(x, max(-lo, 0), x.shape[ax] - max(-hi, 0), axis=ax)
        cfg[ax] = (max(lo, 0), max(hi, 0), 0)
    return jax.lax.pad(x, jnp.zeros((), x.dtype), cfg)


def _correlate(x, g: np.ndarray, axes, n_out: Sequence[int], step: int = 1) -> jax.Array:
    out = None
    for idx in np.ndindex(g.shape):
        if g[idx] == 0:
            continue
        term = x
        for ax, k, n in zip(axes, idx, n_out, strict=True):
            term = jax.lax.slice_in_dim(term, k, k + step * (n - 1) + 1, step, ax)
        term = term * jnp.asarray(g[idx], x.dtype)
        out = term if out is None else out + term
    if out is None:
        shape = list(x.shape)
        for ax, n in zip(axes, n_out, strict=True):
            shape[ax] = n
        return jnp.zeros(shape, x.dtype)
    return out


def _down(x, g: np.ndarray, down: int, axes) -> jax.Array:
    """Valid correlation evaluated only at every down-th output."""
    n_out = [(x.shape[ax] - k) // down + 1 for ax, k in zip(axes, g.shape, strict=True)]
    return _correlate(x, g, axes, n_out, down)


def _interleave(parts: list, axis: int) -> jax.Array:
    """parts[r][.., q, ..] -> y[.., q * len(parts) + r, ..] along axis."""
    y = jnp.stack(parts, axis=axis + 1)
    shape = list(parts[0].shape)
    shape[axis] *= len(parts)
    return y.reshape(shape)


def _up(x, g: np.ndarray, up: int, pads: Pads, axes) -> jax.Array:
    """Zero-insert by `up`, pad, valid correlation with g - polyphase: output phase r
    of each axis correlates x with g[k0::up], so no multiply touches an inserted zero."""
    if up == 1:
        return _down(_pad(x, axes, pads), g, 1, axes)
    m = [x.shape[ax] * up + p0 + p1 - k + 1
         for ax, (p0, p1), k in zip(axes, pads, g.shape, strict=True)]
    q = [-(-mi // up) for mi in m]  # outputs per phase

    def phase(rs):
        k0 = [(p0 - r) % up for (p0, _), r in zip(pads, rs, strict=True)]
        sub = g[tuple(slice(k, None, up) for k in k0)]
        cfg = []
        for ax, (p0, _), r, k, qi, taps in zip(axes, pads, rs, k0, q, sub.shape, strict=True):
            off = (r + k - p0) // up  # exact: output qi * up + r reads x[qi + t + off]
            cfg.append((-off, off + qi + max(taps, 1) - 1 - x.shape[ax]))
        return _correlate(_pad(x, axes, tuple(cfg)), sub, axes, q)

    if len(axes) == 1:
        y = _interleave([phase((r,)) for r in range(up)], axes[0])
    else:
        rows = [_interleave([phase((r0, r1)) for r1 in range(up)], axes[1]) for r0 in range(up)]
        y = _interleave(rows, axes[0])
    for ax, mi in zip(axes, m, strict=True):
        y = jax.lax.slice_in_dim(y, 0, mi, axis=ax)
    return y


def _up_adjoint(y, g: np.ndarray, up: int, pads: Pads, sizes, axes) -> jax.Array:
    """Transpose of `_up` (input lengths `sizes`): a strided correlation, flipped taps."""
    cfg = []
    for ax, (p0, _), k, n in zip(axes, pads, g.shape, sizes, strict=True):
        lo = k - 1 - p0
        cfg.append((lo, (n - 1) * up + k - (y.shape[ax] + lo)))
    return _down(_pad(y, axes, tuple(cfg)), np.flip(g), up, axes)


def _down_adjoint(y, g: np.ndarray, down: int, sizes, axes) -> jax.Array:
    """Transpose of `_down` (input lengths `sizes`): polyphase upsampling, flipped taps."""
    pads = tuple((k - 1, n - y.shape[ax] * down)
                 for ax, k, n in zip(axes, g.shape, sizes, strict=True))
    return _up(y, np.flip(g), down, pads, axes)


# ---------------------------------------------------------------------------------
# The op.


class _Spec(NamedTuple):
    """Static description of one call (hashable)."""

    fu: tuple[float, ...]  # 1-D taps (official convolution order)
    fd: tuple  # correlation taps of the down filter: 1-D, or 2-D (radial)
    up: int
    down: int
    padding: tuple[int, int, int, int]
    gain: float
    slope: float
    clamp: float | None


def filtered_lrelu(
    x: jax.Array,
    fu: np.ndarray | None = None,
    fd: np.ndarray | None = None,
    b: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] | int = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> jax.Array:
    """x [N, H, W, C] + b [C], upsample by `up` with `fu` (padding (x0, x1, y0, y1) on the
    upsampled image, gain up^2), leaky ReLU (`slope` 0.2; 1 = linear) times `gain`,
    clamp to [-clamp, clamp], downsample by `down` with `fd`.

    `fu` is None or 1-D (separable) taps; `fd` None, 1-D or 2-D (radial). Filters are
    static numpy taps. Returns x's dtype.
    """
    if slope not in _SLOPES:
        raise ValueError(f"filtered_lrelu: slope must be one of {_SLOPES}, got {slope!r}")
    if isinstance(padding, int):
        padding = (padding,) * 4
    if len(padding) != 4:
        raise ValueError(f"filtered_lrelu: padding must be an int or (x0, x1, y0, y1), "
                         f"got {padding!r}")
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu: x must be NHWC, got shape {x.shape}")
    if fu is not None and np.ndim(fu) != 1:
        raise ValueError(f"filtered_lrelu: fu must be None or 1-D taps, got shape "
                         f"{np.shape(fu)}")
    if up < 1 or down < 1:
        raise ValueError(f"filtered_lrelu: up and down must be >= 1, got {up}, {down}")
    fu_taps = (1.0,) if fu is None else tuple(float(v) for v in np.asarray(fu, np.float64))
    spec = _Spec(fu_taps, _down_taps(fd), int(up), int(down),
                 tuple(int(p) for p in padding), float(gain), float(slope),
                 None if clamp is None else float(clamp))
    if b is None:
        b = jnp.zeros((x.shape[-1],), x.dtype)
    return _filtered_lrelu(x, b.astype(x.dtype), spec)


def _up_taps(spec: _Spec) -> np.ndarray:
    return np.asarray(spec.fu[::-1], np.float64) * spec.up  # gain up per axis


def _pads_yx(spec: _Spec) -> tuple[tuple[int, int], tuple[int, int]]:
    x0, x1, y0, y1 = spec.padding
    return (y0, y1), (x0, x1)


def _upsample(x, spec: _Spec):
    """Bias-added input -> upsampled and filtered (gain up^2): two 1-D passes."""
    g, (py, px) = _up_taps(spec), _pads_yx(spec)
    return _up(_up(x, g, spec.up, (py,), (1,)), g, spec.up, (px,), (2,))


def _downsample(x, spec: _Spec):
    g = np.asarray(spec.fd, np.float64)
    if g.ndim == 2:
        return _down(x, g, spec.down, (1, 2))
    return _down(_down(x, g, spec.down, (1,)), g, spec.down, (2,))


def _forward(x, b, spec: _Spec):
    y = _upsample(x + b, spec)
    act = jnp.where(y >= 0, y, y * jnp.asarray(spec.slope, y.dtype)) * jnp.asarray(
        spec.gain, y.dtype)
    code = jnp.where(y >= 0, 2, 1).astype(jnp.int8)
    if spec.clamp is not None:
        clipped = jnp.abs(act) > spec.clamp
        act = jnp.clip(act, -spec.clamp, spec.clamp)
        code = jnp.where(clipped, 0, code).astype(jnp.int8)
    return _downsample(act, spec), code


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _filtered_lrelu(x, b, spec: _Spec):
    return _forward(x, b, spec)[0]


def _fwd(x, b, spec):
    out, code = _forward(x, b, spec)
    return out, (code, x.shape[1:3])


def _bwd(spec, res, cot):
    code, (h, w) = res
    length_h, length_w = code.shape[1], code.shape[2]
    gd = np.asarray(spec.fd, np.float64)
    if gd.ndim == 2:
        g = _down_adjoint(cot, gd, spec.down, (length_h, length_w), (1, 2))
    else:
        g = _down_adjoint(cot, gd, spec.down, (length_w,), (2,))
        g = _down_adjoint(g, gd, spec.down, (length_h,), (1,))
    mult = jnp.where(code == 2, spec.gain, jnp.where(code == 1, spec.gain * spec.slope, 0.0))
    g = g * mult.astype(g.dtype)
    gu, (py, px) = _up_taps(spec), _pads_yx(spec)
    g = _up_adjoint(g, gu, spec.up, (px,), (w,), (2,))
    g = _up_adjoint(g, gu, spec.up, (py,), (h,), (1,))
    return g, jnp.sum(g, axis=(0, 1, 2))


_filtered_lrelu.defvjp(_fwd, _bwd)
