"""Stateless numerical building blocks shared by every model family.

All tensors are NHWC; weights are HWIO. Semantics follow NVIDIA's official
`upfirdn2d`, `bias_act` and `conv2d_resample` ops so that imported weights give
the official numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.nn.conv import conv2d
from stylegan_jax.nn.fir import upfirdn2d  # noqa: F401 - part of this module's API

# Activation name -> (function, default gain), as in the official bias_act.
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (jax.nn.relu, math.sqrt(2.0)),
    "lrelu": (lambda x: jnp.where(x >= 0, x, x * 0.2), math.sqrt(2.0)),
}

DEFAULT_FILTER = (1, 3, 3, 1)


def activation_gain(activation: str) -> float:
    """The gain that keeps the activation's output variance near its input's."""
    _check_activation(activation)
    return _ACTIVATIONS[activation][1]


def _check_activation(activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}"
        )


def bias_act(
    x: jax.Array,
    bias: jax.Array | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> jax.Array:
    """Adds a per-channel bias (last axis), applies the activation, scales, clamps.

    `gain=None` uses the activation's default gain; `clamp` bounds the output to
    [-clamp, clamp] after the gain, as the official op does.
    """
    _check_activation(activation)
    fn, default_gain = _ACTIVATIONS[activation]
    if bias is not None:
        x = x + bias.astype(x.dtype)
    x = fn(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * jnp.asarray(gain, x.dtype)
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x


def normalize_2nd_moment(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """Scales x to unit mean square along `axis` (also ProGAN's pixel norm)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def setup_filter(taps: Sequence[float] = DEFAULT_FILTER) -> np.ndarray:
    """Separable 2-D low-pass filter from 1-D taps, normalised to unit sum."""
    f = np.asarray(taps, dtype=np.float32)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"filter taps must be a non-empty 1-D sequence, got shape {f.shape}")
    f = np.outer(f, f)
    return f / f.sum()


def upsample2d(x: jax.Array, f: np.ndarray, up: int = 2) -> jax.Array:
    """FIR upsampling by `up` that keeps the signal's gain (official upsample2d)."""
    fw = f.shape[0]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: jax.Array, f: np.ndarray, down: int = 2) -> jax.Array:
    """FIR downsampling by `down` (official downsample2d)."""
    fw = f.shape[0]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def conv2d_resample(
    x: jax.Array,
    w: jax.Array,
    f: np.ndarray | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> jax.Array:
    """2-D convolution fused with FIR up- or downsampling, without wasted work.

    x: [N, H, W, C_in]; w: [kh, kw, C_in / groups, C_out] (HWIO). An upsampling conv
    is one input-dilated (transposed) conv followed by the FIR filter, a downsampling
    conv is the FIR filter followed by a strided conv; a 1x1 conv resamples on the
    cheaper side. As in the official code, upsampling convs apply the kernel as a
    true convolution (flipped), all others as a correlation. The convs are
    `conv.conv2d`: their gradients keep cuDNN-friendly shapes at every order.
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: up and down together are not supported")
    kh, kw = w.shape[0], w.shape[1]

    def conv(x, w, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
        return conv2d(x, w, strides, pads, lhs_dilation=dilation, groups=groups)

    if up == 1 and down == 1:
        p = ((padding, padding), (padding, padding))
        return conv(x, w, pads=p)
    fw = f.shape[0]
    if down > 1:
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kh == 1 and kw == 1:
            return conv(upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1)), w)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return conv(x, w, strides=(down, down))
    # up > 1: convolution with the flipped kernel on the zero-inserted input.
    w = w[::-1, ::-1]
    p0 = padding + (fw + up - 1) // 2
    p1 = padding + (fw - up) // 2
    if kh == 1 and kw == 1:
        return upfirdn2d(conv(x, w), f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    # Pad the dilated input so that conv + FIR see the same samples as FIR + conv:
    # the official order is upsample -> pad(p0, p1) -> FIR -> conv (valid).
    pads = ((p0, p1 + up - 1), (p0, p1 + up - 1))
    x = conv(x, w, pads=pads, dilation=(up, up))
    return upfirdn2d(x, f, gain=up * up)


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    f: np.ndarray | None = None,
    fused: bool = False,
) -> jax.Array:
    """StyleGAN2 modulated convolution.

    x: [N, H, W, I]; weight: [kh, kw, I, O]; styles: [N, I]. The default form scales
    the activations by the styles, runs one shared-weight convolution for the whole
    batch and scales the outputs by the demodulation coefficients: it equals the
    per-sample (`fused=True`, grouped-convolution) form mathematically. Demodulation
    coefficients are computed in float32 whatever x's dtype.
    """
    n = x.shape[0]
    kh, kw, cin, cout = weight.shape
    w32 = weight.astype(jnp.float32)
    s32 = styles.astype(jnp.float32)
    dcoefs = None
    if demodulate:
        # sum over (kh, kw, I) of (w * s)^2 = sum_I s_I^2 * sum_{kh,kw} w^2
        wsq = jnp.sum(jnp.square(w32), axis=(0, 1))  # [I, O]
        dcoefs = jax.lax.rsqrt(jnp.square(s32) @ wsq + 1e-8)  # [N, O]
    if not fused:
        x = x * s32.astype(x.dtype)[:, None, None, :]
        x = conv2d_resample(x, weight.astype(x.dtype), f, up=up, padding=padding)
        if demodulate:
            x = x * dcoefs.astype(x.dtype)[:, None, None, :]
        return x
    # Per-sample weights folded into the channel axis of a batch-1 grouped conv.
    w = w32[None] * s32[:, None, None, :, None]  # [N, kh, kw, I, O]
    if demodulate:
        w = w * dcoefs[:, None, None, None, :]
    w = jnp.transpose(w, (1, 2, 3, 0, 4)).reshape(kh, kw, cin, n * cout)
    h, wd = x.shape[1], x.shape[2]
    xg = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, wd, n * cin)
    y = conv2d_resample(xg, w.astype(x.dtype), f, up=up, padding=padding, groups=n)
    y = y.reshape(y.shape[1], y.shape[2], n, cout)
    return jnp.transpose(y, (2, 0, 1, 3))


def minibatch_stddev(x: jax.Array, group_size: int | None, num_channels: int = 1) -> jax.Array:
    """Appends the minibatch standard deviation as `num_channels` extra channels.

    Samples are grouped with stride N / G (sample i is in group i mod N/G), as the
    official layer does; statistics are float32.
    """
    n, h, w, c = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g != 0:
        raise ValueError(
            f"minibatch_stddev: batch size {n} is not divisible by the group size {g}"
        )
    if c % num_channels != 0:
        raise ValueError(
            f"minibatch_stddev: {c} channels do not split into {num_channels} groups"
        )
    y = x.astype(jnp.float32).reshape(g, n // g, h, w, num_channels, c // num_channels)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n/g, H, W, F, c]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n/g, F]
    y = jnp.tile(y, (g, 1))[:, None, None, :]
    y = jnp.broadcast_to(y, (n, h, w, num_channels)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


# ---------------------------------------------------------------------------------
# Resampling as NVIDIA's TensorFlow ProGAN / StyleGAN (v1) networks do it: nearest
# upscaling, box downscaling, an optional [1, 2, 1] blur, and "fused" convolutions
# that fold the resampling into a transposed or strided convolution.


def upscale2d_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upscaling by an integer factor (official `upscale2d`)."""
    if factor == 1:
        return x
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def downscale2d_box(x: jax.Array, factor: int = 2) -> jax.Array:
    """Box-filter downscaling: the mean of each factor x factor block (official `downscale2d`)."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"downscale2d_box: {h}x{w} does not divide by {factor}")
    return jnp.mean(x.reshape(n, h // factor, factor, w // factor, factor, c), axis=(2, 4))


def column(x: jax.Array, i: int, axis: int = 1) -> jax.Array:
    """x[:, i] (on `axis`) as a static slice: under a symbolic batch (an exported generator)
    indexing lowers to a gather, which TFLite's converter refuses."""
    return jax.lax.index_in_dim(x, i, axis=axis, keepdims=False)


def columns(x: jax.Array, start: int, stop: int, axis: int = 1) -> jax.Array:
    """x[:, start:stop] (on `axis`) as a static slice, as `column`."""
    return jax.lax.slice_in_dim(x, start, stop, axis=axis)


def untruncated(psi) -> bool:
    """ψ is the number 1: truncation is skipped at trace time. A traced ψ (an exported
    generator's input) goes through the formula, and the families select the untouched ws
    where it is 1, so ψ = 1 gives the same images either way."""
    return isinstance(psi, int | float) and psi == 1


def lerp(a: jax.Array, b: jax.Array, t) -> jax.Array:
    """a + (b - a) * t, written as the official `lerp` so rounding matches."""
    return a + (b - a) * t


def blur2d(x: jax.Array, taps: Sequence[float] = (1, 2, 1), normalize: bool = True,
           flip: bool = False) -> jax.Array:
    """StyleGAN v1's low-pass blur: a depthwise correlation with 'SAME' padding.

    The official op correlates (TF depthwise_conv2d) with outer(taps, taps), divided by
    its sum when `normalize`; `flip` mirrors the filter (its gradient uses the flip).
    """
    f = np.asarray(taps, np.float32)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"blur taps must be a non-empty 1-D sequence, got shape {f.shape}")
    f = np.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip:
        f = f[::-1, ::-1]
    k = f.shape[0]
    lo, hi = (k - 1) // 2, k // 2  # TF 'SAME': the odd extra pad goes after
    # upfirdn2d convolves (flips its filter), so hand it the flipped filter to correlate.
    return upfirdn2d(x, f[::-1, ::-1], padding=(lo, hi, lo, hi))


def instance_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Per-sample, per-channel normalisation over H, W in float32 (StyleGAN v1's AdaIN input)."""
    y = x.astype(jnp.float32)
    y = y - jnp.mean(y, axis=(1, 2), keepdims=True)
    y = y * jax.lax.rsqrt(jnp.mean(jnp.square(y), axis=(1, 2), keepdims=True) + eps)
    return y.astype(x.dtype)


def _summed_kernel(w: jax.Array) -> jax.Array:
    """[k, k, I, O] -> [k+1, k+1, I, O]: the sum of the kernel's four one-pixel shifts."""
    w = jnp.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def _conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
    p = w.shape[0] // 2
    return conv2d(x, w, padding=((p, p), (p, p)))


def upscale2d_conv2d(x: jax.Array, w: jax.Array, fused: bool) -> jax.Array:
    """2x upscaling conv of the TF networks (w: HWIO, odd k); the two forms differ.

    `fused=False`: nearest upscaling, then a 'SAME' correlation with w. `fused=True`:
    the official `conv2d_transpose` (stride 2, 'SAME') with the summed (k+1)x(k+1)
    kernel, which equals the separate form with w flipped spatially, so weights trained
    with one form do not carry over to the other (exactly as in the official code).
    """
    if not fused:
        return _conv_same(upscale2d_nearest(x), w)
    w = _summed_kernel(w)
    big = w.shape[0]
    before = (big - 2) // 2  # padding of the stride-2 'SAME' conv this op transposes
    pads = (big - 1 - before, before + 1)
    return conv2d(x, w[::-1, ::-1], padding=(pads, pads), lhs_dilation=(2, 2))


def conv2d_downscale2d(x: jax.Array, w: jax.Array, fused: bool) -> jax.Array:
    """A 'SAME' conv (w: HWIO, odd k) followed by 2x box downscaling, as the TF networks do.

    `fused=True` is the official single-op form: a stride-2 conv with the summed kernel / 4.
    """
    if not fused:
        return downscale2d_box(_conv_same(x, w))
    w = _summed_kernel(w) * 0.25
    big = w.shape[0]
    pads = ((big - 2) // 2, big - 2 - (big - 2) // 2)  # TF 'SAME' for stride 2, even input
    return conv2d(x, w, strides=(2, 2), padding=(pads, pads))
