"""FIR up/down-sampling (the official `upfirdn2d`) as shifted multiply-adds.

A depthwise convolution is the textbook way to apply a 4x4 FIR filter, but XLA's CPU
backend runs it ~50x slower than the same arithmetic written as shifted slices, which
XLA fuses into one elementwise loop on every backend. Separable filters (all of the
official ones) take two 1-D passes; the strided slice of the last pass does the
downsampling, so nothing is computed at positions that are thrown away.

The gradient is written out: the adjoint of an up-by-u / down-by-d FIR is itself a FIR
(down-by-u / up-by-d, flipped filter, adjusted padding), as cheap as the forward. JAX's
transpose of the shifted slices is a sum of pads that runs several times slower (5x for
the 2x upsampling FIR on the CPU). The backward calls the same wrapped function, so
second derivatives (R1, path length) use the rule again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def _separate(f: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertical taps, horizontal taps) if f is their outer product, else None."""
    f = np.asarray(f, np.float64)
    total = f.sum()
    if total == 0:
        return None
    rows, cols = f.sum(axis=1), f.sum(axis=0) / total
    return (rows, cols) if np.allclose(np.outer(rows, cols), f, rtol=1e-6, atol=1e-9) else None


def _zero_insert(x: jax.Array, up: int, axis: int) -> jax.Array:
    """Places x at every up-th position along axis, zeros between (length n * up)."""
    if up == 1:
        return x
    zeros = jnp.zeros_like(x)
    stacked = jnp.stack([x] + [zeros] * (up - 1), axis=axis + 1)
    shape = list(x.shape)
    shape[axis] *= up
    return stacked.reshape(shape)


def _taps_pass(x: jax.Array, taps: np.ndarray, axis: int, down: int) -> jax.Array:
    """Valid correlation with `taps` along axis, keeping every down-th output."""
    k = len(taps)
    n_out = (x.shape[axis] - k) // down + 1
    out = None
    for i, tap in enumerate(taps):
        if tap == 0:
            continue
        # A static strided slice (indexing becomes a gather under a symbolic batch).
        term = jax.lax.slice_in_dim(x, i, i + down * (n_out - 1) + 1, down, axis)
        term = term * jnp.asarray(tap, x.dtype)
        out = term if out is None else out + term
    return out


def upfirdn2d(
    x: jax.Array,
    f: np.ndarray,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] | int = 0,
    gain: float = 1.0,
) -> jax.Array:
    """Upsample by zero insertion, pad, convolve with f, downsample (NHWC; official semantics).

    `padding` is (x0, x1, y0, y1) or one int, on the upsampled image; negative values crop.
    """
    if isinstance(padding, int):
        padding = (padding,) * 4
    taps = tuple(tuple(float(v) for v in row) for row in np.asarray(f, np.float64))
    spec = _Spec(taps, int(up), int(down), tuple(int(p) for p in padding), float(gain),
                 (int(x.shape[1]), int(x.shape[2])))
    return _upfirdn2d(x, spec)


class _Spec(NamedTuple):
    """One static upfirdn2d call (hashable): taps, factors, padding (x0, x1, y0, y1),
    gain and the input's (H, W)."""

    f: tuple
    up: int
    down: int
    padding: tuple[int, int, int, int]
    gain: float
    in_hw: tuple[int, int]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _upfirdn2d(x: jax.Array, spec: _Spec) -> jax.Array:
    return _shifted_adds(x, np.asarray(spec.f), spec.up, spec.down, spec.padding, spec.gain)


def _fwd(x, spec):
    return _upfirdn2d(x, spec), None


def _bwd(spec, _, cotangent):
    return (_upfirdn2d(cotangent, _adjoint(spec)),)


_upfirdn2d.defvjp(_fwd, _bwd)


def _adjoint(spec: _Spec) -> _Spec:
    """The upfirdn2d call that computes the transpose of `spec`'s linear map.

    Per axis: forward = zero-insert by u, pad (p0, p1) to length L, convolve (valid) with
    K taps, keep every d-th (m outputs). Adjoint = zero-insert by d, pad (K-1-p0,
    L-K+1-m*d + K-1-p1), convolve with the flipped filter, keep every u-th.
    """
    kh, kw = len(spec.f), len(spec.f[0])
    u, d = spec.up, spec.down
    x0, x1, y0, y1 = spec.padding

    def axis(n, p0, p1, k):
        length = n * u + p0 + p1
        m = (length - k) // d + 1
        return (k - 1 - p0, length - k + 1 - m * d + k - 1 - p1), m

    (ax0, ax1), mw = axis(spec.in_hw[1], x0, x1, kw)
    (ay0, ay1), mh = axis(spec.in_hw[0], y0, y1, kh)
    flipped = tuple(tuple(row[::-1]) for row in spec.f[::-1])
    return _Spec(flipped, d, u, (ax0, ax1, ay0, ay1), spec.gain, (mh, mw))


def _shifted_adds(x, f, up, down, padding, gain):
    """The forward arithmetic: zero insertion, padding, then shifted multiply-adds."""
    px0, px1, py0, py1 = padding
    x = _zero_insert(_zero_insert(x, up, 1), up, 2)
    x = jax.lax.pad(x, jnp.zeros((), x.dtype),
                    ((0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)))
    # upfirdn2d convolves (flipped filter); correlation with the flipped taps is the same.
    f = np.asarray(f, np.float64)[::-1, ::-1] * gain
    sep = _separate(f)
    if sep is not None:
        x = _taps_pass(x, sep[0], 1, down)
        return _taps_pass(x, sep[1], 2, down)
    kh, kw = f.shape
    oh = (x.shape[1] - kh) // down + 1
    ow = (x.shape[2] - kw) // down + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            if f[i, j] == 0:
                continue
            term = x[:, i : i + down * (oh - 1) + 1 : down, j : j + down * (ow - 1) + 1 : down]
            term = term * jnp.asarray(f[i, j], x.dtype)
            out = term if out is None else out + term
    return out
