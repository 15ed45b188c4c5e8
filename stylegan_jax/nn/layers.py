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


def _normal_init(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * scale

    return init


class Dense(nn.Module):
    """Fully connected layer with equalized learning rate and fused bias + activation.

    `gain` multiplies the weight's runtime scale (ProGAN / StyleGAN v1 put the
    activation's gain there); `act_gain=None` applies the activation's default gain
    after it (StyleGAN2's choice).
    """

    features: int
    use_bias: bool = True
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    gain: float = 1.0
    act_gain: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        weight = self.param(
            "weight", _normal_init(1.0 / self.lr_multiplier), (fan_in, self.features)
        )
        w = weight * (self.gain * self.lr_multiplier / math.sqrt(fan_in))
        x = jnp.matmul(x, w.astype(x.dtype))
        b = None
        if self.use_bias:
            bias = self.param(
                "bias", nn.initializers.constant(self.bias_init), (self.features,)
            )
            b = bias * self.lr_multiplier
        return ops.bias_act(x, b, self.activation, gain=self.act_gain)


class Conv2d(nn.Module):
    """2-D convolution with equalized learning rate, FIR resampling, bias + activation.

    Calling with `gain` scales both the activation gain and the clamp, as the
    official layer's `gain` argument does (used by residual blocks with sqrt(0.5)).
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

    @nn.compact
    def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        weight = self.param(
            "weight", _normal_init(1.0 / self.lr_multiplier), (k, k, cin, self.features)
        )
        scale = self.weight_gain * self.lr_multiplier / math.sqrt(cin * k * k)
        f = ops.setup_filter(self.resample_filter)
        x = ops.conv2d_resample(
            x, (weight * scale).astype(x.dtype), f, up=self.up, down=self.down,
            padding=k // 2,
        )
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
            b = b * self.lr_multiplier
        act_gain = ops.activation_gain(self.activation) if self.act_gain is None else self.act_gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, b, self.activation, gain=act_gain * gain, clamp=clamp)
