"""PPL, SWD and MS-SSIM on W x H images (issue #26).

References: hand-computed crop windows (PPL's face crop, its fractions per axis), a NumPy
second implementation of ProGAN's Laplacian pyramid and 7x7 descriptors (scipy.ndimage's
'mirror' convolution, as the official code filters) and of MS-SSIM (Wang et al.'s
definition in float64), and closed forms: a set compared with itself (SWD 0, MS-SSIM 1),
two constant images (MS-SSIM = the luminance term ** the last weight) and RGBA composited
over black (the image an opaque RGB set equals).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from toy_detectors import toy_detectors

from stylegan_jax.metrics import ms_ssim, ppl, swd
from stylegan_jax.metrics.runner import compute_metrics
from stylegan_jax.models.registry import random_generator

# ---------------------------------------------------------------- PPL's crop


def _coords(n, h, w, c):
    """[n, h, w, c] float images whose pixel (i, j) holds 1000 i + j in every channel."""
    x = 1000.0 * np.arange(h)[:, None] + np.arange(w)[None, :]
    return np.broadcast_to(x[None, :, :, None], (n, h, w, c)).astype(np.float32)


def test_ppl_crop_takes_the_official_fractions_per_axis():
    # 64 wide, 32 high: rows 3/8..7/8 of 32 = 12..27, cols 2/8..6/8 of 64 = 16..47.
    assert ppl.crop_window(32, 64) == (slice(12, 28), slice(16, 48))
    # 32 wide, 128 high: rows 48..111, cols 8..23; a square: the official 3c..7c, 2c..6c.
    assert ppl.crop_window(128, 32) == (slice(48, 112), slice(8, 24))
    assert ppl.crop_window(256, 256) == (slice(96, 224), slice(64, 192))
    out = np.asarray(ppl.crop_and_downsample(jnp.asarray(_coords(2, 32, 64, 1)), True, 32))
    assert out.shape == (2, 16, 32, 3)  # grayscale repeated to RGB for LPIPS
    assert out[0, 0, 0, 0] == 12016 and out[1, -1, -1, 2] == 27047


def test_ppl_downsamples_a_rectangle_by_the_shorter_sides_factor():
    # 1024 wide, 512 high (img_resolution 512): the crop is rows 192..447, cols 256..767,
    # then 2x2 box means (512 // 256 = 2 on both axes) -> 128 x 256.
    out = np.asarray(ppl.crop_and_downsample(jnp.asarray(_coords(1, 512, 1024, 3)), True, 512))
    assert out.shape == (1, 128, 256, 3)
    # block (0, 0): rows 192-193, cols 256-257 -> 1000 * 192.5 + 256.5
    assert out[0, 0, 0, 0] == pytest.approx(192756.5)
    assert out[0, 5, 7, 1] == pytest.approx(1000 * (192 + 10.5) + 256 + 14.5)
    # without the crop: the whole image halved on both axes
    full = np.asarray(ppl.crop_and_downsample(jnp.asarray(_coords(1, 512, 1024, 3)), False,
                                              512))
    assert full.shape == (1, 256, 512, 3)


def test_ppl_composites_rgba_over_black():
    rng = np.random.default_rng(1)
    rgba = rng.uniform(-1, 1, (2, 16, 32, 4)).astype(np.float32)
    alpha = (rgba[..., 3:] + 1) / 2
    want = -1 + (rgba[..., :3] + 1) * alpha  # black is -1 in the generator's range
    got = np.asarray(ppl.crop_and_downsample(jnp.asarray(rgba), False, 16))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- SWD


def test_swd_levels_stop_where_the_shorter_side_reaches_16():
    assert swd.level_sizes((32, 64)) == [(32, 64), (16, 32)]  # (height, width)
    assert swd.level_sizes((128, 16)) == [(128, 16)]
    assert swd.level_sizes(64) == [(64, 64), (32, 32), (16, 16)]  # ProGAN's square levels
    assert swd.result_keys("swd", (32, 64)) == ("swd", "swd_64x32", "swd_32x16")
    assert swd.result_keys("swd", 32) == ("swd", "swd_32", "swd_16")
    with pytest.raises(ValueError, match=r"shorter side is at least 16, got 64x8"):
        swd.level_sizes((8, 64))


def test_swd_centres_cover_each_axis_of_a_rectangle():
    c = swd.draw_centres(np.random.default_rng(0), 64, (64, 16))  # tall: 16 wide, 64 high
    assert c.shape == (64, 1, 128, 2)
    rows, cols = c[..., 0], c[..., 1]
    assert rows.min() == 3 and rows.max() == 60 and cols.min() == 3 and cols.max() == 12


def _np_pyramid(img, levels):
    """ProGAN's Laplacian pyramid in NumPy: 5x5 binomial, scipy 'mirror' edges."""
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0

    def conv(x, scale):
        return np.stack([scipy.ndimage.convolve(x[..., c], k * scale, mode="mirror")
                         for c in range(x.shape[-1])], axis=-1)

    out = [img.astype(np.float64)]
    for _ in range(1, levels):
        low = conv(out[-1], 1.0)[::2, ::2]
        up = np.zeros_like(out[-1])
        up[::2, ::2] = low
        out[-1] = out[-1] - conv(up, 4.0)
        out.append(low)
    return out


def _np_descriptors(images, centres):
    """Per level: [N * k, 3 * 7 * 7] patches ordered channel, column offset, row offset."""
    n, levels = centres.shape[:2]
    per_level = [[] for _ in range(levels)]
    for i in range(n):
        for lv, x in enumerate(_np_pyramid(images[i], levels)):
            for y0, x0 in centres[i, lv]:
                patch = x[y0 - 3:y0 + 4, x0 - 3:x0 + 4]  # [row, col, channel]
                per_level[lv].append(np.transpose(patch, (2, 1, 0)).reshape(-1))
    return [np.stack(p) for p in per_level]


@pytest.mark.parametrize("height,width", [(32, 64), (64, 32)])
def test_swd_descriptors_of_rectangles_equal_numpy(height, width):
    rng = np.random.default_rng(height)
    images = rng.integers(0, 256, (3, height, width, 3)).astype(np.uint8)
    centres = swd.draw_centres(rng, 3, (height, width), per_image=16)
    got = [np.asarray(d) for d in swd.batch_descriptors_jit(images, centres)]
    want = _np_descriptors(images, centres)
    assert [g.shape for g in got] == [(48, 147), (48, 147)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-3)


def test_swd_of_a_rectangular_set_with_itself_is_zero_and_rgba_is_composited():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (6, 16, 32, 3)).astype(np.uint8)
    alpha = rng.integers(0, 256, (6, 16, 32, 1)).astype(np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=-1)
    centres = swd.draw_centres(rng, 6, (16, 32))
    dirs = [swd.draw_directions(rng, 147)]
    a = [np.asarray(d) for d in swd.batch_descriptors_jit(rgb, centres)]
    assert swd.swd_levels(a, a, dirs) == [0.0]
    # RGBA over black: the RGB image rgb * alpha / 255 (as float, unrounded)
    over_black = [np.asarray(d) for d in swd.batch_descriptors(
        jnp.asarray(rgb, jnp.float32) * (jnp.asarray(alpha, jnp.float32) / 255), centres)]
    composited = [np.asarray(d) for d in swd.batch_descriptors_jit(rgba, centres)]
    np.testing.assert_allclose(composited[0], over_black[0], rtol=1e-5, atol=1e-3)
    b = [np.asarray(d) for d in swd.batch_descriptors_jit(rgb[::-1, ::-1], centres)]
    assert swd.swd_levels(a, b, dirs)[0] > 1.0  # another set is at a distance


# ---------------------------------------------------------------- MS-SSIM


def _np_msssim(a, b):
    """Wang et al.'s MS-SSIM in float64 (Gaussian window 11 / sigma 1.5, shrunk to the
    shorter side; 'valid' filtering; 2x2 box downsampling; cs of scales 1-4, SSIM of 5)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    out = 1.0
    for level, weight in enumerate(weights):
        if level:
            x, y = (v.reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2, -1).mean(axis=(1, 3))
                    for v in (x, y))
        size = min(11, x.shape[0], x.shape[1])
        sigma = 1.5 * size / 11
        t = np.arange(size) - size // 2 + (0.5 if size % 2 == 0 else 0.0)
        g = np.exp(-t ** 2 / (2 * sigma ** 2))
        win = np.outer(g, g) / np.outer(g, g).sum()

        def blur(v, win=win, size=size):
            h, w = v.shape[0] - size + 1, v.shape[1] - size + 1
            return np.stack([[np.einsum("ijc,ij->c", v[i:i + size, j:j + size], win)
                              for j in range(w)] for i in range(h)])

        mx, my = blur(x), blur(y)
        vx, vy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2
        cov = blur(x * y) - mx * my
        cs = (2 * cov + c2) / (vx + vy + c2)
        if level < len(weights) - 1:
            out *= max(cs.mean(), 0.0) ** weight
        else:
            ssim = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs
            out *= max(ssim.mean(), 0.0) ** weight
    return out


def test_msssim_of_rectangles_equals_numpy():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (2, 32, 64, 3))
    other = np.clip(base + rng.normal(0, 40, base.shape), 0, 255)
    a = base.astype(np.uint8)
    b = other.astype(np.uint8)
    got = np.asarray(ms_ssim.pair_scores_jit(a, b), np.float64)
    want = [_np_msssim(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=2e-4)
    tall = np.transpose(a, (0, 2, 1, 3)).copy()
    np.testing.assert_allclose(np.asarray(ms_ssim.pair_scores_jit(tall, tall)), 1.0, atol=1e-6)


def test_msssim_of_two_constant_rectangles_is_their_luminance_term():
    # Constant images: every contrast-structure term is 1, so MS-SSIM is the last scale's
    # luminance (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) to the last weight.
    c1 = (0.01 * 255) ** 2
    a = np.full((1, 16, 64, 1), 100, np.uint8)
    b = np.full((1, 16, 64, 1), 150, np.uint8)
    want = ((2 * 100 * 150 + c1) / (100 ** 2 + 150 ** 2 + c1)) ** 0.1333
    got = float(ms_ssim.pair_scores_jit(a, b)[0])
    assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="at least 16x16"):
        ms_ssim.pair_scores(a[:, :8], b[:, :8])


# ---------------------------------------------------------------- the runner


def test_runner_measures_ppl_swd_and_msssim_of_a_rectangular_generator():
    """A 32x16 generator: no refusal, SWD keyed by W x H levels, MS-SSIM in (0, 1], PPL
    finite and positive (toy LPIPS: MSE)."""
    G = random_generator(16, 3, seed=1, aspect=(1, 2))
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (16, 16, 32, 3)).astype(np.uint8)
    batches = lambda: [reals[i:i + 8] for i in range(0, len(reals), 8)]  # noqa: E731
    out = compute_metrics(["swd16", "msssim16", "ppl_wend_16"], G, batches, None,
                          detectors=toy_detectors(), batch_size=8, progress=False)
    assert set(out["swd16"].results) == {"swd16", "swd16_32x16"}
    assert out["swd16"].results["swd16"] > 0
    assert 0 < out["msssim16"].results["msssim16"] <= 1
    assert 0 < out["ppl_wend_16"].results["ppl_wend_16"] < np.inf
