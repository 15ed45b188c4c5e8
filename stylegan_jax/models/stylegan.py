"""StyleGAN v1 (NVIDIA's TensorFlow `G_style` = `G_mapping` + `G_synthesis`, and `D_basic`).

Progressive growing (the `lod` input) follows the official recursive structure shared
with ProGAN (models/progan.py). Submodule and variable names are the official TF ones
(`G_mapping/Dense0`, `G_synthesis/8x8/Conv0_up/StyleMod`, `G_synthesis/noise3`,
`dlatent_avg`, `FromRGB_lod1`, ...); module fields are the official kwargs with their
official defaults (`fused_scale='auto'`: fused resampling from 128x128 up;
`blur_filter=(1, 2, 1)`). Variables: `params` and `buffers` (`dlatent_avg`, the
stored noise inputs `G_synthesis/noise<i>`). `img_aspect` makes them W x H (see
models/progan.py): the constant and the noise inputs are stretched by it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_jax.models.progan import (
    SQRT2,
    OfficialShape,
    as_lod,
    check_shape,
    floor_lod,
    grow_images,
    grow_scores,
    num_features,
    scope,
)
from stylegan_jax.nn import ops
from stylegan_jax.nn.layers import NOISE_MODES, Conv2d, Dense, check_resolution
from stylegan_jax.shapes import check_aspect

NONLINEARITIES = ("lrelu", "relu")
FUSED_SCALES = (True, False, "auto")


def _check_options(nonlinearity: str, fused_scale, blur_filter) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    if not any(fused_scale is v or (isinstance(v, str) and fused_scale == v)
               for v in FUSED_SCALES):
        raise ValueError(f"fused_scale must be one of {FUSED_SCALES}, got {fused_scale!r}")
    if blur_filter is not None and (len(blur_filter) == 0 or sum(blur_filter) == 0):
        raise ValueError(f"blur_filter must be None or non-empty taps, got {blur_filter!r}")


def resample_mode(fused_scale, res_log2: int) -> str:
    """The Conv2d resample mode of a block: 'auto' fuses from 128x128 up, as officially."""
    fused = 2**res_log2 >= 128 if fused_scale == "auto" else bool(fused_scale)
    return "fused" if fused else "separate"


def num_style_layers(resolution: int) -> int:
    """Synthesis layers (= dlatent vectors): two per resolution from 4x4."""
    return 2 * check_resolution(resolution, "resolution") - 2


class LabelConcat(nn.Module):
    """Label embedding of G_mapping: labels @ weight (unit-normal, not rescaled)."""

    latent_size: int

    @nn.compact
    def __call__(self, labels):
        w = self.param("weight", nn.initializers.normal(1.0), (labels.shape[1], self.latent_size))
        return labels @ w


class MappingNetwork(nn.Module):
    """`G_mapping`: latents [N, z] (+ labels [N, c]) -> dlatents [N, num_layers, w]."""

    num_layers: int
    latent_size: int = 512
    label_size: int = 0
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    mapping_nonlinearity: str = "lrelu"
    normalize_latents: bool = True

    @nn.compact
    def __call__(self, latents, labels):
        x = latents.astype(jnp.float32)
        if self.label_size:
            y = LabelConcat(self.latent_size, name="LabelConcat")(labels.astype(jnp.float32))
            x = jnp.concatenate([x, y], axis=1)
        if self.normalize_latents:
            x = ops.normalize_2nd_moment(x)
        for i in range(self.mapping_layers):
            fmaps = self.dlatent_size if i == self.mapping_layers - 1 else self.mapping_fmaps
            x = Dense(fmaps, activation=self.mapping_nonlinearity, gain=SQRT2, act_gain=1.0,
                      lr_multiplier=self.mapping_lrmul, name=f"Dense{i}")(x)
        return jnp.broadcast_to(x[:, None], (x.shape[0], self.num_layers, x.shape[1]))


class NoiseStrength(nn.Module):
    """Per-channel noise strength (the official `Noise/weight`)."""

    channels: int

    @nn.compact
    def __call__(self, x, noise):
        weight = self.param("weight", nn.initializers.zeros_init(), (self.channels,))
        return x + noise * weight


class SynthesisLayer(nn.Module):
    """(learned const | conv [2x up-conv + blur]), noise, bias, act, norms, AdaIN style.

    The official `layer_epilogue` with its conv: the scope `Const`, `Conv`, `Conv0_up`
    or `Conv1` holds `weight` / `const`, `bias`, `Noise/weight` and `StyleMod/*`.
    """

    features: int
    kind: str  # "const", "conv" or "up"
    resample: str = "separate"
    blur_filter: tuple[float, ...] | None = (1, 2, 1)
    use_noise: bool = True
    nonlinearity: str = "lrelu"
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    const_shape: tuple[int, int] = (4, 4)  # (height, width) of the learned constant

    def setup(self):
        if self.kind == "const":
            self.const = self.param("const", nn.initializers.ones_init(),
                                    (*self.const_shape, self.features))
        else:
            self.conv = Conv2d(self.features, 3, use_bias=False, weight_gain=SQRT2,
                               up=2 if self.kind == "up" else 1, resample=self.resample)
            nn.share_scope(self, self.conv)  # `weight` lives in this layer's own scope
        if self.use_noise:
            self.noise_strength = NoiseStrength(self.features, name="Noise")
        self.bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        self.style = Dense(2 * self.features, gain=1.0, name="StyleMod")

    def __call__(self, x, dlatent, noise):
        """x: [N, H, W, C] (ignored by `const`); dlatent: [N, w]; noise: [N|1, H, W, 1] | None."""
        if self.kind == "const":
            x = jnp.broadcast_to(self.const, (dlatent.shape[0], *self.const.shape))
        else:
            x = self.conv(x)
            if self.kind == "up" and self.blur_filter:
                x = ops.blur2d(x, self.blur_filter)
        if noise is not None and self.use_noise:
            x = self.noise_strength(x, noise)
        x = ops.bias_act(x, self.bias, self.nonlinearity, gain=1.0)
        if self.use_pixel_norm:
            x = ops.normalize_2nd_moment(x)
        if self.use_instance_norm:
            x = ops.instance_norm(x)
        style = self.style(dlatent)
        style = style[:, None, None, :]  # static slices (exportable), not indexing
        scale = ops.columns(style, 0, self.features, axis=3)
        shift = ops.columns(style, self.features, 2 * self.features, axis=3)
        return x * (scale + 1) + shift


class SynthesisBlock(nn.Module):
    """One resolution of `G_synthesis`: (Const, Conv) at 4x4, else (Conv0_up, Conv1)."""

    res: int
    fmaps: int
    resample: str = "separate"
    blur_filter: tuple[float, ...] | None = (1, 2, 1)
    use_noise: bool = True
    nonlinearity: str = "lrelu"
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    const_shape: tuple[int, int] = (4, 4)

    def setup(self):
        common = dict(
            blur_filter=self.blur_filter, use_noise=self.use_noise,
            nonlinearity=self.nonlinearity, use_pixel_norm=self.use_pixel_norm,
            use_instance_norm=self.use_instance_norm,
        )
        if self.res == 2:
            self.first = SynthesisLayer(self.fmaps, "const", name="Const",
                                        const_shape=self.const_shape, **common)
            self.second = SynthesisLayer(self.fmaps, "conv", name="Conv", **common)
        else:
            self.first = SynthesisLayer(self.fmaps, "up", self.resample, name="Conv0_up",
                                        **common)
            self.second = SynthesisLayer(self.fmaps, "conv", name="Conv1", **common)

    def __call__(self, x, dlatents, noise):
        """dlatents: [N, 2, w], this block's two; noise: two [N|1, H, W, 1] or None."""
        x = self.first(x, ops.column(dlatents, 0), noise[0])
        return self.second(x, ops.column(dlatents, 1), noise[1])


class SynthesisNetwork(nn.Module):
    """`G_synthesis`: dlatents [N, num_layers, w], lod -> images [N, H, W, C]."""

    dlatent_size: int = 512
    num_channels: int = 3
    resolution: int = 1024
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    use_noise: bool = True
    nonlinearity: str = "lrelu"
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    fused_scale: bool | str = "auto"
    blur_filter: tuple[float, ...] | None = (1, 2, 1)
    aspect: tuple[int, int] = (1, 1)  # maps are [res * ah, res * aw]

    def setup(self):
        log2 = check_resolution(self.resolution, "resolution")
        ah, aw = check_aspect(self.aspect, "img_aspect")
        if log2 < 3:
            raise ValueError(f"StyleGAN resolution must be >= 8 (as the official recursive "
                             f"structure), got {self.resolution}")
        _check_options(self.nonlinearity, self.fused_scale, self.blur_filter)
        common = dict(
            blur_filter=None if self.blur_filter is None else tuple(self.blur_filter),
            use_noise=self.use_noise, nonlinearity=self.nonlinearity,
            use_pixel_norm=self.use_pixel_norm, use_instance_norm=self.use_instance_norm,
        )
        self.blocks = {
            scope(r): SynthesisBlock(
                res=r, fmaps=num_features(r - 1, self.fmap_base, self.fmap_decay, self.fmap_max),
                resample=resample_mode(self.fused_scale, r), const_shape=(4 * ah, 4 * aw),
                name=scope(r), **common,
            )
            for r in range(2, log2 + 1)
        }
        self.torgbs = {
            scope(r): Conv2d(self.num_channels, 1, weight_gain=1.0, name=f"ToRGB_lod{log2 - r}")
            for r in range(2, log2 + 1)
        }
        if self.use_noise:
            self.noise_inputs = [
                self.variable("buffers", f"noise{i}", _unit_normal(self, self._noise_shape(i)))
                for i in range(self.num_layers)
            ]

    @property
    def num_layers(self) -> int:
        return num_style_layers(self.resolution)

    def __call__(self, dlatents, lod=0.0, noise_mode: str = "random"):
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        check_shape(dlatents, (None, self.num_layers, self.dlatent_size), "dlatents")
        dlatents = dlatents.astype(jnp.float32)
        lod = as_lod(lod)
        max_lod = check_resolution(self.resolution, "resolution") - 2

        def block(m, res, x):
            idx = (2 * res - 4, 2 * res - 3)
            noise = [m._noise(i, dlatents.shape[0], noise_mode) for i in idx]
            return m.blocks[scope(res)](x, ops.columns(dlatents, idx[0], idx[1] + 1), noise)

        x = block(self, 2, None)
        return grow_images(self, x, lod, 3, max_lod - 1, block, _torgb)

    def _noise_shape(self, idx: int) -> tuple[int, int]:
        """(height, width) of noise input `idx` (two per resolution from 4x4)."""
        size = 2 ** (idx // 2 + 2)
        return size * self.aspect[0], size * self.aspect[1]

    def _noise(self, idx: int, batch: int, noise_mode: str):
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "random":
            return jax.random.normal(self.make_rng("noise"), (batch, *self._noise_shape(idx), 1))
        return self.noise_inputs[idx].value[None, :, :, None]


def _unit_normal(module: nn.Module, shape: tuple[int, int]):
    return lambda: jax.random.normal(module.make_rng("params"), shape)


def _torgb(m, res, x):
    return m.torgbs[scope(res)](x)


class Generator(OfficialShape, nn.Module):
    """StyleGAN v1 generator (`G_style`): mapping, dlatent_avg, mixing, truncation, synthesis.

    `mapping_fn` / `truncate_fn` / `synthesis_fn` (via `apply(..., method=...)`) run one
    stage; `__call__` runs them all. Truncation lerps dlatents toward `dlatent_avg` by
    `truncation_psi` for layers below `truncation_cutoff` (None = all layers).
    """

    num_channels: int
    resolution: int
    label_size: int = 0
    latent_size: int = 512
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    mapping_nonlinearity: str = "lrelu"
    normalize_latents: bool = True
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    use_noise: bool = True
    nonlinearity: str = "lrelu"
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    fused_scale: bool | str = "auto"
    blur_filter: tuple[float, ...] | None = (1, 2, 1)
    dlatent_avg_beta: float | None = 0.995
    axis_name: str | None = None  # average the dlatent batch mean over this device axis
    img_aspect: tuple[int, int] = (1, 1)  # images [resolution * ah, resolution * aw]

    def setup(self):
        self.synthesis = SynthesisNetwork(
            dlatent_size=self.dlatent_size, num_channels=self.num_channels,
            resolution=self.resolution, fmap_base=self.fmap_base, fmap_decay=self.fmap_decay,
            fmap_max=self.fmap_max, use_noise=self.use_noise, nonlinearity=self.nonlinearity,
            use_pixel_norm=self.use_pixel_norm, use_instance_norm=self.use_instance_norm,
            fused_scale=self.fused_scale, blur_filter=self.blur_filter,
            aspect=check_aspect(self.img_aspect), name="G_synthesis",
        )
        if self.mapping_nonlinearity not in NONLINEARITIES:
            raise ValueError(f"mapping_nonlinearity must be one of {NONLINEARITIES}, "
                             f"got {self.mapping_nonlinearity!r}")
        self.mapping = MappingNetwork(
            num_layers=self.num_layers, latent_size=self.latent_size,
            label_size=self.label_size, dlatent_size=self.dlatent_size,
            mapping_layers=self.mapping_layers, mapping_fmaps=self.mapping_fmaps,
            mapping_lrmul=self.mapping_lrmul, mapping_nonlinearity=self.mapping_nonlinearity,
            normalize_latents=self.normalize_latents, name="G_mapping",
        )
        self.dlatent_avg = self.variable(
            "buffers", "dlatent_avg", jnp.zeros, (self.dlatent_size,), jnp.float32)

    @property
    def num_layers(self) -> int:
        return num_style_layers(self.resolution)

    @property
    def z_dim(self) -> int:
        return self.latent_size

    def mapping_fn(self, latents, labels):
        check_shape(latents, (None, self.latent_size), "latents")
        check_shape(labels, (latents.shape[0], self.label_size), "labels")
        return self.mapping(latents, labels)

    def truncate_fn(self, dlatents, truncation_psi=1.0, truncation_cutoff=None):
        if ops.untruncated(truncation_psi):
            return dlatents
        layer = jnp.arange(self.num_layers)[None, :, None]
        cutoff = self.num_layers if truncation_cutoff is None else truncation_cutoff
        coefs = jnp.where(layer < cutoff, jnp.float32(truncation_psi), jnp.float32(1))
        truncated = ops.lerp(self.dlatent_avg.value, dlatents, coefs)
        return jnp.where(truncation_psi == 1, dlatents, truncated)

    def synthesis_fn(self, dlatents, lod=0.0, noise_mode: str = "random"):
        return self.synthesis(dlatents, lod, noise_mode)

    def __call__(self, latents, labels, lod=0.0, truncation_psi=1.0, truncation_cutoff=None,
                 noise_mode: str = "random", style_mixing_prob: float = 0.0,
                 update_dlatent_avg: bool = False):
        """Images [N, H, W, C] at `lod`. Training options, as the official `is_training`:
        `update_dlatent_avg` (needs mutable 'buffers') and `style_mixing_prob` (draws
        from the 'noise' rng; the crossover layer is below the lod's active layers).
        """
        dlatents = self.mapping_fn(latents, labels)
        if update_dlatent_avg and self.dlatent_avg_beta is not None \
                and not self.is_initializing():
            batch_avg = jax.lax.stop_gradient(jnp.mean(dlatents[:, 0], axis=0))
            if self.axis_name is not None:
                batch_avg = jax.lax.pmean(batch_avg, self.axis_name)
            self.dlatent_avg.value = ops.lerp(batch_avg, self.dlatent_avg.value,
                                              self.dlatent_avg_beta)
        if style_mixing_prob > 0:
            dlatents = self.mix_styles_fn(latents, labels, dlatents, lod, style_mixing_prob)
        dlatents = self.truncate_fn(dlatents, truncation_psi, truncation_cutoff)
        return self.synthesis(dlatents, lod, noise_mode)

    def mix_styles_fn(self, latents, labels, dlatents, lod, style_mixing_prob):
        """Official style mixing: with probability `style_mixing_prob`, the layers from a
        random crossover in [1, active layers) take the dlatents of new random latents."""
        prob = style_mixing_prob
        k_z, k_p, k_c = jax.random.split(self.make_rng("noise"), 3)
        other = self.mapping(jax.random.normal(k_z, latents.shape), labels)
        cur_layers = self.num_layers - floor_lod(lod) * 2
        cutoff = jnp.where(jax.random.uniform(k_p) < prob,
                           jax.random.randint(k_c, (), 1, cur_layers), cur_layers)
        layer = jnp.arange(self.num_layers)[None, :, None]
        return jnp.where(layer < cutoff, dlatents, other)


class DiscriminatorBlock(nn.Module):
    """One resolution of `D_basic`: (conv, blur + down-conv) or 4x4 (mbstd, conv, 2 dense)."""

    res: int
    fmaps: int  # nf(res - 1)
    fmaps_out: int  # nf(res - 2), or the score count at 4x4
    nonlinearity: str
    resample: str
    blur_filter: tuple[float, ...] | None
    mbstd_group_size: int
    mbstd_num_features: int
    dense_fmaps: int = 0  # nf(0) at 4x4

    @nn.compact
    def __call__(self, x):
        conv = dict(activation=self.nonlinearity, act_gain=1.0, weight_gain=SQRT2)
        if self.res >= 3:
            x = Conv2d(self.fmaps, 3, name="Conv0", **conv)(x)
            if self.blur_filter:
                x = ops.blur2d(x, self.blur_filter)
            return Conv2d(self.fmaps_out, 3, down=2, resample=self.resample, name="Conv1_down",
                          **conv)(x)
        if self.mbstd_group_size > 1:
            x = ops.minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_features)
        x = Conv2d(self.fmaps, 3, name="Conv", **conv)(x)
        x = Dense(self.dense_fmaps, activation=self.nonlinearity, gain=SQRT2, act_gain=1.0,
                  name="Dense0")(x.reshape(x.shape[0], -1))
        return Dense(self.fmaps_out, gain=1.0, name="Dense1")(x)


class Discriminator(OfficialShape, nn.Module):
    """StyleGAN v1 discriminator (`D_basic`): images NHWC (+ labels), lod -> scores [N, 1].

    With labels, the last layer scores every class and the score of the given one is
    kept (`sum(scores * labels)`, the official LabelSwitch).
    """

    num_channels: int
    resolution: int
    label_size: int = 0
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    nonlinearity: str = "lrelu"
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1
    fused_scale: bool | str = "auto"
    blur_filter: tuple[float, ...] | None = (1, 2, 1)
    img_aspect: tuple[int, int] = (1, 1)  # images [resolution * ah, resolution * aw]

    def setup(self):
        log2 = check_resolution(self.resolution, "resolution")
        _check_options(self.nonlinearity, self.fused_scale, self.blur_filter)
        check_aspect(self.img_aspect)
        nf = self._nf
        blur = None if self.blur_filter is None else tuple(self.blur_filter)
        self.blocks = {
            scope(r): DiscriminatorBlock(
                res=r, fmaps=nf(r - 1), fmaps_out=max(self.label_size, 1) if r == 2 else nf(r - 2),
                nonlinearity=self.nonlinearity, resample=resample_mode(self.fused_scale, r),
                blur_filter=blur, mbstd_group_size=self.mbstd_group_size,
                mbstd_num_features=self.mbstd_num_features, dense_fmaps=nf(0), name=scope(r),
            )
            for r in range(2, log2 + 1)
        }
        self.fromrgbs = {
            scope(r): Conv2d(nf(r - 1), 1, activation=self.nonlinearity, act_gain=1.0,
                             weight_gain=SQRT2, name=f"FromRGB_lod{log2 - r}")
            for r in range(2, log2 + 1)
        }

    def __call__(self, images, labels, lod=0.0):
        check_shape(images, (None, *self.at(self.resolution), self.num_channels), "images")
        check_shape(labels, (images.shape[0], self.label_size), "labels")
        lod = as_lod(lod)
        scores = grow_scores(self, images.astype(jnp.float32), lod, 2, self.max_lod,
                             _d_fromrgb, _d_block)
        if self.label_size:
            scores = jnp.sum(scores * labels.astype(jnp.float32), axis=1, keepdims=True)
        return scores


def _d_block(m, res, x):
    return m.blocks[scope(res)](x)


def _d_fromrgb(m, res, x):
    return m.fromrgbs[scope(res)](x)

