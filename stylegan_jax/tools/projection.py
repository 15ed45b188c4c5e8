"""The official projector's optimisation (stylegan2-ada-pytorch `projector.py`) in JAX.

One w (broadcast to every layer) and the synthesis noise buffers are fitted to a target
image by Adam on the LPIPS distance plus a noise regulariser. Every number below comes
from the official `project()`: its defaults are `Settings`' defaults, `w_avg` / `w_std`
come from 10000 latents of `RandomState(123)`, noise buffers start as N(0, 1) and are
re-normalised after every step, and the synthesis runs with `noise_mode='const'` on the
buffers being optimised. The whole step is one compiled function, vmapped over a batch of
independent images (`project` is a batch of one); the distance is LPIPS, or a mean
squared error over a box pyramid where the LPIPS weights are missing (the schedule is the
same).

A W x H generator projects as a square one does: its target is the largest centred
window of the generator's aspect ratio, the noise regulariser's octaves stop where the
shorter side reaches 8, and LPIPS sees it area-downsampled by one integer factor on both
axes when its shorter side exceeds 256 (the official code takes a square to 256x256).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from tqdm import tqdm

from stylegan_jax.data.images import BadImage, decode_image, resize, to_channels
from stylegan_jax.metrics import image_ops, lpips, vgg
from stylegan_jax.models.registry import family_of, image_shape, is_generator
from stylegan_jax.models.sampling import mapping, synthesis
from stylegan_jax.shapes import ImageShape

LPIPS_MAX_SIZE = 256  # official: larger images are area-downsampled to 256 before VGG16
W_AVG_SEED = 123  # official: np.random.RandomState(123) draws the w statistics' latents
NOISE_REG_MIN_SIZE = 8  # official: the pyramid stops once a level is 8x8 or smaller
# (a rectangle's: once its shorter side is 8 or smaller)


@dataclass(frozen=True)
class Settings:
    """The official `project()` keyword defaults."""

    w_avg_samples: int = 10000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8  # torch.optim.Adam's default


def learning_rate(step, num_steps, s: Settings = Settings()):
    """Cosine ramp-down over the last 25 % of steps times a linear ramp-up over the first 5 %."""
    t = step / num_steps
    down = jnp.minimum(1.0, (1.0 - t) / s.lr_rampdown_length)
    down = 0.5 - 0.5 * jnp.cos(down * jnp.pi)
    return s.initial_learning_rate * down * jnp.minimum(1.0, t / s.lr_rampup_length)


def w_noise_scale(step, num_steps, w_std, s: Settings = Settings()):
    """Std of the noise added to w: 0.05 w_std, decaying quadratically to 0 at 75 % of steps."""
    t = step / num_steps
    ramp = jnp.maximum(0.0, 1.0 - t / s.noise_ramp_length)
    return w_std * s.initial_noise_factor * jnp.square(ramp)


def noise_regularizer(noise: dict[str, jax.Array]) -> jax.Array:
    """Sum over buffers and octaves (down to 8x8, or a shorter side of 8 for a rectangle;
    2x2 average pooling) of the squared mean shift-by-one autocorrelation along each axis
    (wrapping around, as torch.roll)."""
    total = jnp.float32(0.0)
    for buf in noise.values():
        x = buf
        while True:
            total += jnp.square(jnp.mean(x * jnp.roll(x, 1, axis=1)))
            total += jnp.square(jnp.mean(x * jnp.roll(x, 1, axis=0)))
            if min(x.shape) <= NOISE_REG_MIN_SIZE:
                break
            h, w = x.shape
            x = x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return total


def normalize_noise(noise: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Each buffer to zero mean and unit mean square (the official step's epilogue)."""
    def unit(x):
        x = x - jnp.mean(x)
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x)))
    return {k: unit(v) for k, v in noise.items()}


def noise_buffers(variables: dict) -> dict[str, jax.Array]:
    """The synthesis noise buffers ('synthesis/b8/conv0/noise_const', ...), [H, W] each."""
    flat = traverse_util.flatten_dict(variables.get("buffers", {}), sep="/")
    return {k: v for k, v in flat.items() if k.endswith("noise_const")}


def with_noise(variables: dict, noise: dict[str, jax.Array]) -> dict:
    """`variables` with its noise buffers replaced (the rest shared, not copied)."""
    flat = traverse_util.flatten_dict(variables["buffers"], sep="/")
    unknown = set(noise) - set(flat)
    if unknown:
        raise ValueError(f"no such noise buffers in the generator: {sorted(unknown)}")
    buffers = traverse_util.unflatten_dict({**flat, **noise}, sep="/")
    return {**variables, "buffers": buffers}


def check_generator(module) -> None:
    if not is_generator(module) or family_of(module).name != "stylegan2":
        raise ValueError(f"projection needs a StyleGAN2 generator, got "
                         f"{type(module).__module__}.{type(module).__name__}")
    if module.c_dim != 0:
        raise ValueError(f"projection needs an unconditional generator (c_dim 0, as the "
                         f"official projector), got c_dim {module.c_dim}")


def w_stats(module, variables, num_samples: int = 10000,
            batch_size: int = 2000) -> tuple[np.ndarray, float]:
    """(w_avg [1, w_dim], w_std) of the official projector: mean of w over `num_samples`
    latents of RandomState(123), and the root of the summed squared deviation / samples."""
    check_generator(module)
    z = np.random.RandomState(W_AVG_SEED).randn(num_samples, module.z_dim).astype(np.float32)
    c = jnp.zeros((batch_size, 0), jnp.float32)
    parts = []
    for i in range(0, num_samples, batch_size):
        zb = z[i:i + batch_size]
        padded = np.concatenate([zb, np.zeros((batch_size - len(zb), zb.shape[1]), np.float32)])
        ws = _mapping(module, variables, jnp.asarray(padded), c)
        parts.append(np.asarray(ws[: len(zb), 0], np.float64))
    w = np.concatenate(parts)
    w_avg = w.mean(axis=0, keepdims=True)
    w_std = float(np.sqrt(np.sum(np.square(w - w_avg)) / num_samples))
    return w_avg.astype(np.float32), w_std


_mapping = jax.jit(mapping, static_argnames=("module", "psi", "cutoff"))


def lpips_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) LPIPS compares: a square larger than 256 at 256x256 (official),
    a rectangle downsampled by the same integer factor on both axes, its shorter side to 256
    (a power-of-two side stays a whole number of pixels)."""
    factor = max(1, min(height, width) // LPIPS_MAX_SIZE)
    return height // factor, width // factor


def to_lpips_input(images: jax.Array) -> jax.Array:
    """[N, H, W, 1|3] in [-1, 1] -> RGB, area-downsampled to `lpips_size` (official for a
    square). RGBA would be composited over black, as the metrics do."""
    x = image_ops.to_rgb(images.astype(jnp.float32), (-1.0, 1.0))
    return image_ops.resize_area(x, lpips_size(*x.shape[1:3]))


def lpips_taps(lpips_vars: dict, images: jax.Array) -> list[jax.Array]:
    """The five unit-length VGG16 maps LPIPS compares, of images in [-1, 1]."""
    x = (to_lpips_input(images) - lpips.SHIFT) / lpips.SCALE
    taps, _ = vgg.VGG16Features().apply({"params": lpips_vars["params"]["vgg"]}, x)
    return [lpips._unit(t) for t in taps]


def lpips_distance(lpips_vars: dict, taps_a: list[jax.Array], taps_b: list[jax.Array]):
    """LPIPS [N] between two sets of taps (lpips.LPIPS's formula on precomputed features)."""
    total = 0.0
    for k, (a, b) in enumerate(zip(taps_a, taps_b, strict=True)):
        d = jnp.einsum("nhwc,c->nhw", jnp.square(a - b), lpips_vars["params"][f"lin{k}"],
                       precision=jax.lax.Precision.HIGHEST)
        total = total + jnp.mean(d, axis=(1, 2))
    return total


class State(NamedTuple):
    """What one optimisation step reads and writes, for one image (a leading [B] when batched)."""

    w: jax.Array  # [1, w_dim]
    noise: dict[str, jax.Array]  # noise buffers by name, [H, W]
    adam: optax.OptState
    step: jax.Array  # int32: steps taken


def _adam(s: Settings) -> optax.GradientTransformation:
    return optax.scale_by_adam(b1=s.adam_betas[0], b2=s.adam_betas[1], eps=s.adam_eps)


def init_state(w_avg: np.ndarray, noise_like: dict[str, jax.Array], key: jax.Array,
               s: Settings = Settings()) -> State:
    """w at w_avg, every noise buffer redrawn from N(0, 1) (official `randn_like`)."""
    keys = jax.random.split(key, max(len(noise_like), 1))
    noise = {name: jax.random.normal(k, v.shape, jnp.float32)
             for k, (name, v) in zip(keys, sorted(noise_like.items()), strict=False)}
    w = jnp.asarray(w_avg, jnp.float32).reshape(1, -1)
    return State(w, noise, _adam(s).init((w, noise)), jnp.int32(0))


def batched(state: State, batch: int) -> State:
    """`batch` copies of one image's state, stacked on a leading axis."""
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (batch, *jnp.shape(x))), state)


# The distance the projection minimises. LPIPS is the official one; PYRAMID_MSE stands in
# where the VGG16/LPIPS weights are not available: the mean over PYRAMID_LEVELS octaves of
# the squared error in [-1, 1] of 2x2 box averages (1/2 and 1/4 resolution). The finest
# octave is left out: a StyleGAN2 generator's per-pixel noise inputs put detail there that
# a projection cannot reproduce even for the generator's own images (on faces32, another
# noise draw alone moves an image by a pixel MSE of 0.01-0.03, the gap between generated
# and real images), while a real image's mismatch is not confined to it.
LPIPS = "lpips"
PYRAMID_MSE = "pyramid-mse"
DISTANCES = (LPIPS, PYRAMID_MSE)
PYRAMID_LEVELS = 2


def box_pyramid(images: jax.Array, levels: int = PYRAMID_LEVELS) -> list[jax.Array]:
    """[N, H, W, C] -> `levels` successive 2x2 block means, [N, H/2, W/2, C] first."""
    out, x = [], images.astype(jnp.float32)
    for _ in range(levels):
        n, h, w, c = x.shape
        x = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        out.append(x)
    return out


def check_distance(name: str) -> str:
    if name not in DISTANCES:
        raise ValueError(f"unknown projection distance {name!r}; expected one of {DISTANCES}")
    return name


def features(distance: str, distance_vars, images: jax.Array) -> list[jax.Array]:
    """What `distance` compares of images [N, H, W, C] in [-1, 1]: LPIPS's five unit-length
    VGG16 maps, or the box pyramid."""
    if distance == LPIPS:
        return lpips_taps(distance_vars, images)
    check_distance(distance)
    return box_pyramid(images)


def feature_distance(distance: str, distance_vars, feats_a: list[jax.Array],
                     feats_b: list[jax.Array]) -> jax.Array:
    """[N] distances between two sets of `features`."""
    if distance == LPIPS:
        return lpips_distance(distance_vars, feats_a, feats_b)
    check_distance(distance)
    levels = [jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
              for a, b in zip(feats_a, feats_b, strict=True)]
    return sum(levels) / len(levels)


def _render(module, g_vars, w, noise):
    """The image the loss sees: one w on every layer, the buffers being optimised as noise."""
    ws = jnp.broadcast_to(w[:, None, :], (1, module.num_ws, module.w_dim))
    return synthesis(module, with_noise(g_vars, noise), ws, jax.random.PRNGKey(0),
                     noise_mode="const")


def _loss(params, module, distance, g_vars, distance_vars, target_feats, w_noise,
          s: Settings):
    w, noise = params
    img = _render(module, g_vars, w + w_noise, noise)
    dist = feature_distance(distance, distance_vars, features(distance, distance_vars, img),
                            target_feats)[0]
    reg = noise_regularizer(noise)
    return dist + s.regularize_noise_weight * reg, dist


def _step(module, settings, distance, g_vars, distance_vars, target_feats, w_std, num_steps,
          key, state: State):
    lr = learning_rate(state.step, num_steps, settings)
    scale = w_noise_scale(state.step, num_steps, w_std, settings)
    w_noise = jax.random.normal(jax.random.fold_in(key, state.step), state.w.shape) * scale
    (loss, dist), grads = jax.value_and_grad(_loss, has_aux=True)(
        (state.w, state.noise), module, distance, g_vars, distance_vars, target_feats, w_noise,
        settings)
    updates, adam = _adam(settings).update(grads, state.adam)
    w, noise = jax.tree_util.tree_map(lambda p, u: p - lr * u, (state.w, state.noise), updates)
    return State(w, normalize_noise(noise), adam, state.step + 1), {"dist": dist, "loss": loss}


@functools.partial(jax.jit, static_argnames=("module", "settings", "distance"))
def step(module, settings: Settings, distance: str, g_vars: dict, distance_vars,
         target_feats: list[jax.Array], w_std, num_steps, key: jax.Array, state: State):
    """One official optimisation step of B images at once -> (new state, {'dist', 'loss'}
    [B] before the update).

    `target_feats` and `state` carry a leading [B]: each image has its own w, noise buffers
    and Adam state, and nothing mixes across images. Every image draws the w noise of step
    i from fold_in(key, i), so an image's result does not depend on its batch.
    """
    one = functools.partial(_step, module, settings, distance, g_vars, distance_vars)
    return jax.vmap(one, in_axes=(0, None, None, None, 0))(
        target_feats, w_std, num_steps, key, state)


@functools.partial(jax.jit, static_argnames=("module", "distance"))
def rendered_distance(module, distance: str, g_vars: dict, distance_vars,
                      target_feats: list[jax.Array], state: State):
    """(distance [B], images [B, H, W, C] in [-1, 1]) of the current w and noise buffers,
    rendered as the loss renders them (without the w noise)."""
    def one(feats, w, noise):
        img = _render(module, g_vars, w, noise)
        d = feature_distance(distance, distance_vars, features(distance, distance_vars, img),
                             feats)[0]
        return d, img[0]

    return jax.vmap(one)(target_feats, state.w, state.noise)


@functools.partial(jax.jit, static_argnames=("distance",))
def target_features(distance: str, distance_vars, targets_uint8: jax.Array) -> list[jax.Array]:
    """`features` of uint8 targets [B, H, W, C], each kept as a batch of one: [B, 1, ...]."""
    x = jnp.asarray(targets_uint8, jnp.float32) / 127.5 - 1.0
    return [f[:, None] for f in features(distance, distance_vars, x)]


def check_target_shape(module, targets: np.ndarray) -> None:
    """uint8 targets [N, H, W, C] must be at the generator's height, width and channels."""
    size = image_shape(module)
    want = (size.height, size.width, module.img_channels)
    shape = tuple(np.shape(targets))
    if len(shape) != 4 or shape[1:] != want:
        got = shape[1:] if len(shape) == 4 else shape
        raise ValueError(f"target image has shape {got} (H, W, C), the generator makes {want}")


def optimize(module, g_vars: dict, distance: str, distance_vars, targets_uint8: np.ndarray,
             num_steps: int, seed: int = 303, settings: Settings = Settings(),
             stats: tuple[np.ndarray, float] | None = None, keep_steps: bool = False,
             bar=None) -> tuple[State, jax.Array, list[jax.Array]]:
    """Runs the official schedule on B targets at once (uint8 [B, H, W, C]).

    Every image starts as the official `project(seed)` starts (the same noise draws) and
    is optimised independently. `stats`: (w_avg, w_std) when already known (`w_stats`).
    Returns (final state, target features, w after each step [B, 1, w_dim] if
    `keep_steps`). `bar` (tqdm, or None) is advanced by one per step.
    """
    check_generator(module)
    check_steps(num_steps)
    check_distance(distance)
    check_target_shape(module, targets_uint8)
    w_avg, w_std = stats or w_stats(module, g_vars, settings.w_avg_samples)
    feats = target_features(distance, distance_vars, jnp.asarray(targets_uint8))
    key_noise, key_w = jax.random.split(jax.random.PRNGKey(seed))
    state = batched(init_state(w_avg, noise_buffers(g_vars), key_noise, settings),
                    len(targets_uint8))
    ws = []
    for i in range(num_steps):
        state, losses = step(module, settings, distance, g_vars, distance_vars, feats,
                             jnp.float32(w_std), jnp.float32(num_steps), key_w, state)
        if keep_steps:
            ws.append(state.w)
        if bar is not None:
            bar.update(1)
            if i % 10 == 0 or i == num_steps - 1:  # reading back waits for the step
                bar.set_postfix(dist=f"{float(jnp.mean(losses['dist'])):.4f}",
                                loss=f"{float(jnp.mean(losses['loss'])):.4f}")
    return state, feats, ws


def crop_box(height: int, width: int, out_height: int, out_width: int
             ) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width): the largest centred window of an image
    height x width with the aspect ratio out_width : out_height (for a square: its largest
    centred square, as the official projector crops); sides rounded down."""
    if width * out_height >= height * out_width:  # wider than the target: full height
        ch, cw = height, height * out_width // out_height
    else:
        ch, cw = width * out_height // out_width, width
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def fit_image(image: np.ndarray, size: int | ImageShape, channels: int) -> np.ndarray:
    """uint8 [H, W, channels] of a uint8 HWC image for a generator of `size` (an int:
    size x size): its largest centred window of the generator's aspect ratio (`crop_box`),
    resized with PIL's Lanczos filter (official; smaller images are upscaled)."""
    h, w = (size.height, size.width) if isinstance(size, ImageShape) else (size, size)
    image = to_channels(image, channels)
    top, left, ch, cw = crop_box(*image.shape[:2], h, w)
    window = np.ascontiguousarray(image[top:top + ch, left:left + cw])
    return resize(window, w, h, "lanczos")


def load_image(path: str | Path, size: int | ImageShape, channels: int,
               what: str = "--target") -> np.ndarray:
    """`fit_image` of an image file; errors name `what` (the flag) and the file."""
    path = Path(path)
    try:
        return fit_image(decode_image(path.read_bytes()), size, channels)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path}: is a directory, expected an image file") from None
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    except BadImage as e:
        raise ValueError(f"{what} {path}: {e}") from None


def check_steps(num_steps: int, flag: str = "--num-steps") -> int:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"{flag} must be a positive integer, got {num_steps!r}")
    return num_steps

def project(module, g_vars: dict, lpips_vars: dict, target_uint8: np.ndarray, num_steps: int,
            seed: int = 303, settings: Settings = Settings(), progress: bool = True
            ) -> np.ndarray:
    """The official `project()`: w after each step, [num_steps, w_dim] float32.

    `target_uint8` is [H, W, C] at the generator's height, width and channels. The
    optimised noise buffers are discarded, as the official script renders its outputs
    with the generator's own.
    """
    check_generator(module)
    check_steps(num_steps)
    check_target_shape(module, np.asarray(target_uint8)[None])
    with tqdm(total=num_steps, desc="project", unit="step", disable=not progress) as bar:
        _, _, ws = optimize(module, g_vars, LPIPS, lpips_vars, np.asarray(target_uint8)[None],
                            num_steps, seed, settings, keep_steps=True,
                            bar=bar if progress else None)
    return np.asarray(jnp.stack([w[0, 0] for w in ws]), np.float32)
