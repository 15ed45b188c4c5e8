"""Multi-scale structural similarity (MS-SSIM) of image pairs, as ProGAN reports it.

ProGAN's paper measured the diversity of generated images with the mean MS-SSIM of random
pairs of them (lower: more varied; compare with the same number for real images), using
the TensorFlow authors' port of Wang et al.'s MATLAB code: an 11x11 Gaussian window
(sigma 1.5; both shrunk on images smaller than 11), no padding, five scales with 2x2 box
downsampling, the paper's weights, contrast/structure terms of the first four scales and the
full SSIM of the last, each clipped at zero, averaged over pairs at the end.

The official code works in float64 on the host. Here the pairs run on the devices in
float32; the images are shifted by -128 first, which leaves every term the same (variances
and covariances are shift-invariant, means are shifted back) but keeps the
E[x^2] - E[x]^2 differences far from float32's limits.

W x H images take the same steps (the official code works on any height and width): the
window shrinks to the shorter side where that is below 11, and five scales need a shorter
side of at least 16. The mean runs over every channel, an RGBA image's alpha included.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MAX_VAL = 255.0
MIN_RESOLUTION = 2 ** (len(WEIGHTS) - 1)


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """The normalised 1-D factor of MATLAB's `fspecial('gaussian')` window (the 2-D window
    is its outer product); even sizes sit between pixels, as the official window does."""
    offset = 0.5 if size % 2 == 0 else 0.0
    x = np.arange(size, dtype=np.float64) - size // 2 + offset
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _blur(x: jax.Array, g: np.ndarray) -> jax.Array:
    """'valid' separable blur of each channel of NHWC float32 `x` with window outer(g, g)."""
    n, h, w, c = x.shape
    planes = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
    k = jnp.asarray(g, jnp.float32)
    dims = ("NHWC", "HWIO", "NHWC")
    hi = jax.lax.Precision.HIGHEST
    planes = jax.lax.conv_general_dilated(planes, k[:, None, None, None], (1, 1), "VALID",
                                          dimension_numbers=dims, precision=hi)
    planes = jax.lax.conv_general_dilated(planes, k[None, :, None, None], (1, 1), "VALID",
                                          dimension_numbers=dims, precision=hi)
    return jnp.transpose(planes.reshape(n, c, *planes.shape[1:3]), (0, 2, 3, 1))


def _ssim_cs(x: jax.Array, y: jax.Array, shift: float) -> tuple[jax.Array, jax.Array]:
    """Per pair: mean SSIM and mean contrast-structure term of one scale. `x`, `y` hold the
    images minus `shift`."""
    _, h, w, _ = x.shape
    size = min(FILTER_SIZE, h, w)
    g = gaussian_1d(size, size * FILTER_SIGMA / FILTER_SIZE)
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    var_x = _blur(x * x, g) - mu_x * mu_x
    var_y = _blur(y * y, g) - mu_y * mu_y
    cov = _blur(x * y, g) - mu_x * mu_y
    mu_x, mu_y = mu_x + shift, mu_y + shift
    c1, c2 = (K1 * MAX_VAL) ** 2, (K2 * MAX_VAL) ** 2
    v1, v2 = 2.0 * cov + c2, var_x + var_y + c2
    ssim = ((2.0 * mu_x * mu_y + c1) * v1) / ((mu_x * mu_x + mu_y * mu_y + c1) * v2)
    return jnp.mean(ssim, axis=(1, 2, 3)), jnp.mean(v1 / v2, axis=(1, 2, 3))


def _half(x: jax.Array) -> jax.Array:
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25


def pair_scores(a: jax.Array, b: jax.Array) -> jax.Array:
    """float32 [N] MS-SSIM of uint8 NHWC image pairs (a[i], b[i]) (any channel count: the
    official mean runs over channels too, so grayscale repeated to RGB scores the same)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"MS-SSIM pairs must be two equal NHWC batches, got {a.shape}, {b.shape}")
    if min(a.shape[1:3]) < MIN_RESOLUTION:
        raise ValueError(f"MS-SSIM needs images of at least {MIN_RESOLUTION}x{MIN_RESOLUTION} "
                         f"(five scales), got {a.shape[1]}x{a.shape[2]}")
    shift = 128.0
    x = jnp.asarray(a, jnp.float32) - shift
    y = jnp.asarray(b, jnp.float32) - shift
    ssims, css = [], []
    for level in range(len(WEIGHTS)):
        if level:
            x, y = _half(x), _half(y)
        s, c = _ssim_cs(x, y, shift)
        ssims.append(jnp.maximum(s, 0.0))
        css.append(jnp.maximum(c, 0.0))
    w = jnp.asarray(WEIGHTS, jnp.float32)
    cs = jnp.stack(css[:-1], axis=0)
    return jnp.prod(cs ** w[:-1, None], axis=0) * ssims[-1] ** w[-1]


pair_scores_jit = jax.jit(pair_scores)
