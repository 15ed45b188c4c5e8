"""The image passes of ProGAN's network-free metrics: SWD descriptors of generated and real
images, MS-SSIM of generated pairs.

Generated images are quantised to uint8 as every metric here does (`sampler.quantize`), then
reduced on the devices in the same program: to pyramid descriptors (SWD) or to one score a
pair (MS-SSIM), so only those reach the host. Each process takes its share of the images and
the rows are gathered at the end, as the feature passes do. Real images for SWD are the
dataset's in order, repeated from the start where the dataset holds fewer than asked (SWD
compares equally many of each; ProGAN drew them from its shuffled, repeating stream), never
mirrored.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import jax
import numpy as np

from stylegan_jax.metrics import ms_ssim, swd
from stylegan_jax.metrics.parallel import LocalDevices, gather_rows, process_share
from stylegan_jax.metrics.sampler import Sampler, quantize
from stylegan_jax.models.registry import image_shape
from stylegan_jax.models.sampling import synthesize

_SWD_STREAM, _MSSSIM_STREAM, _REAL_STREAM = 3, 4, 5


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _swd_step(module, psi, noise_mode, g_vars, z, c, key, lod, centres):
    img = synthesize(module, g_vars, z, c, key, lod, psi=psi, noise_mode=noise_mode)
    return swd.batch_descriptors(quantize(img), centres)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _msssim_step(module, psi, noise_mode, g_vars, z, c, key, lod):
    p = z.shape[0]
    img = synthesize(module, g_vars, z.reshape(2 * p, -1), c.reshape(2 * p, -1), key, lod,
                     psi=psi, noise_mode=noise_mode)
    img = quantize(img).reshape(p, 2, *img.shape[1:])
    return ms_ssim.pair_scores(img[:, 0], img[:, 1])


def generated_swd_descriptors(sampler: Sampler, num: int) -> list[np.ndarray]:
    """Raw SWD descriptors ([num * 128, 147] per pyramid level) of `num` generated images."""
    module, devices = sampler.G.module, sampler.devices
    size = generated_size(sampler.G)
    swd.level_sizes(size)  # refuses images too small for the pyramid
    g_vars = devices.replicate(sampler.G.variables)
    count, batch = process_share(num), sampler.batch_size
    rng = sampler.process_rng(_SWD_STREAM)
    key = jax.random.fold_in(jax.random.PRNGKey(sampler.seed + _SWD_STREAM),
                             jax.process_index())
    parts: list[list[np.ndarray]] = []
    bar = sampler.bar(num, "generated swd", "img")
    for i in range(math.ceil(count / batch)):
        z = rng.standard_normal((batch, module.z_dim)).astype(np.float32)
        c = sampler.labels(rng, batch)
        centres = swd.draw_centres(rng, batch, size)
        (z, c, centres), _ = devices.shard(z, c, centres)
        descs = _swd_step(module, sampler.psi, sampler.noise_mode, g_vars, z, c,
                          jax.random.fold_in(key, i), np.float32(sampler.G.lod), centres)
        n = min(batch, count - i * batch)
        parts.append([np.asarray(d)[: n * swd.NHOODS_PER_IMAGE] for d in descs])
        bar.update(n * jax.process_count())
    bar.close()
    return [gather_rows(np.concatenate(level)) for level in zip(*parts, strict=True)]


def _cycled(factory: Callable[[], Iterable], count: int, where: str):
    """uint8 NHWC batches of the first `count` items of the repeated sequence `factory()`."""
    left = count
    while left > 0:
        before = left
        for batch in factory():
            images = np.asarray(batch[0] if isinstance(batch, tuple | list) else batch)
            yield images[:left]
            left -= min(left, images.shape[0])
            if left == 0:
                return
        if left == before:
            raise ValueError(f"{where}: the real-image source yielded no images")


def generated_size(G) -> tuple[int, int]:
    """(height, width) of a generator Network's images."""
    shape = image_shape(G.module)
    return shape.height, shape.width


def real_swd_descriptors(factory: Callable[[], Iterable], num: int, size: swd.Size,
                         devices: LocalDevices, seed: int, batch: int) -> list[np.ndarray]:
    """Raw SWD descriptors of this process's share of `num` real images (see the module
    doc for which) of `size` (a square's side, or (height, width)), gathered from every
    process; their neighbourhoods are drawn from `seed`."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    rng = np.random.default_rng([seed, jax.process_index(), _REAL_STREAM])
    parts: list[list[np.ndarray]] = []
    for images in _cycled(factory, process_share(num), "SWD"):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:3] != (h, w):
            raise ValueError(f"SWD: real images must be uint8 [N, {h}, {w}, C] like the "
                             f"generator's, got {images.dtype} {images.shape}")
        n = images.shape[0]
        centres = swd.draw_centres(rng, n, (h, w))
        if n < batch:  # one compiled shape: pad with the last image
            images = np.concatenate([images, np.repeat(images[-1:], batch - n, 0)])
            centres = np.concatenate([centres, np.repeat(centres[-1:], batch - n, 0)])
        (x, centres), _ = devices.shard(images, centres)
        descs = swd.batch_descriptors_jit(x, centres)
        parts.append([np.asarray(d)[: n * swd.NHOODS_PER_IMAGE] for d in descs])
    return [gather_rows(np.concatenate(level)) for level in zip(*parts, strict=True)]


def generated_msssim(sampler: Sampler, num: int) -> float:
    """Mean MS-SSIM of `num // 2` pairs of generated images (each image drawn on its own)."""
    module, devices = sampler.G.module, sampler.devices
    g_vars = devices.replicate(sampler.G.variables)
    count = process_share(num // 2)
    pairs = devices.round_batch(max(sampler.batch_size // 2, 1))
    rng = sampler.process_rng(_MSSSIM_STREAM)
    key = jax.random.fold_in(jax.random.PRNGKey(sampler.seed + _MSSSIM_STREAM),
                             jax.process_index())
    scores = []
    bar = sampler.bar(num // 2, "msssim pairs", "pair")
    for i in range(math.ceil(count / pairs)):
        z = rng.standard_normal((pairs, 2, module.z_dim)).astype(np.float32)
        c = sampler.labels(rng, 2 * pairs).reshape(pairs, 2, -1)
        (z, c), _ = devices.shard(z, c)
        s = _msssim_step(module, sampler.psi, sampler.noise_mode, g_vars, z, c,
                         jax.random.fold_in(key, i), np.float32(sampler.G.lod))
        n = min(pairs, count - i * pairs)
        scores.append(np.asarray(s, np.float64)[:n])
        bar.update(n * jax.process_count())
    bar.close()
    return float(np.mean(gather_rows(np.concatenate(scores))))
