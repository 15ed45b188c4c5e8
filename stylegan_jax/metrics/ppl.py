"""Perceptual path length (StyleGAN, Karras et al. 2019), as stylegan2-ada-pytorch measures it.

For random pairs of latents, t ~ U[0, 1) ('full') or t = 0 ('end'), the images at
t and t + ε along the path (`lerp` of the mapped w in W, `slerp` of z in Z) are
compared with LPIPS; the path length is LPIPS / ε². The two images of a pair share
their noise (the official code randomises the stored `noise_const` buffers and runs
noise mode 'const'); here each pair draws its own buffers. Images are optionally
centre-cropped (the official face crop: rows 3/8…7/8, cols 2/8…6/8), box-downsampled
by `img_resolution // 256`, and the mean is taken between the 1st ('lower') and 99th
('higher') percentiles of the lengths.

A W x H generator's images take the same steps: the crop's fractions apply to each axis
(rows 3/8…7/8 of H, cols 2/8…6/8 of W, in whole eighths as the official code rounds), and
the box factor is `img_resolution` (the shorter side) // 256, the same on both axes. RGBA
images are composited over black before LPIPS, as the other metrics see them.

`generator_lengths` is the metric's pass over a generator (StyleGAN2 only: the others
lack `noise_const` buffers or a z -> w split), sharded over the devices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from stylegan_jax.metrics import image_ops
from stylegan_jax.metrics.detectors import Detectors
from stylegan_jax.metrics.parallel import gather_rows, process_share
from stylegan_jax.metrics.registry import MetricSpec
from stylegan_jax.metrics.sampler import Sampler
from stylegan_jax.models.registry import family_of, is_generator

SPACES = ("z", "w")
SAMPLINGS = ("full", "end")


def slerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
    """Spherical interpolation between the directions of a and b ([N, D], t [N, 1])."""
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
    d = jnp.sum(a * b, axis=-1, keepdims=True)
    p = t * jnp.arccos(d)
    c = b - d * a
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    out = a * jnp.cos(p) + c * jnp.sin(p)
    return out / jnp.linalg.norm(out, axis=-1, keepdims=True)


def lengths_between(z0: jax.Array, z1: jax.Array, t: jax.Array, c: jax.Array, key: jax.Array,
                    *, mapping: Callable, synthesize_pairs: Callable, distance: Callable,
                    space: str, epsilon: float) -> jax.Array:
    """[N] path lengths at t [N] on the paths z0 -> z1 ([N, z_dim]) with labels c.

    mapping(z, c) -> ws [N, num_ws, w_dim]; synthesize_pairs(ws0, ws1, key) -> the two
    image batches, each pair with its own noise; distance(img0, img1) -> [N].
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    n = z0.shape[0]
    cc = jnp.concatenate([c, c])
    if space == "w":
        w = mapping(jnp.concatenate([z0, z1]), cc)
        w0, w1 = w[:n], w[n:]
        wt0 = w0 + (w1 - w0) * t[:, None, None]
        wt1 = w0 + (w1 - w0) * (t[:, None, None] + epsilon)
    else:
        zt0 = slerp(z0, z1, t[:, None])
        zt1 = slerp(z0, z1, t[:, None] + epsilon)
        w = mapping(jnp.concatenate([zt0, zt1]), cc)
        wt0, wt1 = w[:n], w[n:]
    img0, img1 = synthesize_pairs(wt0, wt1, key)
    return distance(img0, img1) / epsilon**2


def path_lengths(key: jax.Array, c: jax.Array, *, z_dim: int, sampling: str, **kwargs) -> jax.Array:
    """[N] path lengths of N random pairs z0, z1 ~ N(0, I), t ~ U[0, 1) ('full') or 0 ('end');
    `kwargs` as for `lengths_between`."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    kt, kz, kn = jax.random.split(key, 3)
    n = c.shape[0]
    t = jax.random.uniform(kt, (n,)) * (1.0 if sampling == "full" else 0.0)
    z = jax.random.normal(kz, (2 * n, z_dim))
    return lengths_between(z[:n], z[n:], t, c, kn, **kwargs)


def crop_window(height: int, width: int) -> tuple[slice, slice]:
    """(rows, cols) of the official face crop, its fractions per axis: rows 3/8..7/8 of the
    height, cols 2/8..6/8 of the width, in whole eighths (a square's is the official one)."""
    ch, cw = height // 8, width // 8
    return slice(ch * 3, ch * 7), slice(cw * 2, cw * 6)


def crop_and_downsample(img: jax.Array, crop: bool, img_resolution: int) -> jax.Array:
    """The official PPL image preparation (NHWC in [-1, 1]): face crop, box-downsample by
    `img_resolution` (the shorter side) // 256 on both axes, RGB for LPIPS."""
    if crop:
        rows, cols = crop_window(*img.shape[1:3])
        img = img[:, rows, cols]
    factor = img_resolution // 256  # of the full image, as the official code does
    if factor > 1:
        n, h, w, ch = img.shape
        img = img.reshape(n, h // factor, factor, w // factor, factor, ch).mean(axis=(2, 4))
    return image_ops.to_rgb(img, (-1.0, 1.0))


def stylegan_pair_synthesis(module, variables: dict) -> Callable:
    """synthesize_pairs for a stylegan2.Generator: noise mode 'const' with freshly drawn
    `noise_const` buffers per pair, in float32 (the official `force_fp32=True`)."""
    if getattr(module, "num_bf16_res", 0):
        module = module.clone(num_bf16_res=0)
    flat = traverse_util.flatten_dict(variables.get("buffers", {}))
    noise_keys = [k for k in flat if k[-1] == "noise_const"]

    def one_pair(ws2, noise):
        buffers = dict(flat)
        buffers.update(zip(noise_keys, noise, strict=True))
        v = {**variables, "buffers": traverse_util.unflatten_dict(buffers)}
        return module.apply(v, ws2, "const", method=module.synthesis_fn)

    def synthesize_pairs(ws0, ws1, key):
        n = ws0.shape[0]
        keys = jax.random.split(key, max(len(noise_keys), 1))
        noise = [jax.random.normal(k, (n, *flat[name].shape))
                 for k, name in zip(keys, noise_keys, strict=False)]
        imgs = jax.vmap(one_pair)(jnp.stack([ws0, ws1], axis=1), noise)  # [n, 2, H, W, C]
        return imgs[:, 0], imgs[:, 1]

    return synthesize_pairs


def aggregate(lengths: np.ndarray) -> float:
    """Mean of the lengths between the 1st ('lower') and 99th ('higher') percentiles."""
    lengths = np.asarray(lengths, np.float64)
    lo = np.percentile(lengths, 1, method="lower")
    hi = np.percentile(lengths, 99, method="higher")
    return float(np.mean(lengths[(lengths >= lo) & (lengths <= hi)]))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _step(distance_fn, module, space, sampling, crop, epsilon, g_vars, lpips_vars, key, c):
    def mapping(z, cc):
        return module.apply(g_vars, z, cc, method=module.mapping_fn)

    pairs = stylegan_pair_synthesis(module, g_vars)
    prep = functools.partial(crop_and_downsample, crop=crop,
                             img_resolution=module.img_resolution)

    def synthesize(ws0, ws1, k):
        a, b = pairs(ws0, ws1, k)
        return prep(a), prep(b)

    def distance(a, b):
        return distance_fn(lpips_vars, a, b)

    return path_lengths(key, c, z_dim=module.z_dim, mapping=mapping,
                        synthesize_pairs=synthesize, distance=distance, space=space,
                        sampling=sampling, epsilon=epsilon)


def generator_lengths(spec: MetricSpec, sampler: Sampler, detectors: Detectors) -> np.ndarray:
    """[spec.num_gen] path lengths of the sampler's generator, LPIPS from `detectors`, in
    batches of half the sampler's (two images a path), gathered from every process."""
    module, devices = sampler.G.module, sampler.devices
    if not (is_generator(module) and family_of(module).name == "stylegan2"):
        raise ValueError(f"{spec.name}: perceptual path length is defined here for "
                         f"StyleGAN2 generators, not {type(module).__module__}")
    lpips_vars = devices.replicate(detectors.variables("lpips"))
    distance = detectors.function("lpips")
    g_vars = devices.replicate(sampler.G.variables)
    count = process_share(spec.num_gen)
    pairs = devices.round_batch(max(sampler.batch_size // 2, 1))
    rng = sampler.process_rng(1)
    key = jax.random.fold_in(jax.random.PRNGKey(sampler.seed + 1), jax.process_index())
    out = []
    bar = sampler.bar(spec.num_gen, f"{spec.name} paths", "path")
    for i in range(math.ceil(count / pairs)):
        (c,), _ = devices.shard(sampler.labels(rng, pairs))
        d = _step(distance, module, spec.space, spec.sampling, spec.crop, spec.epsilon,
                  g_vars, lpips_vars, jax.random.fold_in(key, i), c)
        n = min(pairs, count - i * pairs)
        out.append(np.asarray(d)[:n])
        bar.update(n * jax.process_count())
    bar.close()
    return gather_rows(np.concatenate(out))
