"""ProGAN (NVIDIA's TensorFlow `G_paper` / `D_paper`) and the progressive-growing structure.

Both networks take a level of detail `lod` (0 = full resolution, k = 2**k times
coarser, fractional = fade-in between two resolutions) as a traced scalar, and run the
official *recursive* structure: nested conditionals evaluate only the blocks the
current lod needs, so training at a low resolution costs what the official code costs.
StyleGAN v1 (models/stylegan.py) reuses `grow_images` / `grow_scores`.

Submodule and parameter names are the official TF variable scopes (`4x4/Dense`,
`8x8/Conv0_up`, `ToRGB_lod0`, `FromRGB_lod1`, ...), so conversion is a layout change.
Module fields are the official kwargs, defaults included (`fused_scale=True`).

Beyond the official networks, `img_aspect` (height, width multiples of `resolution`, the
shorter side; see stylegan_jax.shapes) makes them W x H: G's 4x4 start (ProGAN's dense
layer, StyleGAN's constant) becomes 4*ah x 4*aw, every later block doubles both sides,
and D ends on the same rectangle (its dense layer's fan-in is that of its flattened
input, as officially). (1, 1) is the official square network, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_jax.nn import ops
from stylegan_jax.nn.layers import Conv2d, Dense, check_resolution
from stylegan_jax.shapes import check_aspect

SQRT2 = math.sqrt(2.0)


def num_features(stage: int, fmap_base: int, fmap_decay: float, fmap_max: int) -> int:
    """The official `nf(stage)`: feature maps at resolution 2**(stage + 1)."""
    return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def scope(res_log2: int) -> str:
    """The official variable scope of a resolution: 3 -> '8x8'."""
    return f"{2**res_log2}x{2**res_log2}"


def check_shape(x, shape: tuple, name: str) -> None:
    """Raises naming `name` unless x has `shape` (None = any size)."""
    if x is None or x.ndim != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, x.shape, strict=True)
    ):
        got = None if x is None else tuple(x.shape)
        raise ValueError(f"{name} must have shape {shape} (None = any), got {got}")


def branch(mdl: nn.Module, pred, true_fn: Callable, false_fn: Callable, *operands):
    """`nn.cond` that runs both branches while initialising, so each creates its variables."""
    if mdl.is_initializing():
        out = true_fn(mdl, *operands)
        false_fn(mdl, *operands)
        return out
    return nn.cond(pred, true_fn, false_fn, mdl, *operands)


@jax.tree_util.register_pytree_node_class
class StageLod:
    """A traced lod known to lie in [level, level + 1), as within one training stage.

    The networks take it wherever they take lod: its comparisons with a level are Python
    bools, so every structural conditional folds away at compile time (XLA:CPU runs the
    convolutions inside a conditional, and their gradients, ~40x slower), while the fade
    `lod - level` stays traced. A pytree (value is the leaf), as lod passes through
    `branch`'s operands.
    """

    def __init__(self, value: jax.Array, level: int):
        self.value, self.level = value, level

    def tree_flatten(self):
        return (self.value,), self.level

    @classmethod
    def tree_unflatten(cls, level, children):
        return cls(children[0], level)

    def __lt__(self, k: int) -> bool:  # go to a finer level than k?
        return k > self.level

    def __gt__(self, k: int) -> bool:  # fade with the level below k? (exact when lod == k)
        return k <= self.level

    def __sub__(self, k: int) -> jax.Array:
        return self.value - k


def as_lod(lod):
    """A network's lod argument: a StageLod as it is, anything else as a float32 array."""
    return lod if isinstance(lod, StageLod) else jnp.asarray(lod, jnp.float32)


def floor_lod(lod):
    """floor(lod) for lod >= 0: static for a StageLod, traced int32 otherwise."""
    return lod.level if isinstance(lod, StageLod) else jnp.asarray(lod, jnp.float32).astype(
        jnp.int32)


def grow_images(mdl, x, lod, res: int, level: int, block: Callable, torgb: Callable):
    """The official recursive generator structure, from resolution 2**res (lod `level`) up.

    `block(mdl, res, x)` maps features of 2**(res-1) (or the input) to 2**res;
    `torgb(mdl, res, x)` maps them to an image. Returns the image at full resolution:
    nearest-upscaled from the finest level the lod reaches, faded with the next coarser
    one by `lod - level` where lod is fractional. Only the top level (res > 2 at entry,
    as StyleGAN v1 starts) extrapolates for lod above the coarsest level, as officially.
    """
    y = block(mdl, res, x)

    def plain(m, x, y, lod):
        return ops.upscale2d_nearest(torgb(m, res, y), 2**level)

    def fade(m, x, y, lod):
        coarse = ops.upscale2d_nearest(torgb(m, res - 1, x))
        return ops.upscale2d_nearest(ops.lerp(torgb(m, res, y), coarse, lod - level), 2**level)

    def settle(m, x, y, lod):
        if res == 2:
            return plain(m, x, y, lod)
        return branch(m, lod > level, fade, plain, x, y, lod)

    def deeper(m, x, y, lod):
        return grow_images(m, y, lod, res + 1, level - 1, block, torgb)

    if level > 0:
        return branch(mdl, lod < level, deeper, settle, x, y, lod)
    return settle(mdl, x, y, lod)


def grow_scores(mdl, images, lod, res: int, level: int, fromrgb: Callable, block: Callable):
    """The official recursive discriminator structure, from resolution 2**res down to 4x4.

    The image enters at the finest level the lod reaches (box-downscaled to it), and
    where lod is fractional that level's output is faded with FromRGB of the next
    coarser image by `lod - level`.
    """

    def direct(m, images, lod):
        return fromrgb(m, res, ops.downscale2d_box(images, 2**level))

    def deeper(m, images, lod):
        return grow_scores(m, images, lod, res + 1, level - 1, fromrgb, block)

    x = branch(mdl, lod < level, deeper, direct, images, lod) if level > 0 else direct(
        mdl, images, lod)
    x = block(mdl, res, x)
    if res > 2:

        def fade(m, x, images, lod):
            coarse = fromrgb(m, res - 1, ops.downscale2d_box(images, 2 ** (level + 1)))
            return ops.lerp(x, coarse, lod - level)

        def keep(m, x, images, lod):
            return x

        x = branch(mdl, lod > level, fade, keep, x, images, lod)
    return x


def _check_fused(fused_scale, allowed: tuple) -> None:
    if not any(fused_scale is a or (isinstance(a, str) and fused_scale == a) for a in allowed):
        raise ValueError(f"fused_scale must be one of {allowed}, got {fused_scale!r}")


class OfficialShape:
    """The official TF networks' size fields under the names the rest of the project uses."""

    def _nf(self, stage: int) -> int:
        return num_features(stage, self.fmap_base, self.fmap_decay, self.fmap_max)

    @property
    def c_dim(self) -> int:
        return self.label_size

    @property
    def img_resolution(self) -> int:
        return self.resolution

    @property
    def img_channels(self) -> int:
        return self.num_channels

    @property
    def max_lod(self) -> int:
        return check_resolution(self.resolution, "resolution") - 2

    def at(self, res: int) -> tuple[int, int]:
        """(height, width) of this network's feature maps whose shorter side is `res`."""
        ah, aw = check_aspect(self.img_aspect)
        return res * ah, res * aw


class GeneratorBlock(nn.Module):
    """One resolution of `G_paper`: 4x4 (pixel norm, dense, conv) or (up-conv, conv)."""

    res: int
    fmaps: int
    activation: str
    use_pixelnorm: bool
    pixelnorm_epsilon: float
    normalize_latents: bool
    fused_scale: bool
    start: tuple[int, int] = (4, 4)  # (height, width) of the first block's maps

    @nn.compact
    def __call__(self, x):
        conv = dict(activation=self.activation, act_gain=1.0, weight_gain=SQRT2)

        def pn(x):
            if not self.use_pixelnorm:
                return x
            return ops.normalize_2nd_moment(x, eps=self.pixelnorm_epsilon)

        if self.res == 2:
            if self.normalize_latents:
                x = ops.normalize_2nd_moment(x, eps=self.pixelnorm_epsilon)
            # The official gain sqrt(2)/4 matches the original Theano implementation.
            h, w = self.start
            x = pn(Dense(self.fmaps * h * w, activation=self.activation, gain=SQRT2 / 4,
                         act_gain=1.0, out_shape=(h, w, self.fmaps), name="Dense")(x))
            return pn(Conv2d(self.fmaps, 3, name="Conv", **conv)(x))
        if self.fused_scale:
            x = pn(Conv2d(self.fmaps, 3, up=2, resample="fused", name="Conv0_up", **conv)(x))
        else:
            x = pn(Conv2d(self.fmaps, 3, name="Conv0", **conv)(ops.upscale2d_nearest(x)))
        return pn(Conv2d(self.fmaps, 3, name="Conv1", **conv)(x))


class Generator(OfficialShape, nn.Module):
    """ProGAN generator (`G_paper`): latents [N, z] (+ labels [N, c]), lod -> images NHWC.

    Labels are concatenated to the latents (and pixel-normalised with them), as in the
    official network.
    """

    num_channels: int
    resolution: int
    label_size: int = 0
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    latent_size: int | None = None
    normalize_latents: bool = True
    use_pixelnorm: bool = True
    pixelnorm_epsilon: float = 1e-8
    use_leakyrelu: bool = True
    fused_scale: bool = True
    img_aspect: tuple[int, int] = (1, 1)  # images [resolution * ah, resolution * aw]

    def setup(self):
        log2 = check_resolution(self.resolution, "resolution")
        _check_fused(self.fused_scale, (True, False))
        if self.num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {self.num_channels}")
        self.blocks = {
            scope(r): GeneratorBlock(
                res=r, fmaps=self._nf(r - 1),
                activation="lrelu" if self.use_leakyrelu else "relu",
                use_pixelnorm=self.use_pixelnorm, pixelnorm_epsilon=self.pixelnorm_epsilon,
                normalize_latents=self.normalize_latents, fused_scale=self.fused_scale,
                start=self.at(4), name=scope(r),
            )
            for r in range(2, log2 + 1)
        }
        self.torgbs = {
            scope(r): Conv2d(self.num_channels, 1, weight_gain=1.0, name=f"ToRGB_lod{log2 - r}")
            for r in range(2, log2 + 1)
        }

    @property
    def z_dim(self) -> int:
        return self._nf(0) if self.latent_size is None else self.latent_size

    def __call__(self, latents, labels, lod=0.0):
        check_shape(latents, (None, self.z_dim), "latents")
        check_shape(labels, (latents.shape[0], self.label_size), "labels")
        x = jnp.concatenate([latents, labels], axis=1).astype(jnp.float32)
        lod = as_lod(lod)
        return grow_images(self, x, lod, 2, self.max_lod, _g_block, _g_torgb)


def _g_block(m, res, x):
    return m.blocks[scope(res)](x)


def _g_torgb(m, res, x):
    return m.torgbs[scope(res)](x)


class DiscriminatorBlock(nn.Module):
    """One resolution of `D_paper`: (conv, down-conv) or 4x4 (mbstd, conv, dense, dense)."""

    res: int
    fmaps: int  # nf(res - 1)
    fmaps_out: int  # nf(res - 2)
    mbstd_group_size: int
    fused_scale: bool

    @nn.compact
    def __call__(self, x):
        conv = dict(activation="lrelu", act_gain=1.0, weight_gain=SQRT2)
        if self.res >= 3:
            x = Conv2d(self.fmaps, 3, name="Conv0", **conv)(x)
            if self.fused_scale:
                return Conv2d(self.fmaps_out, 3, down=2, resample="fused", name="Conv1_down",
                              **conv)(x)
            # Not fused: the box downscaling comes after the activation here.
            return ops.downscale2d_box(Conv2d(self.fmaps_out, 3, name="Conv1", **conv)(x))
        if self.mbstd_group_size > 1:
            x = ops.minibatch_stddev(x, self.mbstd_group_size, 1)
        x = Conv2d(self.fmaps, 3, name="Conv", **conv)(x)
        x = Dense(self.fmaps_out, activation="lrelu", gain=SQRT2, act_gain=1.0, name="Dense0")(
            x.reshape(x.shape[0], -1))
        return Dense(1, gain=1.0, name="Dense1")(x)


class Discriminator(OfficialShape, nn.Module):
    """ProGAN discriminator (`D_paper` as in NVlabs/stylegan): images NHWC, lod -> scores [N, 1].

    Labels are checked and otherwise unused, as in that version of the official network.
    """

    num_channels: int
    resolution: int
    label_size: int = 0
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    mbstd_group_size: int = 4
    fused_scale: bool = True
    img_aspect: tuple[int, int] = (1, 1)  # images [resolution * ah, resolution * aw]

    def setup(self):
        log2 = check_resolution(self.resolution, "resolution")
        _check_fused(self.fused_scale, (True, False))
        check_aspect(self.img_aspect)
        nf = self._nf
        self.blocks = {
            scope(r): DiscriminatorBlock(
                res=r, fmaps=nf(r - 1), fmaps_out=nf(r - 2),
                mbstd_group_size=self.mbstd_group_size, fused_scale=self.fused_scale,
                name=scope(r),
            )
            for r in range(2, log2 + 1)
        }
        self.fromrgbs = {
            scope(r): Conv2d(nf(r - 1), 1, activation="lrelu", act_gain=1.0, weight_gain=SQRT2,
                             name=f"FromRGB_lod{log2 - r}")
            for r in range(2, log2 + 1)
        }

    def __call__(self, images, labels, lod=0.0):
        check_shape(images, (None, *self.at(self.resolution), self.num_channels), "images")
        check_shape(labels, (images.shape[0], self.label_size), "labels")
        lod = as_lod(lod)
        return grow_scores(self, images.astype(jnp.float32), lod, 2, self.max_lod,
                           _d_fromrgb, _d_block)


def _d_block(m, res, x):
    return m.blocks[scope(res)](x)


def _d_fromrgb(m, res, x):
    return m.fromrgbs[scope(res)](x)
