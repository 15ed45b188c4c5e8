"""Filtered leaky ReLU (StyleGAN3): bias, FIR upsampling, leaky ReLU, FIR downsampling.

The non-linearity runs at a higher sampling rate so the harmonics it creates are
removed by the downsampling low-pass instead of aliasing (alias-free GAN, section 3.2).
The official CUDA kernel fuses the steps; its reference implementation (and the
numbers the tests compare against) is this sequence of `upfirdn2d` and `bias_act`
calls. Here both FIR steps are `nn.fir.upfirdn2d`: two 1-D passes for the separable
Kaiser filters, a 2-D pass for the radial (`stylegan3-r`) ones, shifted multiply-adds
with a hand-written adjoint in both cases - no dense resampling matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np

from stylegan_jax.nn import ops
from stylegan_jax.nn.fir import upfirdn2d

_SLOPES = {0.2: "lrelu", 1.0: "linear"}


def as_2d_filter(f: np.ndarray | None) -> np.ndarray:
    """None (identity) -> [[1]]; 1-D taps -> their separable outer product; 2-D as is."""
    if f is None:
        return np.ones((1, 1), np.float64)
    f = np.asarray(f, np.float64)
    if f.ndim == 1:
        return np.outer(f, f)
    if f.ndim != 2:
        raise ValueError(f"filter must be None, 1-D or 2-D, got shape {f.shape}")
    return f


def output_size(in_size: int, f_up: int, f_down: int, up: int, down: int, pad: int) -> int:
    """Spatial output length along one axis (`pad` = the sum of both sides)."""
    return (in_size * up + pad - (f_up - 1) - (f_down - 1) + (down - 1)) // down


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

    Filters are static numpy taps: None, 1-D (separable) or 2-D. Returns x's dtype.
    """
    if slope not in _SLOPES:
        raise ValueError(f"filtered_lrelu: slope must be one of {sorted(_SLOPES)}, got {slope!r}")
    if isinstance(padding, int):
        padding = (padding,) * 4
    if len(padding) != 4:
        raise ValueError(f"filtered_lrelu: padding must be an int or (x0, x1, y0, y1), "
                         f"got {padding!r}")
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu: x must be NHWC, got shape {x.shape}")
    fu2, fd2 = as_2d_filter(fu), as_2d_filter(fd)
    x = ops.bias_act(x, b)
    x = upfirdn2d(x, fu2, up=up, padding=tuple(padding), gain=up * up)
    x = ops.bias_act(x, None, _SLOPES[slope], gain=gain, clamp=clamp)
    return upfirdn2d(x, fd2, down=down)
