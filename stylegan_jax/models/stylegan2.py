"""StyleGAN2 (as in NVIDIA's stylegan2-ada-pytorch): mapping, synthesis, generator, discriminator.

Submodule and parameter names mirror the official state-dict names (`mapping.fc0`,
`synthesis.b8.conv0.affine`, `b4.fc`, ...), so conversion is a layout change only.
Variables: `params` (trainable) and `buffers` (`mapping/w_avg`, `*/noise_const`).

`img_aspect` (height, width multiples; see stylegan_jax.shapes) stretches every feature map
of the square network of side `img_resolution`: (1, 2) gives a 4x8 constant, blocks b4 (4x8)
... bR (R x 2R) and a discriminator whose epilogue ends on 4x8. The layers themselves are
shape-agnostic; only the constant, the noise buffers and the input check know the aspect.
(1, 1) is the official square network, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_jax.nn import ops
from stylegan_jax.nn.layers import NOISE_MODES, Conv2d, Dense, check_resolution
from stylegan_jax.shapes import check_aspect

ARCHITECTURES = ("orig", "skip", "resnet")


def check_architecture(architecture: str, field: str = "architecture") -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{field} must be one of {ARCHITECTURES}, got {architecture!r}")


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


def low_precision_resolution(img_resolution: int, num_bf16_res: int) -> int:
    """Blocks at or above this resolution compute in bfloat16.

    num_bf16_res >= 0 follows the official fp16 rule (the highest num_bf16_res
    resolutions, never the 4x4 blocks); -1 puts every block in bfloat16, the 4x4 ones
    included: a throughput option beyond the official networks.
    """
    log2 = check_resolution(img_resolution)
    if not isinstance(num_bf16_res, int) or num_bf16_res < -1:
        raise ValueError(f"num_bf16_res must be an integer >= -1 (-1: every block), "
                         f"got {num_bf16_res!r}")
    if num_bf16_res == -1:
        return 4
    return max(2 ** (log2 + 1 - num_bf16_res), 8)


def check_remat_resolution(remat_resolution: int, img_resolution: int) -> None:
    """0 (off) or a power of two in [4, img_resolution]."""
    if remat_resolution == 0:
        return
    if (not isinstance(remat_resolution, int) or remat_resolution < 4
            or remat_resolution & (remat_resolution - 1) or remat_resolution > img_resolution):
        raise ValueError(f"remat_resolution must be 0 (off) or a power of two in "
                         f"[4, {img_resolution}], got {remat_resolution!r}")


def num_ws_for(img_resolution: int) -> int:
    """Number of per-layer w vectors the synthesis network consumes."""
    return 2 * check_resolution(img_resolution) - 2


class MappingNetwork(nn.Module):
    """z (and label c) -> w, with `w_avg` tracking and truncation toward it."""

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int | None
    num_layers: int = 8
    embed_features: int | None = None
    layer_features: int | None = None
    activation: str = "lrelu"
    lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.995
    axis_name: str | None = None  # average w over this device axis when updating w_avg

    @nn.compact
    def __call__(
        self,
        z: jax.Array | None,
        c: jax.Array | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> jax.Array:
        embed = self.w_dim if self.embed_features is None else self.embed_features
        hidden = self.w_dim if self.layer_features is None else self.layer_features
        parts = []
        if self.z_dim > 0:
            _check_shape(z, (None, self.z_dim), "z")
            parts.append(ops.normalize_2nd_moment(z.astype(jnp.float32)))
        if self.c_dim > 0:
            _check_shape(c, (None, self.c_dim), "c")
            y = Dense(embed, name="embed")(c.astype(jnp.float32))
            parts.append(ops.normalize_2nd_moment(y))
        x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            features = self.w_dim if idx == self.num_layers - 1 else hidden
            x = Dense(
                features, activation=self.activation, lr_multiplier=self.lr_multiplier,
                name=f"fc{idx}",
            )(x)

        tracks_avg = self.num_ws is not None and self.w_avg_beta is not None
        if tracks_avg:
            w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)
            if update_w_avg and not self.is_initializing():
                batch_mean = jax.lax.stop_gradient(jnp.mean(x, axis=0))
                if self.axis_name is not None:
                    batch_mean = jax.lax.pmean(batch_mean, self.axis_name)
                w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)
        if self.num_ws is not None:
            x = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.num_ws, self.w_dim))
        if not ops.untruncated(truncation_psi):
            if not tracks_avg:
                raise ValueError("truncation needs w_avg tracking (num_ws and w_avg_beta set)")
            avg = w_avg.value
            truncated = jnp.where(truncation_psi == 1, x, avg + truncation_psi * (x - avg))
            if self.num_ws is None or truncation_cutoff is None:
                x = truncated
            else:
                layer = jnp.arange(self.num_ws)[None, :, None]
                x = jnp.where(layer < truncation_cutoff, truncated, x)
        return x


def _check_shape(x, shape: Sequence[int | None], name: str) -> None:
    if x is None or x.ndim != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, x.shape, strict=True)
    ):
        got = None if x is None else tuple(x.shape)
        raise ValueError(f"{name} must have shape {tuple(shape)} (None = any), got {got}")


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x FIR upsampling), noise, bias, activation."""

    features: int
    resolution: int  # of the output's shorter side
    up: int = 1
    aspect: tuple[int, int] = (1, 1)  # the output is [resolution * ah, resolution * aw]
    use_noise: bool = True
    activation: str = "lrelu"
    resample_filter: Sequence[float] = ops.DEFAULT_FILTER
    conv_clamp: float | None = None
    fused_modconv: bool = False

    @nn.compact
    def __call__(self, x, w, noise_mode: str = "random", gain: float = 1.0):
        cin = x.shape[-1]
        styles = Dense(cin, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", nn.initializers.normal(1.0), (3, 3, cin, self.features))
        x = ops.modulated_conv2d(
            x, weight, styles, demodulate=True, up=self.up, padding=1,
            f=ops.setup_filter(self.resample_filter), fused=self.fused_modconv,
        )
        if self.use_noise:
            nh, nw = self.resolution * self.aspect[0], self.resolution * self.aspect[1]
            const = self.variable(
                "buffers", "noise_const",
                lambda: jax.random.normal(self.make_rng("params"), (nh, nw)),
            )
            strength = self.param("noise_strength", nn.initializers.zeros_init(), ())
            if noise_mode == "random":
                noise = jax.random.normal(self.make_rng("noise"), (x.shape[0], nh, nw, 1))
                x = x + (noise * strength).astype(x.dtype)
            elif noise_mode == "const":
                x = x + (const.value[None, :, :, None] * strength).astype(x.dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        act_gain = ops.activation_gain(self.activation) * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, bias, self.activation, gain=act_gain, clamp=clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation; the image branch of a block."""

    channels: int
    conv_clamp: float | None = None
    fused_modconv: bool = False

    @nn.compact
    def __call__(self, x, w):
        cin = x.shape[-1]
        styles = Dense(cin, bias_init=1.0, name="affine")(w) * (1.0 / math.sqrt(cin))
        weight = self.param("weight", nn.initializers.normal(1.0), (1, 1, cin, self.channels))
        x = ops.modulated_conv2d(x, weight, styles, demodulate=False, fused=self.fused_modconv)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.channels,))
        return ops.bias_act(x, bias, "linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | up-conv) + conv + ToRGB."""

    in_channels: int  # 0 = the first (4x4) block
    out_channels: int
    resolution: int  # of the output's shorter side
    img_channels: int
    is_last: bool
    architecture: str = "skip"
    aspect: tuple[int, int] = (1, 1)  # maps are [resolution * ah, resolution * aw]
    resample_filter: Sequence[float] = ops.DEFAULT_FILTER
    conv_clamp: float | None = None
    use_noise: bool = True
    fused_modconv: bool = False
    dtype: jnp.dtype = jnp.float32

    @property
    def num_conv(self) -> int:
        return 1 if self.in_channels == 0 else 2

    @property
    def num_torgb(self) -> int:
        return 1 if (self.is_last or self.architecture == "skip") else 0

    @nn.compact
    def __call__(self, x, img, ws, noise_mode: str = "random"):
        layer = dict(
            resolution=self.resolution, aspect=self.aspect, use_noise=self.use_noise,
            resample_filter=self.resample_filter, conv_clamp=self.conv_clamp,
            fused_modconv=self.fused_modconv,
        )
        f = ops.setup_filter(self.resample_filter)
        if self.in_channels == 0:
            r, (ah, aw) = self.resolution, self.aspect
            const = self.param(
                "const", nn.initializers.normal(1.0), (r * ah, r * aw, self.out_channels)
            )
            x = jnp.broadcast_to(const.astype(self.dtype), (ws.shape[0], *const.shape))
            x = SynthesisLayer(self.out_channels, name="conv1", **layer)(
                x, ops.column(ws, 0), noise_mode
            )
        else:
            x = x.astype(self.dtype)
            conv0 = SynthesisLayer(self.out_channels, up=2, name="conv0", **layer)
            conv1 = SynthesisLayer(self.out_channels, name="conv1", **layer)
            if self.architecture == "resnet":
                y = Conv2d(
                    self.out_channels, 1, use_bias=False, up=2,
                    resample_filter=self.resample_filter, name="skip",
                )(x, gain=math.sqrt(0.5))
                x = conv0(x, ops.column(ws, 0), noise_mode)
                x = y + conv1(x, ops.column(ws, 1), noise_mode, gain=math.sqrt(0.5))
            else:
                x = conv0(x, ops.column(ws, 0), noise_mode)
                x = conv1(x, ops.column(ws, 1), noise_mode)

        if img is not None:
            img = ops.upsample2d(img, f)
        if self.num_torgb:
            y = ToRGB(
                self.img_channels, conv_clamp=self.conv_clamp,
                fused_modconv=self.fused_modconv, name="torgb",
            )(x, ops.column(ws, self.num_conv)).astype(jnp.float32)
            img = y if img is None else img + y
        return x, img


# Rematerialised blocks (jax.checkpoint, saving nothing but the block's inputs): what a
# block keeps for its backward pass is almost all convolution outputs, so a policy that
# saves dots would keep most of what remat is meant to free. The price is one more
# forward pass of those blocks per differentiation. Parameter names are unchanged.
RematSynthesisBlock = nn.remat(SynthesisBlock, static_argnums=(4,))  # 4: noise_mode


class SynthesisNetwork(nn.Module):
    """Per-layer ws [N, num_ws, w_dim] -> image [N, H, W, C] (float32), H x W =
    img_resolution stretched by img_aspect."""

    w_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    conv_clamp: float | None = None
    num_bf16_res: int = 0
    use_noise: bool = True
    fused_modconv: bool = False
    resample_filter: Sequence[float] = ops.DEFAULT_FILTER
    remat_resolution: int = 0  # blocks at and above it rematerialise (0: none)
    img_aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of img_resolution

    @property
    def num_ws(self) -> int:
        return num_ws_for(self.img_resolution)

    @nn.compact
    def __call__(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
        log2 = check_resolution(self.img_resolution)
        aspect = check_aspect(self.img_aspect)
        check_architecture(self.architecture)
        check_remat_resolution(self.remat_resolution, self.img_resolution)
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        _check_shape(ws, (None, self.num_ws, self.w_dim), "ws")
        ws = ws.astype(jnp.float32)
        low_res = low_precision_resolution(self.img_resolution, self.num_bf16_res)
        x = img = None
        w_idx = 0
        for res in (2**i for i in range(2, log2 + 1)):
            remat = 0 < self.remat_resolution <= res
            block = (RematSynthesisBlock if remat else SynthesisBlock)(
                in_channels=0 if res == 4 else self._ch(res // 2),
                out_channels=self._ch(res),
                resolution=res,
                img_channels=self.img_channels,
                is_last=res == self.img_resolution,
                architecture=self.architecture,
                aspect=aspect,
                resample_filter=self.resample_filter,
                conv_clamp=self.conv_clamp,
                use_noise=self.use_noise,
                fused_modconv=self.fused_modconv,
                dtype=jnp.bfloat16 if res >= low_res else jnp.float32,
                name=f"b{res}",
            )
            n = block.num_conv + block.num_torgb
            x, img = block(x, img, ops.columns(ws, w_idx, w_idx + n), noise_mode)
            w_idx += block.num_conv
        return img

    def _ch(self, res: int) -> int:
        return channels_at(res, self.channel_base, self.channel_max)


class Generator(nn.Module):
    """StyleGAN2 generator: `mapping` then `synthesis`.

    Use `Generator.mapping_fn` / `Generator.synthesis_fn` as `apply(..., method=...)`
    to run one half; `__call__` runs both.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    conv_clamp: float | None = None
    num_bf16_res: int = 0
    use_noise: bool = True
    fused_modconv: bool = False
    axis_name: str | None = None
    remat_resolution: int = 0  # synthesis blocks at and above it rematerialise (0: none)
    img_aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of img_resolution

    def setup(self):
        check_resolution(self.img_resolution)
        check_aspect(self.img_aspect)
        check_architecture(self.architecture)
        if self.img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {self.img_channels}")
        self.synthesis = SynthesisNetwork(
            w_dim=self.w_dim, img_resolution=self.img_resolution,
            img_channels=self.img_channels, channel_base=self.channel_base,
            channel_max=self.channel_max, architecture=self.architecture,
            conv_clamp=self.conv_clamp, num_bf16_res=self.num_bf16_res,
            use_noise=self.use_noise, fused_modconv=self.fused_modconv,
            remat_resolution=self.remat_resolution, img_aspect=tuple(self.img_aspect),
        )
        self.mapping = MappingNetwork(
            z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
            num_ws=num_ws_for(self.img_resolution), num_layers=self.mapping_layers,
            lr_multiplier=self.mapping_lr_multiplier, w_avg_beta=self.w_avg_beta,
            axis_name=self.axis_name,
        )

    @property
    def num_ws(self) -> int:
        return num_ws_for(self.img_resolution)

    def mapping_fn(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        return self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)

    def synthesis_fn(self, ws, noise_mode: str = "random", update_emas: bool = False):
        """`update_emas` is accepted for parity with StyleGAN3's: this synthesis keeps no
        running statistics."""
        return self.synthesis(ws, noise_mode)

    def __call__(self, z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random",
                 update_w_avg=False):
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)
        return self.synthesis(ws, noise_mode)


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (FromRGB) + conv + down-conv (+ skip)."""

    in_channels: int  # 0 = the first (highest-resolution) block
    tmp_channels: int
    out_channels: int
    img_channels: int
    architecture: str = "resnet"
    activation: str = "lrelu"
    resample_filter: Sequence[float] = ops.DEFAULT_FILTER
    conv_clamp: float | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, img):
        common = dict(activation=self.activation, conv_clamp=self.conv_clamp)
        if x is not None:
            x = x.astype(self.dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = Conv2d(self.tmp_channels, 1, name="fromrgb", **common)(img.astype(self.dtype))
            x = y if x is None else x + y
            img = (
                ops.downsample2d(img, ops.setup_filter(self.resample_filter))
                if self.architecture == "skip" else None
            )
        conv0 = Conv2d(self.tmp_channels, 3, name="conv0", **common)
        conv1 = Conv2d(
            self.out_channels, 3, down=2, resample_filter=self.resample_filter, name="conv1",
            **common,
        )
        if self.architecture == "resnet":
            y = Conv2d(
                self.out_channels, 1, use_bias=False, down=2,
                resample_filter=self.resample_filter, name="skip",
            )(x, gain=math.sqrt(0.5))
            x = y + conv1(conv0(x), gain=math.sqrt(0.5))
        else:
            x = conv1(conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """4x4 head (4·ah x 4·aw for a rectangle): (FromRGB), minibatch stddev, conv, fc, out,
    label projection.

    `fc` reads the conv output flattened in (h, w, c) order, whatever the map's shape: its
    weight rows are the official NCHW-flattened (c, h, w) rows permuted, as convert/ does
    for the square head.
    """

    in_channels: int
    cmap_dim: int
    img_channels: int
    architecture: str = "resnet"
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    activation: str = "lrelu"
    conv_clamp: float | None = None
    dtype: jnp.dtype = jnp.float32  # of the convs; bfloat16 only with num_bf16_res=-1

    @nn.compact
    def __call__(self, x, img, cmap):
        x = x.astype(self.dtype)
        if self.architecture == "skip":
            x = x + Conv2d(self.in_channels, 1, activation=self.activation, name="fromrgb")(
                img.astype(self.dtype)
            )
        if self.mbstd_num_channels > 0:  # statistics in float32 whatever the dtype
            x = ops.minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = Conv2d(
            self.in_channels, 3, activation=self.activation, conv_clamp=self.conv_clamp,
            name="conv",
        )(x)
        # The dense head stays float32: little work, and it sets the logits the loss uses.
        x = Dense(self.in_channels, activation=self.activation, name="fc")(
            x.reshape(x.shape[0], -1).astype(jnp.float32)
        )
        x = Dense(1 if self.cmap_dim == 0 else self.cmap_dim, name="out")(x)
        if self.cmap_dim > 0:
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1.0 / math.sqrt(self.cmap_dim))
        return x


# Rematerialised discriminator blocks (see RematSynthesisBlock for the policy).
RematDiscriminatorBlock = nn.remat(DiscriminatorBlock)
RematDiscriminatorEpilogue = nn.remat(DiscriminatorEpilogue)


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: image [N, H, W, C] (+ labels [N, c_dim]) -> logits [N, 1];
    H x W is img_resolution stretched by img_aspect."""

    c_dim: int
    img_resolution: int
    img_channels: int
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    num_bf16_res: int = 0
    conv_clamp: float | None = None
    cmap_dim: int | None = None
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    mapping_layers: int = 8
    remat_resolution: int = 0  # blocks (b4: the epilogue) at and above it rematerialise
    img_aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of img_resolution

    @nn.compact
    def __call__(self, img: jax.Array, c: jax.Array | None) -> jax.Array:
        log2 = check_resolution(self.img_resolution)
        if log2 < 3:
            raise ValueError(
                f"Discriminator img_resolution must be >= 8 (as the official one), "
                f"got {self.img_resolution}"
            )
        ah, aw = check_aspect(self.img_aspect)
        check_architecture(self.architecture)
        check_remat_resolution(self.remat_resolution, self.img_resolution)
        r = self.img_resolution
        _check_shape(img, (None, r * ah, r * aw, self.img_channels), "img")
        ch = lambda res: channels_at(res, self.channel_base, self.channel_max)  # noqa: E731
        low_res = low_precision_resolution(self.img_resolution, self.num_bf16_res)
        remat = lambda res: 0 < self.remat_resolution <= res  # noqa: E731
        x = None
        for res in (2**i for i in range(log2, 2, -1)):
            x, img = (RematDiscriminatorBlock if remat(res) else DiscriminatorBlock)(
                in_channels=0 if res == self.img_resolution else ch(res),
                tmp_channels=ch(res),
                out_channels=ch(res // 2),
                img_channels=self.img_channels,
                architecture=self.architecture,
                conv_clamp=self.conv_clamp,
                dtype=jnp.bfloat16 if res >= low_res else jnp.float32,
                name=f"b{res}",
            )(x, img)
        cmap_dim = 0 if self.c_dim == 0 else (ch(4) if self.cmap_dim is None else self.cmap_dim)
        cmap = None
        if self.c_dim > 0:
            cmap = MappingNetwork(
                z_dim=0, c_dim=self.c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                num_layers=self.mapping_layers, name="mapping",
            )(None, c)
        return (RematDiscriminatorEpilogue if remat(4) else DiscriminatorEpilogue)(
            in_channels=ch(4), cmap_dim=cmap_dim, img_channels=self.img_channels,
            architecture=self.architecture, mbstd_group_size=self.mbstd_group_size,
            mbstd_num_channels=self.mbstd_num_channels, conv_clamp=self.conv_clamp,
            dtype=jnp.bfloat16 if low_res <= 4 else jnp.float32, name="b4",
        )(x, img, cmap)
