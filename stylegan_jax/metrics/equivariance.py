"""Equivariance metrics (EQ-T, EQ-T_frac, EQ-R) of "Alias-Free Generative Adversarial
Networks" (Karras et al. 2021, appendix E), as the official `metrics/equivariance.py`.

A StyleGAN3 generator draws an image twice from the same ws: once as is (`orig`), once
with its input `transform` moving the output. The first image, moved by an image-space
operator, is compared with the second inside the operator's valid region:

- `int`  (eqt*_int):  translation by whole pixels (t in [-1/8, 1/8) of the image, rounded);
- `frac` (eqt*_frac): sub-pixel translation by a Lanczos (a = 3) windowed-sinc filter;
- `rot`  (eqr*):      rotation by an angle in [-pi, pi), resampled through a band-limited
  oriented filter on a 4x upsampled image; the generator's rotated image gets the same
  band limit (the "pseudo-rotation") before the comparison.

On a W x H generator (StyleGAN3 `img_aspect`) the moves are the generator's own, in its
input's units, in which the image's shorter side R is 1 and pixels are square: a translation
t moves the image by t R pixels along either axis (drawn as on the square: |t| <= 1/8, whole
pixels for `int`), and a rotation turns the image about its centre by the angle in pixels
(a rectangle's corners leave the frame and the mask drops them). The image operators keep
the official definitions (fractions of each side, normalised coordinates, equal to the
above on squares); `error_sums` converts. Rotating in each side's normalised coordinates
instead would be a shear-and-scale on a rectangle, which no input transform makes.

PSNR = 20 log10(2) - 10 log10(MSE), the images' range being [-1, 1]; the squared errors
and the mask are summed over every pixel, channel and sample before the ratio. There
is no cap: an exactly equivariant generator scores +inf, as the official code's does.

As the official metric runs batches of 4 per GPU, samples come in groups of GROUP = 4
that share one random transform; each group is also one synthesis batch (StyleGAN3
normalises styles over its batch). Images are NHWC; masks are [1, H, W, 1].
`generator_psnrs` is the metrics' pass over a generator, sharded over the devices.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics.parallel import gather_rows, process_share
from stylegan_jax.metrics.sampler import Sampler
from stylegan_jax.models import sampling
from stylegan_jax.models.registry import family_label, family_of, is_generator

MODES = ("int", "frac", "rot")
GROUP = 4  # samples per random transform (the official batch_size per GPU)
TRANSLATE_MAX = 0.125  # of the image
ROTATE_MAX = 1.0  # in half turns


def sinc(x: jax.Array) -> jax.Array:
    """sin(pi x) / (pi x), 1 at 0."""
    y = jnp.abs(x * np.pi)
    return jnp.where(y < 1e-30, 1.0, jnp.sin(y) / jnp.maximum(y, 1e-30))


def lanczos_window(x: jax.Array, a: float) -> jax.Array:
    x = jnp.abs(x) / a
    return jnp.where(x < 1, sinc(x), 0.0)


def rotation_matrix(angle) -> jax.Array:
    """3x3 [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] (the official convention)."""
    c, s = jnp.cos(angle), jnp.sin(angle)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack([jnp.stack([c, s, zero]), jnp.stack([-s, c, zero]),
                      jnp.stack([zero, zero, one])]).astype(jnp.float32)


def _region(n: int, lo, hi) -> jax.Array:
    """[n] float32: 1 on [lo, hi), else 0 (bounds may be traced)."""
    i = jnp.arange(n)
    return ((i >= lo) & (i < hi)).astype(jnp.float32)


def _shift(x: jax.Array, dy, dx, out_hw: tuple[int, int]) -> jax.Array:
    """out[i, j] = x[i - dy, j - dx], zero where that is outside x ([N, h, w, C]; dy and
    dx traced integers)."""
    (h, w), (oh, ow) = x.shape[1:3], out_hw
    rows, cols = jnp.arange(oh) - dy, jnp.arange(ow) - dx
    valid = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    x = jnp.take(x, jnp.clip(rows, 0, h - 1), axis=1)
    x = jnp.take(x, jnp.clip(cols, 0, w - 1), axis=2)
    return x * valid[None, :, :, None].astype(x.dtype)


def _upfir(x: jax.Array, f: jax.Array, up: int, pad: tuple[int, int], gain: float = 1.0
           ) -> jax.Array:
    """The official `upfirdn2d` (zero insertion by `up`, padding (lo, hi) on both axes,
    true convolution with the 2-D [k, k] filter f, no downsampling) for a traced f, run
    polyphase: each of the up x up output phases is one small convolution of x, so no
    multiply touches an inserted zero. x: [N, H, W, C]."""
    n, h, w, c = x.shape
    k = f.shape[0]
    lo, hi = pad
    # y[up*q + r] = sum_s f[s] xu[up*q + r + d - s]; nonzero terms s = up*t + r + d.
    d = k - 1 - lo
    t_lo, t_hi = -((d + up - 1) // up), (k - 1 - d) // up
    taps = t_hi - t_lo + 1
    # F[t - t_lo, r] = f[up*t + r + d] (zero outside the filter), in both axes.
    start = up * t_lo + d
    fp = jnp.pad(f, ((max(-start, 0), 0),) * 2)[max(start, 0):, max(start, 0):]
    size = up * taps
    fp = jnp.pad(fp, ((0, max(size - fp.shape[0], 0)),) * 2)[:size, :size]
    phases = fp.reshape(taps, up, taps, up)[::-1, :, ::-1, :]  # correlation taps
    kernel = phases.transpose(0, 2, 1, 3).reshape(taps, taps, 1, up * up) * gain
    out_len = [m * up + lo + hi - k + 1 for m in (h, w)]
    q = [math.ceil(m / up) for m in out_len]
    xb = x.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1)
    xb = jax.lax.pad(xb, jnp.zeros((), xb.dtype),
                     ((0, 0, 0), (t_hi, q[0] - t_lo - h, 0), (t_hi, q[1] - t_lo - w, 0),
                      (0, 0, 0)))
    y = jax.lax.conv_general_dilated(xb, kernel.astype(x.dtype), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    y = y.reshape(n * c, q[0], q[1], up, up).transpose(0, 1, 3, 2, 4)
    y = y.reshape(n, c, q[0] * up, q[1] * up)[:, :, : out_len[0], : out_len[1]]
    return y.transpose(0, 2, 3, 1)


def integer_translation(x: jax.Array, tx, ty) -> tuple[jax.Array, jax.Array]:
    """x moved by (tx, ty) (fractions of the width / height, rounded to whole pixels) and
    the mask of the pixels that came from inside x (official `apply_integer_translation`)."""
    _, h, w, _ = x.shape
    ix = jnp.round(jnp.asarray(tx, jnp.float32) * w).astype(jnp.int32)
    iy = jnp.round(jnp.asarray(ty, jnp.float32) * h).astype(jnp.int32)
    z = _shift(x, iy, ix, (h, w))
    m = _region(h, iy, iy + h)[:, None] * _region(w, ix, ix + w)[None, :]
    return z, m[None, :, :, None]


def fractional_translation(x: jax.Array, tx, ty, a: int = 3) -> tuple[jax.Array, jax.Array]:
    """x moved by (tx, ty) (fractions of the image) through a separable Lanczos-windowed
    sinc of 2a taps, and the mask of the pixels whose taps all lie inside x (official
    `apply_fractional_translation`)."""
    _, h, w, _ = x.shape
    tx = jnp.asarray(tx, jnp.float32) * w
    ty = jnp.asarray(ty, jnp.float32) * h
    ix, iy = jnp.floor(tx).astype(jnp.int32), jnp.floor(ty).astype(jnp.int32)
    fx, fy = tx - ix, ty - iy
    b = a - 1
    taps = jnp.arange(a * 2, dtype=jnp.float32) - b

    def lanczos(frac):
        f = sinc(taps - frac) * sinc((taps - frac) / a)
        return f / jnp.sum(f)

    f = lanczos(fy)[:, None] * lanczos(fx)[None, :]
    k = 2 * a  # filter2d's own padding plus the official [b, a] on each axis
    o = _upfir(x, f, 1, (b + k // 2, a + (k - 1) // 2))  # [N, H + b + a, W + b + a, C]
    z = _shift(o, iy - b, ix - b, (h, w))
    # Zero outside the official output window; rows [max(iy - b, 0), min(iy + a, 0) + H).
    z = z * (_region(h, iy - b, iy + a + h)[:, None] * _region(w, ix - b, ix + a + w)[None, :]
             )[None, :, :, None]
    m = _region(h, iy + a, iy - b + h)[:, None] * _region(w, ix + a, ix - b + w)[None, :]
    return z, m[None, :, :, None]


def _tap_grid(aflt: int, up: int) -> np.ndarray:
    """The filter design grid: (2 aflt up - 1) taps 1/up apart, in FFT order (0 first)."""
    taps = (np.arange(aflt * up * 2 - 1) + 1) / up - aflt
    return np.roll(taps, 1 - aflt * up).astype(np.float32)


def affine_bandlimit_filter(mat, a: int = 3, amax: int = 16, aflt: int = 64, up: int = 4,
                            cutoff_in: float = 1, cutoff_out: float = 1) -> jax.Array:
    """[2 amax up - 1]^2 low-pass that band-limits both the input grid and the grid the
    2-D part of `mat` maps it to: the convolution of two oriented sinc filters, windowed by
    the convolution of two oriented Lanczos windows (circular, by FFT on a wide grid),
    normalised per upsampling phase (official `construct_affine_bandlimit_filter`)."""
    if not a <= amax < aflt:
        raise ValueError(f"affine_bandlimit_filter: need a <= amax < aflt, got {a}, {amax}, "
                         f"{aflt}")
    mat = jnp.asarray(mat, jnp.float32)
    taps = _tap_grid(aflt, up)
    yi, xi = np.meshgrid(taps, taps, indexing="ij")
    xo = xi * mat[0, 0] + yi * mat[0, 1]
    yo = xi * mat[1, 0] + yi * mat[1, 1]

    def conv(p, q):
        return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(p) * jnp.fft.fft2(q)))

    f = conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in),
             sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    f = f * conv(lanczos_window(xi, a) * lanczos_window(yi, a),
                 lanczos_window(xo, a) * lanczos_window(yo, a))
    c = (aflt - amax) * up
    f = jnp.roll(f, (aflt * up - 1, aflt * up - 1), axis=(0, 1))[c:-c, c:-c]
    f = jnp.pad(f, ((0, 1), (0, 1))).reshape(amax * 2, up, amax * 2, up)
    f = f / jnp.sum(f, axis=(0, 2), keepdims=True) / (up**2)
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def _grid_sample(y: jax.Array, gx: jax.Array, gy: jax.Array) -> jax.Array:
    """Bilinear samples of y [N, Hy, Wy, C] at normalised coordinates gx, gy [H, W]
    (torch `grid_sample`, align_corners=False, zero padding)."""
    _, hy, wy, _ = y.shape
    px, py = ((gx + 1) * wy - 1) / 2, ((gy + 1) * hy - 1) / 2
    x0, y0 = jnp.floor(px), jnp.floor(py)
    out = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - jnp.abs(px - xi)) * (1 - jnp.abs(py - yi))
            valid = (xi >= 0) & (xi < wy) & (yi >= 0) & (yi < hy)
            xc = jnp.clip(xi, 0, wy - 1).astype(jnp.int32)
            yc = jnp.clip(yi, 0, hy - 1).astype(jnp.int32)
            out = out + y[:, yc, xc, :] * (weight * valid)[None, :, :, None]
    return out


def affine_transformation(x: jax.Array, mat, up: int = 4, isotropic: bool = False,
                          **filter_kwargs) -> tuple[jax.Array, jax.Array]:
    """x resampled by the affine `mat` (3x3): band-limited `up`-times upsampling, then
    bilinear sampling of the transformed grid; the mask keeps pixels whose nearest
    upsampled sample is a filter width inside the image (official
    `apply_affine_transformation`). `mat` acts on normalised image coordinates ([-1, 1]
    per side, translations in fractions of each side: the official definition) or, with
    `isotropic`, on centred coordinates in units of the shorter side (square pixels, as
    the band-limit filter reads it); the two agree on squares."""
    _, h, w, _ = x.shape
    mat = jnp.asarray(mat, jnp.float32)
    f = affine_bandlimit_filter(mat, up=up, **filter_kwargs)
    p = f.shape[0] // 2
    k = f.shape[0]
    # Normalised coordinate i is 2 s_i times the isotropic one (s = shorter side / side).
    r = min(h, w)
    s = jnp.array([r / w, r / h] if isotropic else [1.0, 1.0], jnp.float32)
    theta = jnp.linalg.inv(mat)[:2]
    theta = jnp.concatenate([theta[:, :2] * (s[:, None] / s[None, :]),
                             theta[:, 2:] * (2 * s[:, None])], axis=1)
    theta = theta.at[:, 2].add(jnp.array([1 / up / w, 1 / up / h]))
    theta = theta * jnp.array([[w / (w + p / up * 2)], [h / (h + p / up * 2)]])
    # Upsampled and padded by p: official upsample2d(x, f, up, padding=p).
    y = _upfir(x, f, up, (p + (k + up - 1) // 2, p + (k - up) // 2), gain=up**2)
    xn = (2 * np.arange(w) + 1) / w - 1
    yn = (2 * np.arange(h) + 1) / h - 1
    xn, yn = np.meshgrid(xn.astype(np.float32), yn.astype(np.float32))  # [H, W]
    gx = theta[0, 0] * xn + theta[0, 1] * yn + theta[0, 2]
    gy = theta[1, 0] * xn + theta[1, 1] * yn + theta[1, 2]
    z = _grid_sample(y, gx, gy)
    # Nearest sample (round half to even, as torch) of a mask that is 1 but for a border
    # of 2p + 1 upsampled pixels.
    hy, wy = y.shape[1:3]
    c = p * 2 + 1
    sx = jnp.round(((gx + 1) * wy - 1) / 2)
    sy = jnp.round(((gy + 1) * hy - 1) / 2)
    m = ((sx >= c) & (sx < wy - c) & (sy >= c) & (sy < hy - c)).astype(jnp.float32)
    return z, m[None, :, :, None]


def fractional_rotation(x: jax.Array, angle, a: int = 3, isotropic: bool = False
                        ) -> tuple[jax.Array, jax.Array]:
    """x rotated by `angle` (radians; official `apply_fractional_rotation`); `isotropic`:
    in pixels rather than normalised coordinates (see affine_transformation)."""
    return affine_transformation(x, rotation_matrix(angle), a=a, amax=a * 2,
                                 isotropic=isotropic)


def fractional_pseudo_rotation(x: jax.Array, angle, a: int = 3) -> tuple[jax.Array, jax.Array]:
    """x with the frequency content it would have after rotation by `angle`, not rotated
    (official `apply_fractional_pseudo_rotation`); the mask drops the filter's border."""
    f = affine_bandlimit_filter(rotation_matrix(-angle), a=a, amax=a * 2, up=1)
    k = f.shape[0]
    y = _upfir(x, f, 1, (k // 2, (k - 1) // 2))
    _, h, w, _ = x.shape
    c = k // 2
    m = _region(h, c, h - c)[:, None] * _region(w, c, w - c)[None, :]
    return y, m[None, :, :, None]


# --- the metric ---------------------------------------------------------------------


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"equivariance mode must be one of {MODES}, got {mode!r}")


def draw_param(rng: np.random.Generator, mode: str, resolution: int) -> np.ndarray:
    """One group's random transform: [2] translation (in the input's units: fractions of
    the shorter side `resolution`; whole pixels for 'int') or [2] = (angle in radians, 0)
    for 'rot'."""
    check_mode(mode)
    if mode == "rot":
        angle = (rng.random(dtype=np.float32) * 2 - 1) * np.float32(ROTATE_MAX * np.pi)
        return np.array([angle, 0.0], np.float32)
    t = (rng.random(2, dtype=np.float32) * 2 - 1) * np.float32(TRANSLATE_MAX)
    if mode == "int":
        t = np.round(t * resolution) / np.float32(resolution)
    return t.astype(np.float32)


def input_transform(mode: str, param: jax.Array) -> jax.Array:
    """The generator's input `transform` that moves its output by `param` (the inverse
    of the image-space move: -t, or rotation_matrix(-angle))."""
    check_mode(mode)
    if mode == "rot":
        return rotation_matrix(-param[0])
    return jnp.eye(3, dtype=jnp.float32).at[:2, 2].set(-param)


def error_sums(mode: str, param: jax.Array, orig: jax.Array, moved: jax.Array) -> jax.Array:
    """[2] float32: the masked squared error between `orig` moved in image space and the
    generator's `moved` image, and the mask's sum (over every pixel, channel, sample).
    `param` is in the input's units (the images' shorter side is 1; see the module)."""
    check_mode(mode)
    _, h, w, _ = orig.shape
    r = min(h, w)  # powers of two: the scalings below are exact (1 on squares)
    tx, ty = param[0] * (r / w), param[1] * (r / h)  # fractions of the width / height
    if mode == "rot":
        ref, ref_mask = fractional_rotation(orig, param[0], isotropic=True)
        moved, pseudo_mask = fractional_pseudo_rotation(moved, param[0])
        mask = ref_mask * pseudo_mask
    elif mode == "int":
        ref, mask = integer_translation(orig, tx, ty)
    else:
        ref, mask = fractional_translation(orig, tx, ty)
    n, _, _, c = orig.shape
    return jnp.stack([jnp.sum(jnp.square(ref - moved) * mask), jnp.sum(mask) * n * c])


def psnr(sums: np.ndarray) -> float:
    """PSNR in dB of summed [squared error, mask]: 20 log10(2) - 10 log10(MSE); +inf for
    an exact match (no cap, as the official)."""
    err, count = np.asarray(sums, np.float64)
    with np.errstate(divide="ignore"):
        return float(20 * np.log10(2) - 10 * np.log10(err / count))


def group_sums(module, variables: dict, modes: tuple[str, ...], z: jax.Array, c: jax.Array,
               params: jax.Array, psi: float = 1.0) -> jax.Array:
    """[G, M, 2] error sums of G groups for each of the M `modes`: z [G, GROUP, z_dim],
    c [G, GROUP, c_dim], params [G, M, 2] (draw_param per mode). The modes share each
    group's unmoved image; all M + 1 images of a group come from one synthesis trace
    (vmapped over the transforms, each still a batch of GROUP), in float32 as the
    official `force_fp32`. Traceable; `module`, `modes` and `psi` static."""
    for mode in modes:
        check_mode(mode)
    if getattr(module, "num_bf16_res", 0):
        module = module.clone(num_bf16_res=0)
    g, k = z.shape[:2]
    ws = sampling.mapping(module, variables, z.reshape(g * k, -1), c.reshape(g * k, -1),
                          psi=psi)
    ws = ws.reshape(g, k, *ws.shape[1:])
    key = jax.random.PRNGKey(0)  # StyleGAN3 has no noise inputs

    def draw(ws_g, transform):
        v = sampling.with_input_transform(variables, transform)
        return sampling.synthesis(module, v, ws_g, key, noise_mode="const")

    def one_group(ws_g, p):
        transforms = jnp.stack([jnp.eye(3, dtype=jnp.float32)]
                               + [input_transform(m, p[i]) for i, m in enumerate(modes)])
        images = jax.vmap(draw, in_axes=(None, 0))(ws_g, transforms)
        return jnp.stack([error_sums(m, p[i], images[0], images[i + 1])
                          for i, m in enumerate(modes)])

    return jax.vmap(one_group)(ws, params)


_step = jax.jit(group_sums, static_argnames=("module", "modes", "psi"))


def generator_psnrs(metric: str, sampler: Sampler, num: int, modes: tuple[str, ...]
                    ) -> dict[str, float]:
    """Mode -> PSNR of `num` samples (rounded up to whole groups of 4 per process), each
    group with one random transform per mode; errors and masks summed over processes.
    `metric` names the metric asking, for the error a generator without an input
    transform (not StyleGAN3) gets."""
    module, devices = sampler.G.module, sampler.devices
    if not (is_generator(module) and family_of(module).input_transform):
        raise ValueError(
            f"{metric}: the equivariance metrics need a generator with an input "
            "transform (StyleGAN3, synthesis.input.transform); this is a "
            f"{family_label(module)}")
    g_vars = devices.replicate(sampler.G.variables)
    num_groups = math.ceil(process_share(num) / GROUP)
    # batch_size counts every synthesised image: GROUP per group and transform.
    per_step = devices.round_batch(max(sampler.batch_size // (GROUP * (len(modes) + 1)), 1))
    rng = sampler.process_rng(2)
    sums = []
    bar = sampler.bar(num, "equivariance " + ",".join(modes), "img")
    for i in range(math.ceil(num_groups / per_step)):
        z = rng.standard_normal((per_step, GROUP, module.z_dim)).astype(np.float32)
        c = sampler.labels(rng, per_step * GROUP).reshape(per_step, GROUP, -1)
        params = np.stack([[draw_param(rng, m, module.img_resolution) for m in modes]
                           for _ in range(per_step)])
        (z, c, params), _ = devices.shard(z, c, params)
        s = _step(module=module, variables=g_vars, modes=modes, z=z, c=c, params=params,
                  psi=sampler.psi)
        n = min(per_step, num_groups - i * per_step)
        sums.append(np.asarray(s, np.float64)[:n])
        bar.update(min(n * GROUP, num) * jax.process_count())
    bar.close()
    total = gather_rows(np.concatenate(sums)).sum(axis=0)  # [modes, 2]
    return {m: psnr(total[i]) for i, m in enumerate(modes)}
