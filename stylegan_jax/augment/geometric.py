"""Geometric augmentations: draws of the inverse transform, and its execution.

The official pipe composes every geometric operation (x-flip, 90-degree rotations,
integer translation, isotropic scaling, rotation, anisotropic scaling, fractional
translation) into one inverse homogeneous matrix per image, `G_inv @ out ==> in`, in
centred pixel coordinates, and executes it once: reflect padding, 2x upsampling with
the orthogonal sym6 filter, bilinear resampling, 2x downsampling with the same filter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.augment.config import AugmentConfig
from stylegan_jax.augment.draws import DrawSource
from stylegan_jax.augment.filters import SYM6
from stylegan_jax.nn.fir import upfirdn2d

# 2-D form of the normalised sym6 filter (the official `setup_filter`, sum 1).
_SYM6_2D = np.outer(SYM6, SYM6) / SYM6.sum() ** 2
_TAPS = len(SYM6)
# Extra border, in input pixels, that the downsampling filter needs around the output.
_FILTER_PAD = _TAPS // 4


def matrix(rows: list[list], batch: int) -> jax.Array:
    """[batch, n, n] matrices from rows of scalars and/or [batch] arrays."""
    n = len(rows)
    entries = [jnp.broadcast_to(jnp.asarray(e, jnp.float32), (batch,)) for r in rows for e in r]
    return jnp.stack(entries, axis=-1).reshape(batch, n, n)


def translate(tx, ty, batch: int) -> jax.Array:
    return matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], batch)


def scale(sx, sy, batch: int) -> jax.Array:
    return matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], batch)


def rotate(theta, batch: int) -> jax.Array:
    c, s = jnp.cos(theta), jnp.sin(theta)
    return matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], batch)


def draw_geometric(cfg: AugmentConfig, draws: DrawSource, p: jax.Array,
                   batch: int, height: int, width: int) -> jax.Array:
    """[batch, 3, 3] inverse transforms, drawn in the official order.

    Each operation first draws its parameter, then whether it applies (probability
    multiplier * p); an operation that does not apply contributes an exact identity.
    """
    b = batch
    g = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (b, 3, 3))
    if cfg.xflip > 0:
        i = jnp.floor(draws.rand([b]) * 2)
        i = jnp.where(draws.rand([b]) < cfg.xflip * p, i, 0.0)
        g = g @ scale(1 - 2 * i, 1, b)  # its own inverse
    if cfg.rotate90 > 0:
        i = jnp.floor(draws.rand([b]) * 4)
        i = jnp.where(draws.rand([b]) < cfg.rotate90 * p, i, 0.0)
        g = g @ rotate(np.pi / 2 * i, b)  # inverse of a rotation by -90 deg * i
    if cfg.xint > 0:
        t = (draws.rand([b, 2]) * 2 - 1) * cfg.xint_max
        t = jnp.where(draws.rand([b, 1]) < cfg.xint * p, t, 0.0)
        g = g @ translate(-jnp.round(t[:, 0] * width), -jnp.round(t[:, 1] * height), b)
    if cfg.scale > 0:
        s = jnp.exp2(draws.randn([b]) * cfg.scale_std)
        s = jnp.where(draws.rand([b]) < cfg.scale * p, s, 1.0)
        g = g @ scale(1 / s, 1 / s, b)
    # Rotation happens before and after the anisotropic scaling, each with probability
    # p_rot, so that P(pre or post) = rotate * p.
    p_rot = 1 - jnp.sqrt(jnp.clip(1 - cfg.rotate * p, 0, 1))
    if cfg.rotate > 0:
        theta = (draws.rand([b]) * 2 - 1) * np.pi * cfg.rotate_max
        theta = jnp.where(draws.rand([b]) < p_rot, theta, 0.0)
        g = g @ rotate(theta, b)
    if cfg.aniso > 0:
        s = jnp.exp2(draws.randn([b]) * cfg.aniso_std)
        s = jnp.where(draws.rand([b]) < cfg.aniso * p, s, 1.0)
        g = g @ scale(1 / s, s, b)
    if cfg.rotate > 0:
        theta = (draws.rand([b]) * 2 - 1) * np.pi * cfg.rotate_max
        theta = jnp.where(draws.rand([b]) < p_rot, theta, 0.0)
        g = g @ rotate(theta, b)
    if cfg.xfrac > 0:
        t = draws.randn([b, 2]) * cfg.xfrac_std
        t = jnp.where(draws.rand([b, 1]) < cfg.xfrac * p, t, 0.0)
        g = g @ translate(-t[:, 0] * width, -t[:, 1] * height, b)
    return g


def padding_margins(g_inv: jax.Array, height: int, width: int) -> jax.Array:
    """int32 [x0, y0, x1, y1]: the official reflect padding for the whole batch.

    Enough to hold every image's transformed corners plus the filter border, at most one
    image size minus one per side. It is shared by the batch, as in the official pipe.
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = jnp.array([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], jnp.float32)
    xy = jnp.einsum("bij,kj->bik", g_inv, corners)[:, :2]  # [batch, xy, corner]
    xy = jnp.moveaxis(xy, 1, 0).reshape(2, -1)
    margin = jnp.concatenate([-xy, xy]).max(axis=1)
    border = 2 * _FILTER_PAD
    margin = margin + jnp.array([border - cx, border - cy] * 2, jnp.float32)
    margin = jnp.clip(margin, 0, jnp.array([width - 1, height - 1] * 2, jnp.float32))
    return jnp.ceil(margin).astype(jnp.int32)


def _bilinear(img: jax.Array, xc: jax.Array, yc: jax.Array, lo: tuple, hi: tuple) -> jax.Array:
    """Bilinear samples of img [b, h, w, c] at pixel coordinates (xc, yc) [b, ho, wo].

    Pixels outside [lo, hi) (per axis, traced ints) read as zero, like grid_sample's
    zero padding at the border of the official (smaller) padded image.
    """
    b, h, w, c = img.shape
    x0, y0 = jnp.floor(xc), jnp.floor(yc)
    fx, fy = xc - x0, yc - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = img.reshape(b, h * w, c)
    out = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            x, y = x0 + dx, y0 + dy
            valid = (x >= lo[0]) & (x < hi[0]) & (y >= lo[1]) & (y < hi[1])
            index = (jnp.clip(y, 0, h - 1) * w + jnp.clip(x, 0, w - 1)).reshape(b, -1)
            pixels = jax.vmap(lambda f, i: f[i])(flat, index).reshape(*xc.shape, c)
            out = out + pixels * jnp.where(valid, wx * wy, 0.0)[..., None]
    return out


def resample(images: jax.Array, g_inv: jax.Array) -> jax.Array:
    """The official geometric path on NHWC images: pad, upsample, resample, downsample.

    The official pipe pads by a data-dependent amount; under jit the padding here is
    always the largest the official pipe can use (size - 1 per side) and everything
    beyond the official amount is masked to zero, which gives the same numbers.
    """
    b, h, w, _ = images.shape
    px, py = w - 1, h - 1
    mx0, my0, mx1, my1 = padding_margins(g_inv, h, w)
    x = jnp.pad(images, ((0, 0), (py, py), (px, px), (0, 0)), mode="reflect")
    rows, cols = jnp.arange(h + 2 * py), jnp.arange(w + 2 * px)
    keep_y = (rows >= py - my0) & (rows < py + h + my1)
    keep_x = (cols >= px - mx0) & (cols < px + w + mx1)
    x = x * (keep_y[:, None] & keep_x[None, :]).astype(x.dtype)[None, :, :, None]

    pad_up = ((_TAPS + 1) // 2, (_TAPS - 2) // 2)
    x = upfirdn2d(x, _SYM6_2D, up=2, padding=pad_up * 2, gain=4.0)

    # Output grid: the image plus the downsampling filter's border, at twice the size.
    ho, wo = 2 * (h + 2 * _FILTER_PAD), 2 * (w + 2 * _FILTER_PAD)
    # In the upsampled frames the transform is S(2) G_inv S(1/2), conjugated by a shift
    # of half an upsampled pixel (an official quirk, kept for equality).
    half = translate(0.5, 0.5, b)
    m = translate(-0.5, -0.5, b) @ scale(2, 2, b) @ g_inv @ scale(0.5, 0.5, b) @ half
    xo = jnp.arange(wo, dtype=jnp.float32) - (wo - 1) / 2
    yo = jnp.arange(ho, dtype=jnp.float32) - (ho - 1) / 2

    def coord(row):  # centred input coordinate - 1/2: small numbers keep float32 precision
        return (row[:, 0, None, None] * xo[None, None, :] + row[:, 1, None, None]
                * yo[None, :, None] + row[:, 2, None, None] - 0.5)

    # The upsampled padded image has an even size, so centred + size/2 - 1/2 is an index.
    xc = coord(m[:, 0]) + x.shape[2] // 2
    yc = coord(m[:, 1]) + x.shape[1] // 2
    lo = (2 * (px - mx0), 2 * (py - my0))
    hi = (2 * (px + w + mx1), 2 * (py + h + my1))
    x = _bilinear(x, xc, yc, lo, hi)

    crop = 2 * _FILTER_PAD
    pad_down = ((_TAPS - 1) // 2 - crop, (_TAPS - 2) // 2 - crop)
    # Correlation with sym6 (the official flip_filter=True); upfirdn2d convolves.
    return upfirdn2d(x, _SYM6_2D[::-1, ::-1], down=2, padding=pad_down * 2)


def apply_geometric(images: jax.Array, g_inv: jax.Array) -> jax.Array:
    """Resamples each image by its inverse transform; identity transforms pass exactly.

    The official pipe resamples identity images too (equal up to rounding); passing
    them through unchanged makes p = 0 an exact identity, and a batch without any
    transform skips the work.
    """
    identity = jnp.all(g_inv == jnp.eye(3, dtype=g_inv.dtype), axis=(1, 2))
    out = jax.lax.cond(jnp.all(identity), lambda x, g: x, resample, images, g_inv)
    return jnp.where(identity[:, None, None, None], images, out)


def check_size(height: int, width: int) -> None:
    """Reflect padding by up to size - 1 needs at least two pixels per side."""
    if min(height, width) < 2:
        raise ValueError(f"augment: geometric operations need images of at least 2x2 "
                         f"pixels, got {height}x{width}")
