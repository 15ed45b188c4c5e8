"""The one 2-D convolution of the training path, with gradients written out by hand.

JAX's transpose rule turns the weight gradient of an input-dilated (transposed, i.e.
upsampling) convolution into another input-dilated convolution whose *kernel is the
cotangent image*; differentiating twice (R1, path length) makes the same shape out of
strided convolutions. XLA's GPU backend cannot hand that shape to cuDNN and runs it as a
forward convolution with an image-sized kernel - NVIDIA's `conv2d_gradfix` exists for
the same reason. Here both gradients are convolutions again, of the same custom op (so
every order of differentiation keeps the rule), and a weight gradient is always a
window-dilated (`rhs_dilation`) convolution without input dilation: the shape of cuDNN's
backward-filter kernels.

NHWC activations, HWIO weights. Forward-mode differentiation (jvp) is not supported.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

_DN = ("NHWC", "HWIO", "NHWC")
Pairs = tuple[tuple[int, int], tuple[int, int]]


def conv2d(
    x: jax.Array,
    w: jax.Array,
    strides: Sequence[int] = (1, 1),
    padding: Sequence[Sequence[int]] = ((0, 0), (0, 0)),
    lhs_dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> jax.Array:
    """`lax.conv_general_dilated` (NHWC, HWIO) with hand-written, resampling-safe gradients.

    x: [N, H, W, C]; w: [kh, kw, C / groups, O]; padding: ((top, bottom), (left, right)),
    negative values crop. `lhs_dilation` > 1 is a transposed (upsampling) convolution;
    it cannot be combined with `strides` > 1 (no weight gradient of that form avoids
    the input-dilated, image-kernel shape).
    """
    strides, lhs_dilation = _pair(strides, "strides"), _pair(lhs_dilation, "lhs_dilation")
    padding = tuple(_pair(p, "padding") for p in padding)
    if len(padding) != 2:
        raise ValueError(f"conv2d: padding must be two (before, after) pairs, got {padding}")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d: expected NHWC x and HWIO w, got shapes {x.shape}, {w.shape}")
    if groups < 1 or x.shape[3] != w.shape[2] * groups or w.shape[3] % groups:
        raise ValueError(
            f"conv2d: groups={groups} does not fit x channels {x.shape[3]} and weight "
            f"shape {w.shape} (HWIO: I = C / groups, O divisible by groups)")
    if max(strides) > 1 and max(lhs_dilation) > 1:
        raise ValueError(f"conv2d: strides {strides} with lhs_dilation {lhs_dilation} is "
                         "not supported; resample up or down, not both")
    return _conv(x, w, strides, padding, lhs_dilation, (1, 1), groups)


def _pair(v, name: str) -> tuple[int, int]:
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"conv2d: {name} must have two entries, got {v!r}")
    return t


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, w, strides: tuple, padding: Pairs, lhs_dil: tuple, rhs_dil: tuple, groups: int):
    def conv(x, w, padding=padding):
        spans = [(k - 1) * r for k, r in zip(w.shape[:2], rhs_dil, strict=True)]
        if lhs_dil != (1, 1) and any(p > s for pair, s in zip(padding, spans, strict=True)
                                     for p in pair):
            # A transposed convolution padded beyond the kernel's span: the outer rows and
            # columns see only padding, so they are zeros, padded on afterwards. The same
            # numbers; TFLite's converter only takes a transposed convolution this way.
            inner = tuple((min(lo, s), min(hi, s)) for (lo, hi), s in zip(padding, spans,
                                                                            strict=True))
            y = conv(x, w, inner)
            outer = [(0, 0)] + [(lo - a, hi - b) for (lo, hi), (a, b) in
                                zip(padding, inner, strict=True)] + [(0, 0)]
            return jnp.pad(y, outer)
        return jax.lax.conv_general_dilated(
            x, w, strides, padding, lhs_dilation=lhs_dil, rhs_dilation=rhs_dil,
            dimension_numbers=_DN, feature_group_count=groups)

    unpadded = padding == ((0, 0), (0, 0)) and strides == lhs_dil == rhs_dil == (1, 1)
    out_h, out_w = x.shape[1] - w.shape[0] + 1, x.shape[2] - w.shape[1] + 1
    if unpadded and 1 < w.shape[0] <= out_h and 1 < w.shape[1] <= out_w:
        # XLA:CPU runs a small-kernel convolution without padding ~5x slower than the same
        # one padded by a pixel and cropped (4 x 54^2 x 128, 3x3: 46 vs 9 ms; the numbers
        # are equal). It is the input gradient of StyleGAN3's 3x3 "full" convolutions.
        def cropped(x, w):
            return conv(x, w, ((1, 1), (1, 1)))[:, 1:-1, 1:-1]

        return jax.lax.platform_dependent(x, w, cpu=cropped, default=conv)
    return conv(x, w)


def _conv_fwd(x, w, strides, padding, lhs_dil, rhs_dil, groups):
    # The forward calls the custom op itself, so that a second differentiation (which
    # differentiates this function) sees the rule again.
    return _conv(x, w, strides, padding, lhs_dil, rhs_dil, groups), (x, w)


def _conv_bwd(strides, padding, lhs_dil, rhs_dil, groups, res, dy):
    x, w = res
    dx = _input_grad(dy, w, x.shape, strides, padding, lhs_dil, rhs_dil, groups)
    dw = _weight_grad(x, dy, w.shape, strides, padding, lhs_dil, rhs_dil, groups)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _sizes(in_size, k, s, lo, d, r):
    """1-D: (dilated input length, dilated kernel length, dilated output length)."""
    dilated_in = (in_size - 1) * d + 1
    span = (k - 1) * r + 1
    out = (dilated_in + lo[0] + lo[1] - span) // s + 1
    return dilated_in, span, (out - 1) * s + 1


def _input_grad(dy, w, x_shape, strides, padding, lhs_dil, rhs_dil, groups):
    """dx: dy, dilated by the forward stride, convolved with the flipped kernel (input and
    output channels swapped within each group), strided by the forward input dilation."""
    kh, kw, cg, o = w.shape
    pads = []
    for ax in range(2):
        dilated_in, span, dilated_out = _sizes(x_shape[1 + ax], w.shape[ax], strides[ax],
                                               padding[ax], lhs_dil[ax], rhs_dil[ax])
        lo = padding[ax][0]
        pads.append((span - 1 - lo, dilated_in + lo - dilated_out))
    wt = w[::-1, ::-1].reshape(kh, kw, cg, groups, o // groups)
    wt = jnp.transpose(wt, (0, 1, 4, 3, 2)).reshape(kh, kw, o // groups, groups * cg)
    return _conv(dy, wt, lhs_dil, tuple(pads), strides, rhs_dil, groups)


def _weight_grad(x, dy, w_shape, strides, padding, lhs_dil, rhs_dil, groups):
    """dw as a convolution without input dilation whose kernel (an image) is window-dilated.

    Without input dilation, dw[k] = sum_o xpad[o * s + k * r] dy[o]: x convolved with dy
    dilated by the stride s. With input dilation d (stride 1), dw[k] = sum_i x[i]
    dy[lo + d i - r k]: reversing x and dy in space makes this dy convolved with x
    dilated by d. Batch and channel roles swap: the sum runs over the batch.
    """
    n, h, wd, c = x.shape
    cg, o = c // groups, dy.shape[3]
    og = o // groups
    dims = [_sizes(x.shape[1 + ax], w_shape[ax], strides[ax], padding[ax], lhs_dil[ax],
                   rhs_dil[ax]) for ax in range(2)]
    if max(lhs_dil) == 1:
        # lhs [cg, H, W, G * N] (features: group-major), kernel [Ho, Wo, N, G * og].
        lhs = jnp.transpose(x.reshape(n, h, wd, groups, cg), (4, 1, 2, 3, 0))
        lhs = lhs.reshape(cg, h, wd, groups * n)
        rhs = jnp.transpose(dy, (1, 2, 0, 3))
        pads = tuple((padding[ax][0], dims[ax][1] - 1 + dims[ax][2] - dims[ax][0]
                      - padding[ax][0]) for ax in range(2))
        if max(abs(p) for pair in pads for p in pair) > 1:
            # XLA:CPU runs this convolution ~30x slower with padding wider than a pixel
            # than on the same input padded beforehand (StyleGAN3's 3x3 convolutions pad
            # by 2: 0.31 vs 0.0096 s for 16 x 36^2 x 32); a pixel costs the same both ways.
            # (The barrier keeps XLA from folding the pad back into the convolution.)
            lhs = jax.lax.optimization_barrier(jax.lax.pad(
                lhs, jnp.zeros((), lhs.dtype),
                ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0))))
            pads = ((0, 0), (0, 0))
        out = _conv(lhs, rhs, rhs_dil, pads, (1, 1), strides, groups)  # [cg, kh, kw, o]
        return jnp.transpose(out, (1, 2, 0, 3))
    # Input-dilated forward (stride 1): lhs = reversed dy [og, Ho, Wo, G * N], kernel =
    # reversed x [H, W, N, G * cg] dilated by d.
    ho, wo = dy.shape[1], dy.shape[2]
    lhs = jnp.transpose(dy[:, ::-1, ::-1].reshape(n, ho, wo, groups, og), (4, 1, 2, 3, 0))
    lhs = lhs.reshape(og, ho, wo, groups * n)
    rhs = jnp.transpose(x[:, ::-1, ::-1], (1, 2, 0, 3))
    pads = tuple((padding[ax][0] + dims[ax][0] - dims[ax][2], dims[ax][1] - 1 - padding[ax][0])
                 for ax in range(2))
    out = _conv(lhs, rhs, rhs_dil, pads, (1, 1), lhs_dil, groups)  # [og, kh, kw, G * cg]
    out = out.reshape(og, w_shape[0], w_shape[1], groups, cg)
    return jnp.transpose(out, (1, 2, 4, 3, 0)).reshape(w_shape)
