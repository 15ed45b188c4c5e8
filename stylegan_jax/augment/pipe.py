"""The ADA augmentation pipe (Karras et al. 2020), numerically NVIDIA's `AugmentPipe`.

`augment(images, p, config, draws)` runs, in the official order: geometric transforms
(one resampling for all of them), color transforms (one matrix), image-space filtering,
additive noise and cutout. It is a pure function of the images, the strength `p` (a
traced scalar: ADA changes it during training without recompiling) and the draws, and
linear in the images, so generator gradients and R1's double backward pass through it.
Call it on a per-device batch: like the official per-GPU pipe, the geometric padding is
shared by the batch it is given.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.augment import color, corruptions, geometric, imgfilter
from stylegan_jax.augment.config import AugmentConfig, named_pipe
from stylegan_jax.augment.draws import DrawSource, KeyDraws, Plan, PlanRecorder


def augment(images: jax.Array, p: jax.Array | float, config: AugmentConfig | str,
            draws: DrawSource | jax.Array) -> jax.Array:
    """Augments NHWC float images [batch, height, width, channels] with strength p.

    config: an AugmentConfig or an official pipe name ('bgc', ...). draws: a PRNG key or
    a DrawSource (e.g. RecordedDraws replaying the official draws). p = 0 returns the
    images unchanged (exactly), whatever the draws.
    """
    cfg = named_pipe(config) if isinstance(config, str) else config
    if not isinstance(cfg, AugmentConfig):
        raise TypeError(f"augment config: expected an AugmentConfig or a pipe name, "
                        f"got {type(config).__name__}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"augment images: expected floating point, got {images.dtype}")
    check_images(cfg, images.shape)
    p = jnp.asarray(p, jnp.float32)
    if p.shape != ():
        raise ValueError(f"augment p: expected a scalar, got shape {p.shape}")
    if hasattr(draws, "rand") and hasattr(draws, "randn"):
        source = draws
    elif isinstance(draws, jax.Array | np.ndarray):
        source = KeyDraws(draws, draw_plan(cfg, images.shape))
    else:
        raise TypeError(f"augment draws: expected a PRNG key or a DrawSource, "
                        f"got {type(draws).__name__}")
    return _run(images.astype(jnp.float32), p, cfg, source).astype(images.dtype)


def check_images(config: AugmentConfig, shape: tuple[int, ...]) -> None:
    """Raises unless the pipe `config` can augment NHWC images of `shape`.

    Any height and width (not necessarily equal) large enough for the geometric padding
    and the image filter; 1 (L), 3 (RGB) or 4 (RGBA) channels for colour operations and
    noise, any number otherwise.
    """
    if len(shape) != 4:
        raise ValueError(f"augment images: expected NHWC [batch, height, width, channels], "
                         f"got shape {tuple(shape)}")
    _, h, w, c = shape
    config.check_channels(c)
    if config.any_geometric:
        geometric.check_size(h, w)
    if config.imgfilter > 0:
        imgfilter.check_size(h, w)


@functools.lru_cache(maxsize=128)
def draw_plan(config: AugmentConfig, shape: tuple[int, ...]) -> Plan:
    """(kind, shape) of every draw the pipe makes for NHWC images of `shape`, in order.

    RGBA images draw exactly what RGB images of the same size draw.
    """
    check_images(config, tuple(shape))
    recorder = PlanRecorder()
    jax.eval_shape(lambda x: _run(x, jnp.float32(1), config, recorder),
                   jax.ShapeDtypeStruct(tuple(shape), jnp.float32))
    return tuple(recorder.requests)


def _run(x: jax.Array, p: jax.Array, cfg: AugmentConfig, source: DrawSource) -> jax.Array:
    """The operations in the official order, on float32 NHWC images."""
    b, h, w, c = x.shape
    if cfg.any_geometric:
        g_inv = geometric.draw_geometric(cfg, source, p, b, h, w)
        x = geometric.apply_geometric(x, g_inv)
    if cfg.any_color:
        x = color.apply_color(x, color.draw_color(cfg, source, p, b, c))
    if cfg.imgfilter > 0:
        x = imgfilter.apply_filter(x, *imgfilter.draw_filter(cfg, source, p, b))
    if cfg.noise > 0:
        x = corruptions.add_noise(x, cfg, source, p)
    if cfg.cutout > 0:
        x = corruptions.cutout(x, cfg, source, p)
    return x
