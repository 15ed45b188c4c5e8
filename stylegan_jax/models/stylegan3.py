"""StyleGAN3 (alias-free) generator, as NVIDIA's `training/networks_stylegan3.py`.

Submodule and variable names mirror the official state dict (`mapping.fc0`,
`synthesis.input.affine`, `synthesis.L5_52_32.weight`, ...), so conversion is a layout
change only. Variables: `params` and `buffers` (`mapping/w_avg`, the input's `freqs`,
`phases` and user `transform`, every layer's `magnitude_ema`). The per-layer filters
are not variables: they follow from the constructor arguments (`layer_specs`) exactly
as the official `__init__` designs them, and the converter checks a pickle's against
them.

`stylegan3-t` is `conv_kernel=3, use_radial_filters=False`; `stylegan3-r` is
`conv_kernel=1, use_radial_filters=True` with doubled `channel_base` / `channel_max`.

`img_aspect` (height, width multiples of `img_resolution`; see stylegan_jax.shapes) makes a
W x H network: the square one whose every layer covers `aspect` times the square's signal
per axis. NVIDIA's layers take [width, height] sizes; along an axis of multiple a a layer is
sampling_rate * a + 2 * margin samples (the last two layers R * a), the Fourier input's
grid spans size / sampling_rate input units, and cutoffs, filters and channels are the
square network's. Layer names and every variable's shape are the square network's (the
shorter side's sizes), so square weights load into a W x H network unchanged.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.models.stylegan2 import MappingNetwork, check_resolution
from stylegan_jax.nn import ops
from stylegan_jax.nn.filter_design import design_lowpass
from stylegan_jax.nn.filtered_lrelu import filtered_lrelu
from stylegan_jax.nn.layers import Dense
from stylegan_jax.shapes import check_aspect

NOISE_MODES = ("random", "const", "none")  # accepted for API parity; StyleGAN3 has no noise


class LayerSpec(NamedTuple):
    """One synthesis layer's static design (official SynthesisLayer.__init__)."""

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int  # along the shorter side (the square network's size; names the layer)
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up: int
    down: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) on the upsampled image
    in_hw: tuple[int, int]  # (height, width) of the input and output feature maps
    out_hw: tuple[int, int]

    def up_filter(self) -> np.ndarray | None:
        return design_lowpass(self.up_taps, self.in_cutoff, self.in_half_width * 2,
                              self.in_sampling_rate * self.up)

    def down_filter(self) -> np.ndarray | None:
        return design_lowpass(self.down_taps, self.out_cutoff, self.out_half_width * 2,
                              self.out_sampling_rate * self.down, radial=self.down_radial)


class InputSpec(NamedTuple):
    channels: int
    size: int  # along the shorter side
    sampling_rate: float
    bandwidth: float
    hw: tuple[int, int]  # (height, width) of the Fourier features


def layer_specs(
    img_resolution: int,
    img_channels: int,
    channel_base: int = 32768,
    channel_max: int = 512,
    num_layers: int = 14,
    num_critical: int = 2,
    first_cutoff: float = 2,
    first_stopband: float = 2**2.1,
    last_stopband_rel: float = 2**0.3,
    margin_size: int = 10,
    conv_kernel: int = 3,
    filter_size: int = 6,
    lrelu_upsampling: int = 2,
    use_radial_filters: bool = False,
    aspect: tuple[int, int] = (1, 1),
) -> tuple[InputSpec, list[LayerSpec]]:
    """The official progression: cutoffs and minimum stopbands grow geometrically from
    the first layer to the last non-critical one; sampling rates, transition bands,
    sizes (with margin), channels, resampling factors, filter lengths and paddings
    follow from them. `aspect` (height, width multiples) sizes each axis: sampling
    rate * multiple + 2 * margin (the last two layers img_resolution * multiple), padded
    per axis as the official layer pads its [width, height]."""
    check_resolution(img_resolution)
    ah, aw = check_aspect(aspect)
    if num_layers <= num_critical:
        raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
    if conv_kernel < 1:
        raise ValueError(f"conv_kernel must be >= 1, got {conv_kernel}")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    # Per axis (x, y), as the official [width, height] sizes.
    sizes = np.stack([sampling_rates * a + margin_size * 2 for a in (aw, ah)], 1)
    sizes[-2:] = [img_resolution * aw, img_resolution * ah]
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels

    def hw(i):
        return int(sizes[i, 1]), int(sizes[i, 0])

    short = sizes[:, 0 if aw <= ah else 1].astype(int)
    inp = InputSpec(int(channels[0]), int(short[0]), float(sampling_rates[0]),
                    float(cutoffs[0]), hw(0))
    specs = []
    for idx in range(num_layers + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == num_layers
        critical = idx >= num_layers - num_critical
        in_rate, out_rate = int(sampling_rates[prev]), int(sampling_rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else lrelu_upsampling)
        kernel = 1 if is_torgb else conv_kernel
        up, down = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
        up_taps = filter_size * up if up > 1 and not is_torgb else 1
        down_taps = filter_size * down if down > 1 and not is_torgb else 1
        # Appendix C.3: shift the sample grid to the symmetric interpretation (per axis).
        pad_total = (sizes[idx] - 1) * down + 1 - (sizes[prev] + kernel - 1) * up
        pad_total = pad_total.astype(int) + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        in_size, out_size = int(short[prev]), int(short[idx])
        specs.append(LayerSpec(
            name=f"L{idx}_{out_size}_{int(channels[idx])}", is_torgb=is_torgb,
            is_critically_sampled=critical, in_channels=int(channels[prev]),
            out_channels=int(channels[idx]), in_size=in_size, out_size=out_size,
            in_sampling_rate=in_rate, out_sampling_rate=out_rate,
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
            conv_kernel=kernel, up=up, down=down, up_taps=up_taps, down_taps=down_taps,
            down_radial=bool(use_radial_filters and not critical),
            padding=(int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])),
            in_hw=hw(prev), out_hw=hw(idx),
        ))
    return inp, specs


def _fourier_freqs(key, channels: int, bandwidth: float) -> tuple[jax.Array, jax.Array]:
    """Random frequencies in the disc of radius `bandwidth` (the official draw: normal
    directions, radii squashed by exp(r^2)^(1/4)) and phases uniform in [-0.5, 0.5)."""
    kf, kp = jax.random.split(key)
    freqs = jax.random.normal(kf, (channels, 2))
    radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
    freqs = freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * bandwidth
    phases = jax.random.uniform(kp, (channels,)) - 0.5
    return freqs, phases


class TransformAffine(nn.Module):
    """w -> (r_c, r_s, t_x, t_y): equalized-lr dense layer that starts at the identity
    transform (weight 0, bias [1, 0, 0, 0]), as the official `input.affine`."""

    @nn.compact
    def __call__(self, w: jax.Array) -> jax.Array:
        weight = self.param("weight", nn.initializers.zeros_init(), (w.shape[-1], 4))
        bias = self.param("bias", lambda *_: jnp.array([1.0, 0.0, 0.0, 0.0]))
        return w @ (weight * (1 / math.sqrt(w.shape[-1]))) + bias


class SynthesisInput(nn.Module):
    """Fourier features [N, height, width, C], rotated and translated per sample by an
    affine of w, after the user's inverse `transform` (3x3, in input units: the image's
    shorter side is 1)."""

    channels: int
    size: int  # along the shorter side
    sampling_rate: float
    bandwidth: float
    hw: tuple[int, int] | None = None  # (height, width); None: size x size

    @nn.compact
    def __call__(self, w: jax.Array) -> jax.Array:
        c = self.channels
        init = lambda: _fourier_freqs(self.make_rng("params"), c, self.bandwidth)  # noqa: E731
        drawn = None if self.has_variable("buffers", "freqs") else init()
        freqs = self.variable("buffers", "freqs", lambda: drawn[0]).value
        phases = self.variable("buffers", "phases", lambda: drawn[1]).value
        user = self.variable("buffers", "transform", lambda: jnp.eye(3)).value
        weight = self.param("weight", nn.initializers.normal(1.0), (c, c))

        t = TransformAffine(name="affine")(w)
        t = t / jnp.linalg.norm(ops.columns(t, 0, 2), axis=1, keepdims=True)
        rc, rs, tx, ty = (ops.column(t, i) for i in range(4))
        # Inverse rotation, then inverse translation, then the user's transform; rows 0-1
        # of that matrix product, written out: the products are per image 3x3 and 2x2
        # ones, which batched matmuls would turn into reshapes ONNX runtimes get wrong
        # under a dynamic batch.
        rt = [jnp.stack([rc, -rs, -rc * tx + rs * ty], 1),  # [N, 3] each
              jnp.stack([rs, rc, -rs * tx - rc * ty], 1)]
        m = [sum(ops.column(row, j)[:, None] * user[j] for j in range(3))
             for row in rt]  # rows 0 and 1, [N, 3] each
        phases = phases[None] + sum(freqs[None, :, k] * ops.column(m[k], 2)[:, None]
                                    for k in range(2))  # [N, C]
        freqs = sum(freqs[None, :, k, None] * ops.columns(m[k], 0, 2)[:, None, :]
                    for k in range(2))  # [N, C, 2]
        # Fade out frequencies the user transform pushed beyond the band.
        amplitudes = jnp.clip(1 - (jnp.linalg.norm(freqs, axis=2) - self.bandwidth)
                              / (self.sampling_rate / 2 - self.bandwidth), 0, 1)
        # Pixel centres in units of the sampling rate (affine_grid, align_corners=False).
        h, w = self.hw or (self.size, self.size)
        gx, gy = np.meshgrid(*((np.arange(n) + 0.5 - n / 2) / self.sampling_rate
                               for n in (w, h)))  # [H, W]: x varies along W
        grid = jnp.asarray(np.stack([gx, gy], -1), jnp.float32)  # [H, W, 2]
        x = sum(grid[None, :, :, k, None] * ops.column(freqs, k, axis=2)[:, None, None, :]
                for k in range(2)) + phases[:, None, None, :]  # [N, H, W, C]
        x = jnp.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        # A 1x1 convolution: a matmul on NHWC would reshape through the batch, which ONNX
        # runtimes get wrong under a dynamic batch.
        w = (weight * (1 / math.sqrt(c)))[None, None]
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


def modulated_conv(x, weight, styles, demodulate: bool, padding: int, input_gain,
                   per_image_styles: bool = False):
    """StyleGAN3's modulated conv: with demodulation, weights and styles are first
    normalised to unit RMS (styles over the whole batch, as the official code does, or
    with `per_image_styles` over each image's own: every image as in a batch of one);
    the input gain scales the modulated weights after demodulation."""
    if demodulate:
        w32 = weight.astype(jnp.float32)
        weight = w32 * jax.lax.rsqrt(jnp.mean(jnp.square(w32), axis=(0, 1, 2), keepdims=True))
        styles = styles * jax.lax.rsqrt(jnp.mean(jnp.square(styles), axis=-1 if
                                                 per_image_styles else None, keepdims=True))
    x = ops.modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=padding)
    return x * input_gain.astype(x.dtype)


class SynthesisLayer(nn.Module):
    """Modulated conv (k x k, padded by k - 1), bias, filtered leaky ReLU; the last
    layer (ToRGB) is a 1x1 conv without demodulation or non-linearity."""

    spec: LayerSpec
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999
    dtype: jnp.dtype = jnp.float32
    axis_name: str | None = None  # average the input magnitude over this device axis
    per_image_styles: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, update_emas: bool = False) -> jax.Array:
        s = self.spec
        if x.shape[1:] != (*s.in_hw, s.in_channels):
            raise ValueError(f"{s.name}: input must be [N, {s.in_hw[0]}, {s.in_hw[1]}, "
                             f"{s.in_channels}], got {tuple(x.shape)}")
        ema = self.variable("buffers", "magnitude_ema", lambda: jnp.ones((), jnp.float32))
        if update_emas and not self.is_initializing():
            cur = jnp.mean(jnp.square(jax.lax.stop_gradient(x).astype(jnp.float32)))
            if self.axis_name is not None:
                cur = jax.lax.pmean(cur, self.axis_name)
            ema.value = cur + self.magnitude_ema_beta * (ema.value - cur)
        input_gain = jax.lax.rsqrt(ema.value)

        styles = Dense(s.in_channels, bias_init=1.0, name="affine")(w)
        k = s.conv_kernel
        if s.is_torgb:
            styles = styles * (1 / math.sqrt(s.in_channels * k * k))
        weight = self.param("weight", nn.initializers.normal(1.0),
                            (k, k, s.in_channels, s.out_channels))
        bias = self.param("bias", nn.initializers.zeros_init(), (s.out_channels,))
        x = modulated_conv(x.astype(self.dtype), weight, styles, not s.is_torgb, k - 1,
                           input_gain, self.per_image_styles)
        # Only the convolution runs in `dtype`: the filters in bfloat16 (8-bit taps) put
        # the 32 px reference images 4-9 % off instead of 2 %.
        x = filtered_lrelu(
            x.astype(jnp.float32), s.up_filter(), s.down_filter(), bias, up=s.up, down=s.down,
            padding=s.padding, gain=1 if s.is_torgb else math.sqrt(2),
            slope=1 if s.is_torgb else 0.2, clamp=self.conv_clamp,
        )
        return x


class SynthesisNetwork(nn.Module):
    """Per-layer ws [N, num_layers + 2, w_dim] -> image [N, H, W, C] (float32), H x W
    the img_resolution square stretched by img_aspect."""

    w_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999
    num_bf16_res: int = 0
    axis_name: str | None = None
    per_image_styles: bool = False
    img_aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of img_resolution

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def specs(self) -> tuple[InputSpec, list[LayerSpec]]:
        return layer_specs(
            self.img_resolution, self.img_channels, self.channel_base, self.channel_max,
            num_layers=self.num_layers, num_critical=self.num_critical,
            margin_size=self.margin_size, conv_kernel=self.conv_kernel,
            use_radial_filters=self.use_radial_filters, aspect=self.img_aspect,
        )

    @nn.compact
    def __call__(self, ws: jax.Array, update_emas: bool = False) -> jax.Array:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape (N, {self.num_ws}, {self.w_dim}), "
                             f"got {tuple(ws.shape)}")
        if not isinstance(self.num_bf16_res, int) or self.num_bf16_res < -1:
            raise ValueError(f"num_bf16_res must be an integer >= -1 (-1: every layer), "
                             f"got {self.num_bf16_res!r}")
        ws = ws.astype(jnp.float32)
        inp, specs = self.specs()
        x = SynthesisInput(*inp, name="input")(ops.column(ws, 0))
        for idx, spec in enumerate(specs):
            # The official fp16 rule, on sampling rates: the num_bf16_res highest.
            low = self.num_bf16_res == -1 or (
                spec.out_sampling_rate * 2**self.num_bf16_res > self.img_resolution)
            x = SynthesisLayer(
                spec, conv_clamp=self.conv_clamp, magnitude_ema_beta=self.magnitude_ema_beta,
                dtype=jnp.bfloat16 if low and self.num_bf16_res != 0 else jnp.float32,
                axis_name=self.axis_name, per_image_styles=self.per_image_styles,
                name=spec.name,
            )(x, ops.column(ws, idx + 1), update_emas)
        if self.output_scale != 1:
            x = x * jnp.asarray(self.output_scale, x.dtype)
        return x.astype(jnp.float32)


class Generator(nn.Module):
    """StyleGAN3 generator: `mapping` (StyleGAN2's, 2 layers, w_avg beta 0.998) then
    `synthesis`. `update_emas=True` (with mutable=['buffers']) updates w_avg and every
    layer's magnitude_ema, as the official generator does in training. Images are
    [N, img_resolution * ah, img_resolution * aw, img_channels], (ah, aw) = img_aspect."""

    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.998
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999
    num_bf16_res: int = 0
    axis_name: str | None = None
    # Styles normalised per image instead of over the batch (the official rule): every image
    # as if rendered alone, in one batched program (exported generators).
    per_image_styles: bool = False
    img_aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of img_resolution

    def setup(self):
        check_resolution(self.img_resolution)
        aspect = check_aspect(self.img_aspect)
        if self.img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {self.img_channels}")
        self.synthesis = SynthesisNetwork(
            w_dim=self.w_dim, img_resolution=self.img_resolution,
            img_channels=self.img_channels, channel_base=self.channel_base,
            channel_max=self.channel_max, num_layers=self.num_layers,
            num_critical=self.num_critical, margin_size=self.margin_size,
            output_scale=self.output_scale, conv_kernel=self.conv_kernel,
            use_radial_filters=self.use_radial_filters, conv_clamp=self.conv_clamp,
            magnitude_ema_beta=self.magnitude_ema_beta, num_bf16_res=self.num_bf16_res,
            axis_name=self.axis_name, per_image_styles=self.per_image_styles,
            img_aspect=aspect,
        )
        self.mapping = MappingNetwork(
            z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, num_ws=self.num_ws,
            num_layers=self.mapping_layers, lr_multiplier=self.mapping_lr_multiplier,
            w_avg_beta=self.w_avg_beta, axis_name=self.axis_name,
        )

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def mapping_fn(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        return self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)

    def synthesis_fn(self, ws, noise_mode: str = "const", update_emas: bool = False):
        """`noise_mode` is accepted (and checked) as for the other families; unused."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        return self.synthesis(ws, update_emas)

    def __call__(self, z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
                 update_emas=False):
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas)
        return self.synthesis_fn(ws, noise_mode, update_emas)
