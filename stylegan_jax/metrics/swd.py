"""Sliced Wasserstein distance between Laplacian pyramids of two image sets (ProGAN's SWD).

The ProGAN paper's network-free metric, with its official settings: each image's Laplacian
pyramid (a 5x5 binomial filter with mirrored edges, levels down to 16x16), 128 random 7x7
neighbourhoods per image and level, each set's descriptors normalised per colour channel,
then the mean over 4 repeats of the mean 1-D Wasserstein distance along 128 random unit
directions, x1e3 per level, and the average over levels. Images enter as uint8 with 3
channels (grayscale repeated, as the official evaluation feeds them; RGBA composited over
black, as the other metrics see it).

A W x H image set (power-of-two sides) is measured the same way: the pyramid's levels are
halved on both axes while the shorter side is >= 16, and neighbourhood centres are drawn
over each level's rows and columns. Its per-level keys name each level `<W>x<H>`.

The random draws (neighbourhood centres, directions) are arguments, so that a test can
inject the official code's draws; `draw_centres` / `draw_directions` make them from a NumPy
generator for real use. Descriptor extraction is jittable per batch (and so shards over
devices with the batch); normalisation and the distance run once per set on the host, in
NumPy float32 as ProGAN's (the same arithmetic, so the same rounding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics import image_ops

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16

# The binomial filter of cv2.pyrDown, as ProGAN's pyramid uses it.
_BINOMIAL = np.outer([1.0, 4.0, 6.0, 4.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0]) / 256.0


Size = int | tuple[int, int]  # a square's side, or (height, width)


def _height_width(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int | np.integer) else tuple(size)


def level_sizes(size: Size) -> list[tuple[int, int]]:
    """The pyramid's (height, width) levels: the image's, halved while the shorter side is
    >= 16 (ProGAN's levels for a square)."""
    h, w = _height_width(size)
    if min(h, w) < MIN_RESOLUTION:
        raise ValueError(f"SWD needs images whose shorter side is at least {MIN_RESOLUTION}, "
                         f"got {w}x{h} (W x H)")
    out = []
    while min(h, w) >= MIN_RESOLUTION:
        out.append((h, w))
        h, w = h // 2, w // 2
    return out


def level_resolutions(resolution: int) -> list[int]:
    """A square's level sides: the image's, halved while >= 16 (ProGAN's levels)."""
    return [h for h, _ in level_sizes(resolution)]


def result_keys(name: str, size: Size) -> tuple[str, ...]:
    """The average (`name`, ranked as the metric) then one key per level: `name_<res>` for
    a square (ProGAN's table), `name_<W>x<H>` for a rectangle."""
    return (name, *(f"{name}_{h}" if h == w else f"{name}_{w}x{h}"
                    for h, w in level_sizes(size)))


def _filter(x: jax.Array, scale: float) -> jax.Array:
    """The 5x5 binomial filter of every channel of NHWC `x`, edges mirrored without repeating
    the edge pixel (scipy.ndimage 'mirror' = numpy 'reflect')."""
    n, h, w, c = x.shape
    planes = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
    planes = jnp.pad(planes, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    kernel = jnp.asarray(_BINOMIAL * scale, x.dtype)[:, :, None, None]
    out = jax.lax.conv_general_dilated(planes, kernel, (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=jax.lax.Precision.HIGHEST)
    return jnp.transpose(out.reshape(n, c, h, w), (0, 2, 3, 1))


def _pyr_down(x: jax.Array) -> jax.Array:
    return _filter(x, 1.0)[:, ::2, ::2]


def _pyr_up(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    up = jnp.zeros((n, 2 * h, 2 * w, c), x.dtype).at[:, ::2, ::2].set(x)
    return _filter(up, 4.0)


def laplacian_pyramid(images: jax.Array, num_levels: int) -> list[jax.Array]:
    """float32 NHWC levels: band-pass differences, then the last low-pass level."""
    levels = [jnp.asarray(images, jnp.float32)]
    for _ in range(1, num_levels):
        low = _pyr_down(levels[-1])
        levels[-1] = levels[-1] - _pyr_up(low)
        levels.append(low)
    return levels


def neighbourhoods(level: jax.Array, ys: jax.Array, xs: jax.Array) -> jax.Array:
    """[N * k, C * 7 * 7] patches of NHWC `level` centred at (ys, xs) ([N, k] each), in
    ProGAN's descriptor order: channel, then column, then row (its index grid puts the
    column offset on the third axis), which matters only where directions are injected."""
    half = NHOOD_SIZE // 2
    n, k = ys.shape
    offsets = jnp.arange(-half, half + 1)
    rows = (ys.reshape(n, k, 1, 1) + offsets[:, None])  # [n, k, 7, 1]
    cols = (xs.reshape(n, k, 1, 1) + offsets[None, :])  # [n, k, 1, 7]
    image = jnp.arange(n).reshape(n, 1, 1, 1)
    patches = level[image, rows, cols]  # [n, k, 7, 7, C]
    return jnp.transpose(patches, (0, 1, 4, 3, 2)).reshape(n * k, -1)


def as_rgb(images: jax.Array) -> jax.Array:
    """float32 RGB in [0, 255] of uint8 NHWC: grayscale repeated to three channels, as the
    official evaluation feeds images; RGBA composited over black (`image_ops.to_rgb`)."""
    if images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"SWD takes 1, 3 or 4 channels, got shape {images.shape}")
    return image_ops.to_rgb(jnp.asarray(images, jnp.float32), (0.0, 255.0))


def batch_descriptors(images: jax.Array, centres: jax.Array) -> list[jax.Array]:
    """Raw descriptors of uint8 NHWC `images` per pyramid level.

    centres: int32 [N, levels, k, 2] (row, column) of each neighbourhood, within
    [3, height - 3) x [3, width - 3) of its level. Returns float32 [N * k, 3 * 49] per level.
    """
    images = as_rgb(images)
    levels = laplacian_pyramid(images, centres.shape[1])
    return [neighbourhoods(lv, centres[:, i, :, 0], centres[:, i, :, 1])
            for i, lv in enumerate(levels)]


batch_descriptors_jit = jax.jit(batch_descriptors)


def draw_centres(rng: np.random.Generator, n: int, size: Size,
                 per_image: int = NHOODS_PER_IMAGE) -> np.ndarray:
    """int32 [n, levels, per_image, 2] (row, column) neighbourhood centres, uniform over
    each level's positions whose 7x7 neighbourhood lies inside (as ProGAN draws them; a
    square's draws are those of a scalar bound: NumPy draws an equal array bound alike)."""
    half = NHOOD_SIZE // 2
    levels = level_sizes(size)
    out = np.empty((n, len(levels), per_image, 2), np.int32)
    for i, (h, w) in enumerate(levels):
        out[:, i] = rng.integers(half, np.array([h - half, w - half]), size=(n, per_image, 2))
    return out


def draw_directions(rng: np.random.Generator, dims: int, repeats: int = DIR_REPEATS,
                    per_repeat: int = DIRS_PER_REPEAT) -> np.ndarray:
    """float64 [repeats, dims, per_repeat] standard normal directions (normalised later)."""
    return rng.standard_normal((repeats, dims, per_repeat))


def normalise(descriptors: np.ndarray) -> np.ndarray:
    """One set's descriptors [M, C * 49] -> zero mean, unit (population) standard deviation
    per colour channel over all its neighbourhoods and pixels, in float32 NumPy with
    ProGAN's reduction layout (so its rounding too)."""
    d = np.array(descriptors, np.float32).reshape(descriptors.shape[0], 3, NHOOD_SIZE,
                                                  NHOOD_SIZE)
    d -= np.mean(d, axis=(0, 2, 3), keepdims=True)
    std = np.std(d, axis=(0, 2, 3), keepdims=True)
    if np.any(std == 0):
        raise ValueError("SWD: an image set has a constant colour channel (standard deviation "
                         "0), so its descriptors cannot be normalised")
    d /= std
    return d.reshape(d.shape[0], -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Mean over repeats and directions of the 1-D Wasserstein distance between the
    projections of normalised descriptor sets `a` and `b` ([M, D] each, equal M).

    directions: [repeats, D, k] as drawn; each column is scaled to unit length (in float64,
    then float32, as ProGAN does). Runs on the host in NumPy, as ProGAN's: XLA's CPU sort
    is ~20x slower than NumPy's on these [M, 128] columns."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"SWD compares equal-size descriptor sets, got {a.shape} and {b.shape}")
    d = np.asarray(directions, np.float64)
    if d.ndim != 3 or d.shape[1] != a.shape[1]:
        raise ValueError(f"directions must be [repeats, {a.shape[1]}, k], got {d.shape}")
    per_repeat = []
    for dirs in d:
        dirs = (dirs / np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))).astype(
            np.float32)
        pa = np.sort(np.matmul(a, dirs), axis=0)
        pb = np.sort(np.matmul(b, dirs), axis=0)
        per_repeat.append(np.mean(np.abs(pa - pb)))
    return float(np.mean(per_repeat))


def swd_levels(real: list[np.ndarray], fake: list[np.ndarray],
               directions: list[np.ndarray]) -> list[float]:
    """Per level: SWD x1e3 of the raw descriptor sets (normalised here, each on its own)."""
    if len(real) != len(fake) or len(real) != len(directions):
        raise ValueError("SWD: real, fake and directions need one entry per pyramid level")
    return [1e3 * sliced_wasserstein(normalise(r), normalise(f), d)
            for r, f, d in zip(real, fake, directions, strict=True)]


def results(name: str, size: Size, per_level: list[float]) -> dict[str, float]:
    """{name: average over levels, name_<res>: each level}, as the official table lists."""
    keys = result_keys(name, size)
    return {keys[0]: float(np.mean(per_level)),
            **{k: float(v) for k, v in zip(keys[1:], per_level, strict=True)}}
