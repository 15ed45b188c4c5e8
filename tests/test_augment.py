"""The ADA pipe's behaviour beyond the official fixtures.

p = 0 is an exact identity; key-driven runs are deterministic, jit/vmap/pmap-able with a
traced p; second derivatives (R1 through the pipe) agree with finite differences; the
geometric executor equals a float64 NumPy/SciPy transcription of the official algorithm
(data-dependent padding) in cases the fixtures do not reach (zoom-out past the padding);
the FIR adjoint equals JAX's transpose; one-channel rules; clear errors.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from stylegan_jax.augment import (
    PIPES,
    AugmentConfig,
    KeyDraws,
    RecordedDraws,
    augment,
    draw_plan,
    geometric,
    make_config,
    named_pipe,
)
from stylegan_jax.augment.filters import SYM6, filter_bank
from stylegan_jax.benchmarks import augment as augment_benchmark

RES = 32  # image-space filtering needs more than 21 pixels per side


def _images(seed: int, shape) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, -1, 1)


@functools.cache
def _fwd_bwd(pipe: str):
    """jit(images, p, key, cotangent) -> (out, d<out, cotangent>/d images), compiled once."""

    def run(x, p, key, ct):
        out, vjp = jax.vjp(lambda x: augment(x, p, pipe, key), x)
        return out, vjp(ct)[0]

    return jax.jit(run), run


def test_p_zero_is_exact_identity_and_key_runs_deterministic():
    x = _images(0, (2, RES, RES, 3))
    ct = _images(1, x.shape)
    run = _fwd_bwd("bgcfnc")[0]
    for seed in range(2):
        out, grad = run(x, jnp.float32(0), jax.random.key(seed), ct)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(grad, ct)
    # The same program augments at p = 1 (p is an argument, not a compiled constant) ...
    first = run(x, jnp.float32(1), jax.random.key(0), ct)
    assert np.abs(np.asarray(first[0]) - np.asarray(x)).max() > 0.1
    # ... deterministically for a key, differently for another key.
    for a, b in zip(first, run(x, jnp.float32(1), jax.random.key(0), ct), strict=True):
        np.testing.assert_array_equal(a, b)
    other = run(x, jnp.float32(1), jax.random.key(1), ct)[0]
    assert np.abs(np.asarray(first[0]) - np.asarray(other)).max() > 0.1


def test_p_zero_is_exact_identity_one_channel():
    # Geometry, filtering, noise and cutout do not depend on the channel count.
    x = _images(2, (2, 8, 8, 1))
    ct = _images(3, x.shape)
    out, grad = _fwd_bwd("color")[0](x, jnp.float32(0), jax.random.key(0), ct)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(grad, ct)


def test_pmap_of_vmap_with_traced_p():
    """Per-device batches under pmap (p replicated but traced), sub-batches under vmap."""
    n = jax.local_device_count()
    assert n == 8, "tests/conftest.py sets 8 fake CPU devices"
    x = _images(4, (n, 2, 2, RES, RES, 3))
    ct = _images(5, x.shape)
    keys = jax.random.split(jax.random.key(11), n * 2).reshape(n, 2)
    jitted, run = _fwd_bwd("bgcfnc")
    step = jax.pmap(jax.vmap(run, in_axes=(0, None, 0, 0)), in_axes=(0, None, 0, 0))
    out, grad = step(x, jnp.float32(0.7), keys, ct)
    for i, j in ((0, 0), (n - 1, 1)):
        ref_out, ref_grad = jitted(x[i, j], jnp.float32(0.7), keys[i, j], ct[i, j])
        np.testing.assert_allclose(out[i, j], ref_out, atol=1e-5)
        np.testing.assert_allclose(grad[i, j], ref_grad, atol=1e-5)
    out0, grad0 = step(x, jnp.float32(0), keys, ct)  # the same program at p = 0
    np.testing.assert_array_equal(out0, x)
    np.testing.assert_array_equal(grad0, ct)


def test_second_derivative_matches_finite_difference():
    """R1 through the pipe: R(x) = |d/dx sum(w * A(x)^2) / 2|^2 is quadratic in x, so its
    central difference along v is exact up to rounding."""
    x = _images(4, (2, RES, RES, 3))
    w, v = _images(5, x.shape) + 1.5, _images(6, x.shape)
    key = jax.random.key(3)

    def r1(x):
        g = jax.grad(lambda x: jnp.sum(w * augment(x, 1.0, "bgcfnc", key) ** 2) / 2)(x)
        return jnp.sum(g**2)

    grad = jax.jit(jax.grad(r1))(x)
    r1_jit = jax.jit(r1)
    directional = float(jnp.sum(grad * v))
    finite = (float(r1_jit(x + v)) - float(r1_jit(x - v))) / 2
    assert abs(directional - finite) <= 1e-3 * abs(finite), (directional, finite)


# ---------------------------------------------------------------- geometric executor


def _np_matrix(kind, *a):
    if kind == "t":
        return np.array([[1, 0, a[0]], [0, 1, a[1]], [0, 0, 1]], np.float64)
    if kind == "s":
        return np.array([[a[0], 0, 0], [0, a[1], 0], [0, 0, 1]], np.float64)
    c, s = np.cos(a[0]), np.sin(a[0])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def _official_resample_numpy(x, g_inv):
    """The official geometric path, transcribed in float64 with data-dependent padding,
    SciPy's upfirdn for the 2x upsampling, normalised affine-grid coordinates and SciPy's
    bilinear map_coordinates (zeros outside) for grid_sample."""
    f = SYM6 / SYM6.sum()
    b, h, w, c = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = np.array([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]]).T
    xy = np.concatenate([(g @ corners)[:2] for g in g_inv], axis=1)  # [2, b * 4]
    margin = np.concatenate([-xy, xy]).max(axis=1) + [6 - cx, 6 - cy] * 2
    mx0, my0, mx1, my1 = np.ceil(np.clip(margin, 0, [w - 1, h - 1] * 2)).astype(int)
    x = np.pad(x, ((0, 0), (my0, my1), (mx0, mx1), (0, 0)), mode="reflect")
    for axis in (1, 2):  # upsample2d: output m is full-convolution index m + 5
        n = x.shape[axis]
        full = scipy.signal.upfirdn(2 * f, x, up=2, axis=axis)
        x = np.take(full, np.arange(5, 5 + 2 * n), axis=axis)
    hu, wu = x.shape[1:3]
    ho, wo = 2 * (h + 6), 2 * (w + 6)
    out = np.zeros((b, ho, wo, c))
    base_x = (2 * np.arange(wo) + 1) / wo - 1
    base_y = (2 * np.arange(ho) + 1) / ho - 1
    gy, gx = np.meshgrid(base_y, base_x, indexing="ij")
    for i, g in enumerate(g_inv):
        g = _np_matrix("t", (mx0 - mx1) / 2, (my0 - my1) / 2) @ g
        g = _np_matrix("s", 2, 2) @ g @ _np_matrix("s", 0.5, 0.5)
        g = _np_matrix("t", -0.5, -0.5) @ g @ _np_matrix("t", 0.5, 0.5)
        g = _np_matrix("s", 2 / wu, 2 / hu) @ g @ _np_matrix("s", wo / 2, ho / 2)
        sx = g[0, 0] * gx + g[0, 1] * gy + g[0, 2]
        sy = g[1, 0] * gx + g[1, 1] * gy + g[1, 2]
        ix, iy = ((sx + 1) * wu - 1) / 2, ((sy + 1) * hu - 1) / 2
        for ch in range(c):
            out[i, :, :, ch] = scipy.ndimage.map_coordinates(
                x[i, :, :, ch], [iy, ix], order=1, mode="grid-constant", cval=0.0)
    for axis in (1, 2):  # downsample2d(padding=-6, flip_filter): sum_t f[t] y[2k + 1 + t]
        windows = np.lib.stride_tricks.sliding_window_view(out, len(f), axis=axis)
        out = np.moveaxis(np.take(windows, 1 + 2 * np.arange(out.shape[axis] // 2 - 6),
                                  axis=axis) @ f, -1, -1)
    return out


def test_geometric_matches_numpy_official_transcription():
    t, s, r = (functools.partial(_np_matrix, k) for k in "tsr")
    cases = [
        s(1.6, 1.6) @ r(0.7),  # zoom out and rotate: samples beyond the padded border
        s(3.0, 2.5) @ t(2.3, -1.7),  # far zoom out: zeros beyond the official padding
        s(0.6, 0.8) @ r(-2.0) @ t(0.4, 0.9),  # zoom in, anisotropic
    ]
    x = np.asarray(_images(8, (3, 20, 24, 2)), np.float64)  # non-square, 2 channels
    run = jax.jit(geometric.apply_geometric)
    for batch in ([0, 1, 2], [1], [2]):  # the padding is shared by the batch
        g_inv = np.stack([cases[i] for i in batch]).astype(np.float32)
        ref = _official_resample_numpy(x[batch], g_inv.astype(np.float64))
        ours = np.asarray(run(jnp.asarray(x[batch], jnp.float32), jnp.asarray(g_inv)))
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


# ---------------------------------------------------------------- constants and rules


def test_wavelets_are_orthonormal_and_bank_reconstructs():
    for h in (SYM6, np.asarray(filter_bank.__defaults__[0])):
        assert np.isclose(h.sum(), np.sqrt(2)) and np.isclose(h @ h, 1)
        for shift in range(2, len(h), 2):  # orthogonal to its even shifts
            assert abs(h[shift:] @ h[:-shift]) < 1e-10
    bank = filter_bank()
    assert bank.shape == (4, 43) and np.allclose(bank, bank[:, ::-1])
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)  # bands sum to identity
    np.testing.assert_allclose(bank.sum(axis=1), [1, 0, 0, 0], atol=1e-12)  # only band 0 at DC


def test_named_pipes_are_the_official_ones():
    official = {"blit": "xflip rotate90 xint", "geom": "scale rotate aniso xfrac",
                "color": "brightness contrast lumaflip hue saturation",
                "filter": "imgfilter", "noise": "noise", "cutout": "cutout"}
    official["bg"] = official["blit"] + " " + official["geom"]
    official["bgc"] = official["bg"] + " " + official["color"]
    official["bgcf"] = official["bgc"] + " imgfilter"
    official["bgcfn"] = official["bgcf"] + " noise"
    official["bgcfnc"] = official["bgcfn"] + " cutout"
    assert sorted(PIPES) == sorted(official)
    multipliers = ("xflip rotate90 xint scale rotate aniso xfrac brightness contrast lumaflip "
                   "hue saturation imgfilter noise cutout").split()
    for name, ops in official.items():
        cfg = named_pipe(name)
        assert {m for m in multipliers if getattr(cfg, m) == 1} == set(ops.split())
        assert {m for m in multipliers if getattr(cfg, m) == 0} == set(multipliers) - set(
            ops.split())
    assert named_pipe("bgc", xint_max=0.25).xint_max == 0.25
    default = AugmentConfig()
    assert (default.xint_max, default.scale_std, default.rotate_max, default.aniso_std,
            default.xfrac_std, default.brightness_std, default.contrast_std, default.hue_max,
            default.saturation_std, default.imgfilter_bands, default.imgfilter_std,
            default.noise_std, default.cutout_size) == (
        0.125, 0.2, 1, 0.2, 0.125, 0.2, 0.5, 1, 1, (1, 1, 1, 1), 1, 0.1, 0.5)


def _count_draws(pipe, channels):
    return len(draw_plan(named_pipe(pipe), (2, RES, RES, channels)))


def test_one_channel_rules():
    # Hue and saturation make no draws for one channel (two draws each otherwise).
    assert _count_draws("color", 3) == 10 and _count_draws("color", 1) == 6
    assert _count_draws("bgcfnc", 3) - _count_draws("bgcfnc", 1) == 4
    # Brightness b, contrast c, luma flip on gray: the averaged color rows give -c (x + b).
    b_draw, c_draw = 1.0, 2.0  # b = 0.2 * 1, c = 2 ** (0.5 * 2)
    draws = [np.full(2, b_draw), np.zeros(2), np.full(2, c_draw), np.zeros(2),
             np.full((2, 1, 1), 0.75), np.zeros((2, 1, 1))]
    source = RecordedDraws(draws, ["randn", "rand", "randn", "rand", "rand", "rand"])
    x = _images(12, (2, 8, 8, 1))
    out = augment(x, 0.5, "color", source)
    source.finish()
    np.testing.assert_allclose(out, -2.0 * (x + 0.2), rtol=1e-6, atol=1e-6)


def test_bad_input_errors_name_the_culprit():
    with pytest.raises(ValueError, match="'bgx'"):
        named_pipe("bgx")
    with pytest.raises(ValueError, match="xflip"):
        make_config({"xflip": -1})
    with pytest.raises(ValueError, match="scale_std"):
        make_config({"scale_std": float("nan")})
    with pytest.raises(ValueError, match="rotat"):
        make_config({"rotation": 1})
    with pytest.raises(ValueError, match="imgfilter_bands"):
        make_config({"imgfilter_bands": [1, 1, 1]})
    x = jnp.zeros((2, RES, RES, 3))
    with pytest.raises(ValueError, match="2"):
        augment(jnp.zeros((2, RES, RES, 2)), 0.5, "color", jax.random.key(0))
    with pytest.raises(ValueError, match="NHWC"):
        augment(x[0], 0.5, "bgc", jax.random.key(0))
    with pytest.raises(ValueError, match="floating"):
        augment(x.astype(jnp.uint8), 0.5, "bgc", jax.random.key(0))
    with pytest.raises(ValueError, match="imgfilter.*16x16"):
        augment(jnp.zeros((2, 16, 16, 3)), 0.5, "filter", jax.random.key(0))
    with pytest.raises(ValueError, match="p: expected a scalar"):
        augment(x, jnp.ones(2), "bgc", jax.random.key(0))
    with pytest.raises(TypeError, match="draws"):
        augment(x, 0.5, "bgc", "seed")
    # Recorded draws: the index and the requested / recorded kind and shape.
    with pytest.raises(ValueError, match="draw 0: .* randn\\[2, 1, 1, 1\\] .* rand\\[2\\]"):
        augment(x, 0.5, "noise", RecordedDraws([np.zeros(2)], ["rand"]))
    with pytest.raises(ValueError, match="draw 1: .* rand\\[2, 1, 1, 1\\] .* shape \\[2\\]"):
        augment(x, 0.5, "noise", RecordedDraws([np.zeros((2, 1, 1, 1)), np.zeros(2)]))
    with pytest.raises(ValueError, match="draw 1: .* only 1 draws"):
        augment(x, 0.5, "cutout", RecordedDraws([np.zeros((2, 1, 1, 1, 1))]))
    source = RecordedDraws([np.zeros((2, 1, 1, 1, 1)), np.zeros((2, 2, 1, 1, 1)), np.zeros(1)])
    augment(x, 0.5, "cutout", source)
    with pytest.raises(ValueError, match="used 2 of 3"):
        source.finish()
    with pytest.raises(ValueError, match="kinds\\[0\\]: 'uniform'"):
        RecordedDraws([np.zeros(1)], ["uniform"])
    # Key draws follow the plan of the pipe they were made for.
    source = KeyDraws(jax.random.key(0), draw_plan(named_pipe("noise"), (2, RES, RES, 3)))
    with pytest.raises(ValueError, match="draw 0: .* rand\\[2\\] .* plan has"):
        source.rand([2])


def test_benchmark_prints_rates(capsys):
    argv = ["--pipe", "color", "--resolution", "8", "--batch", "2", "--p", "0", "0.5",
            "--iters", "1"]
    assert augment_benchmark.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rates = [re.search(r"(forward\+backward|forward) +res=8 batch=2 p=([\d.]+) .* ([\d.]+) img/s",
                       line) for line in lines[:4]]
    assert [(m.group(1), m.group(2)) for m in rates] == [
        ("forward", "0"), ("forward+backward", "0"), ("forward", "0.5"),
        ("forward+backward", "0.5")]
    assert all(float(m.group(3)) > 0 for m in rates) and lines[4].startswith("device ")
