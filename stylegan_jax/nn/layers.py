"""Equalized-learning-rate layers (Flax linen), shared by every model family.

Parameters are stored at unit scale (initialised N(0, 1) / lr_multiplier) and scaled
at run time by `gain * lr_multiplier / sqrt(fan_in)`, exactly as NVIDIA's code does,
so imported weights are used as they are. Parameter names follow the official ones
(`weight`, `bias`); layouts are ours (Dense [in, out], Conv HWIO).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_jax.nn import ops

RESAMPLE_MODES = ("fir", "fused", "separate")
NOISE_MODES = ("random", "const", "none")  # per-layer noise: drawn, the stored const, none


def check_resolution(resolution: int, field: str = "img_resolution") -> int:
    """Returns log2(resolution); raises for anything but a power of two in 4..1024+."""
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"{field} must be a power of two >= 4, got {resolution!r}")
    return int(math.log2(resolution))


def _normal_init(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * scale

    return init


class Dense(nn.Module):
    """Fully connected layer with equalized learning rate and fused bias + activation.

    `gain` multiplies the weight's runtime scale (ProGAN / StyleGAN v1 put the
    activation's gain there); `act_gain=None` applies the activation's default gain
    after it (StyleGAN2's choice). `out_shape` reshapes each sample's output (e.g. to
    (4, 4, C) for ProGAN's dense 4x4 input) before a bias per last-axis channel.
    """

    features: int
    use_bias: bool = True
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    gain: float = 1.0
    act_gain: float | None = None
    out_shape: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        weight = self.param(
            "weight", _normal_init(1.0 / self.lr_multiplier), (fan_in, self.features)
        )
        w = weight * (self.gain * self.lr_multiplier / math.sqrt(fan_in))
        x = jnp.matmul(x, w.astype(x.dtype))
        bias_shape = (self.features,)
        if self.out_shape is not None:
            if math.prod(self.out_shape) != self.features:
                raise ValueError(
                    f"Dense: out_shape {tuple(self.out_shape)} does not hold "
                    f"features={self.features} outputs"
                )
            x = x.reshape(x.shape[0], *self.out_shape)
            bias_shape = (self.out_shape[-1],)
        b = None
        if self.use_bias:
            bias = self.param("bias", nn.initializers.constant(self.bias_init), bias_shape)
            b = bias * self.lr_multiplier
        return ops.bias_act(x, b, self.activation, gain=self.act_gain)


class Conv2d(nn.Module):
    """2-D convolution with equalized learning rate, FIR resampling, bias + activation.

    Calling with `gain` scales both the activation gain and the clamp, as the
    official layer's `gain` argument does (used by residual blocks with sqrt(0.5)).
    `resample` picks how `up`/`down` resample: "fir" (StyleGAN2: `resample_filter`),
    or the TF ProGAN / StyleGAN v1 forms (factor 2 only, before the bias) "fused"
    (transposed / strided conv with the summed kernel) and "separate" (nearest
    upscaling before the conv / box downscaling after it); see ops.upscale2d_conv2d.
    """

    features: int
    kernel_size: int
    use_bias: bool = True
    activation: str = "linear"
    up: int = 1
    down: int = 1
    resample_filter: Sequence[float] = ops.DEFAULT_FILTER
    conv_clamp: float | None = None
    lr_multiplier: float = 1.0
    weight_gain: float = 1.0
    act_gain: float | None = None
    resample: str = "fir"

    @nn.compact
    def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        weight = self.param(
            "weight", _normal_init(1.0 / self.lr_multiplier), (k, k, cin, self.features)
        )
        scale = self.weight_gain * self.lr_multiplier / math.sqrt(cin * k * k)
        w = (weight * scale).astype(x.dtype)
        if self.resample not in RESAMPLE_MODES:
            raise ValueError(
                f"Conv2d resample must be one of {RESAMPLE_MODES}, got {self.resample!r}"
            )
        if self.resample == "fir" or (self.up == 1 and self.down == 1):
            f = ops.setup_filter(self.resample_filter)
            x = ops.conv2d_resample(x, w, f, up=self.up, down=self.down, padding=k // 2)
        elif (self.up, self.down) == (2, 1):
            x = ops.upscale2d_conv2d(x, w, fused=self.resample == "fused")
        elif (self.up, self.down) == (1, 2):
            x = ops.conv2d_downscale2d(x, w, fused=self.resample == "fused")
        else:
            raise ValueError(
                f"Conv2d resample={self.resample!r} supports up=2 or down=2 only, "
                f"got up={self.up}, down={self.down}"
            )
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
            b = b * self.lr_multiplier
        act_gain = ops.activation_gain(self.activation) if self.act_gain is None else self.act_gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, b, self.activation, gain=act_gain * gain, clamp=clamp)
