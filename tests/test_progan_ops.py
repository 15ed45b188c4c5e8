"""The TF-style resampling ops and layer options of ProGAN / StyleGAN v1 against NumPy
implementations of their definitions (TF's conv2d_transpose / conv2d / depthwise_conv2d
with 'SAME' padding, nearest upscaling, box downscaling, instance norm)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.nn import ops
from stylegan_jax.nn.layers import Conv2d, Dense

RNG = np.random.default_rng(3)


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TF 'SAME': total padding max((out - 1) * stride + k - size, 0), the odd one after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def np_conv(x, w, stride=1):
    """TF conv2d, 'SAME', NHWC/HWIO: a correlation."""
    n, h, wd, _ = x.shape
    k = w.shape[0]
    (t, b), (left, r) = same_pads(h, k, stride), same_pads(wd, k, stride)
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    oh, ow = -(-h // stride), -(-wd // stride)
    out = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, i, j] = np.einsum("nabi,abio->no", patch, w)
    return out


def np_conv_transpose(x, w):
    """TF conv2d_transpose, stride 2, 'SAME', filter w [K, K, in, out] in our (I, O) order:
    the gradient of the stride-2 'SAME' conv, i.e. each input pixel scatters w."""
    n, h, wd, _ = x.shape
    k = w.shape[0]
    before = same_pads(2 * h, k, 2)[0]
    out = np.zeros((n, 2 * h + k, 2 * wd + k, w.shape[3]))
    for i in range(h):
        for j in range(wd):
            out[:, 2 * i : 2 * i + k, 2 * j : 2 * j + k] += np.einsum(
                "ni,abio->nabo", x[:, i, j], w)
    return out[:, before : before + 2 * h, before : before + 2 * wd]


def np_summed_kernel(w):
    """The official fused kernel: w padded by one and its four shifts added."""
    k = w.shape[0]
    out = np.zeros((k + 1, k + 1, *w.shape[2:]))
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy : dy + k, dx : dx + k] += w
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_fused_upscale_conv_is_the_official_transposed_conv(k):
    x = RNG.standard_normal((2, 4, 4, 3)).astype(np.float32)
    w = RNG.standard_normal((k, k, 3, 5)).astype(np.float32)
    ours = ops.upscale2d_conv2d(jnp.asarray(x), jnp.asarray(w), fused=True)
    np.testing.assert_allclose(ours, np_conv_transpose(x, np_summed_kernel(w)), atol=1e-4)
    # ... which is nearest upscaling + conv with the spatially flipped kernel.
    flipped = np_conv(np.kron(x, np.ones((1, 2, 2, 1))), w[::-1, ::-1])
    np.testing.assert_allclose(ours, flipped, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_separate_upscale_conv_is_nearest_then_conv(k):
    x = RNG.standard_normal((2, 4, 4, 3)).astype(np.float32)
    w = RNG.standard_normal((k, k, 3, 5)).astype(np.float32)
    ours = ops.upscale2d_conv2d(jnp.asarray(x), jnp.asarray(w), fused=False)
    np.testing.assert_allclose(ours, np_conv(np.kron(x, np.ones((1, 2, 2, 1))), w), atol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_conv_downscale_is_conv_then_box(fused):
    x = RNG.standard_normal((2, 8, 8, 3)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 3, 5)).astype(np.float32)
    ours = ops.conv2d_downscale2d(jnp.asarray(x), jnp.asarray(w), fused=fused)
    conv = np_conv(x, w)
    box = conv.reshape(2, 4, 2, 4, 2, 5).mean(axis=(2, 4))
    np.testing.assert_allclose(ours, box, atol=1e-4)
    if fused:  # the official form: stride-2 conv with the summed kernel / 4
        np.testing.assert_allclose(ours, np_conv(x, np_summed_kernel(w) / 4, stride=2),
                                   atol=1e-4)


@pytest.mark.parametrize("taps,normalize,flip", [
    ((1, 2, 1), True, False), ((1, 3, 3, 1), True, False), ((1, 2, 4), False, True)])
def test_blur_is_a_same_padded_depthwise_correlation(taps, normalize, flip):
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    f = np.outer(taps, taps).astype(np.float64)
    if normalize:
        f /= f.sum()
    if flip:
        f = f[::-1, ::-1]
    w = np.zeros((*f.shape, 3, 3))
    for c in range(3):
        w[:, :, c, c] = f
    ours = ops.blur2d(jnp.asarray(x), taps, normalize=normalize, flip=flip)
    np.testing.assert_allclose(ours, np_conv(x, w), atol=1e-5)


def test_nearest_and_box_resampling():
    x = RNG.standard_normal((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(ops.upscale2d_nearest(jnp.asarray(x), 4),
                                  np.kron(x, np.ones((1, 4, 4, 1), np.float32)))
    box = np.zeros((2, 2, 2, 3))
    for i in range(2):
        for j in range(2):
            box[:, i, j] = x[:, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean(axis=(1, 2))
    np.testing.assert_allclose(ops.downscale2d_box(jnp.asarray(x), 4), box, atol=1e-6)
    with pytest.raises(ValueError, match="does not divide by 3"):
        ops.downscale2d_box(jnp.asarray(x), 3)


def test_instance_norm():
    x = RNG.standard_normal((2, 4, 4, 3)).astype(np.float32) * 3 + 1
    y = x - x.mean(axis=(1, 2), keepdims=True)
    y = y / np.sqrt((y**2).mean(axis=(1, 2), keepdims=True) + 1e-8)
    np.testing.assert_allclose(ops.instance_norm(jnp.asarray(x)), y, atol=1e-5)


@pytest.mark.parametrize("resample,up,down", [("fused", 2, 1), ("separate", 2, 1),
                                              ("fused", 1, 2), ("separate", 1, 2)])
def test_conv_layer_resample_modes(resample, up, down):
    x = jnp.asarray(RNG.standard_normal((2, 8, 8, 3)).astype(np.float32))
    layer = Conv2d(4, 3, up=up, down=down, resample=resample, weight_gain=np.sqrt(2),
                   activation="lrelu", act_gain=1.0)
    v = layer.init(jax.random.PRNGKey(0), x)
    v = jax.tree_util.tree_map(lambda a: a + 0.3, v)  # non-zero bias
    w = np.asarray(v["params"]["weight"]) * np.sqrt(2) / np.sqrt(27)
    fused = resample == "fused"
    op = ops.upscale2d_conv2d if up == 2 else ops.conv2d_downscale2d
    pre = np.asarray(op(x, jnp.asarray(w), fused)) + 0.3  # bias after resampling
    np.testing.assert_allclose(layer.apply(v, x), np.where(pre >= 0, pre, 0.2 * pre),
                               atol=1e-5)


def test_conv_layer_rejects_unknown_resampling():
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="resample must be one of"):
        Conv2d(4, 3, up=2, resample="bilinear").init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="supports up=2 or down=2 only"):
        Conv2d(4, 3, up=4, resample="fused").init(jax.random.PRNGKey(0), x)


def test_dense_out_shape_has_a_bias_per_channel():
    x = jnp.asarray(RNG.standard_normal((2, 5)).astype(np.float32))
    layer = Dense(4 * 4 * 3, out_shape=(4, 4, 3))
    v = layer.init(jax.random.PRNGKey(0), x)
    assert v["params"]["bias"].shape == (3,)
    bias = jnp.asarray([1.0, 2.0, 3.0])
    v = {"params": {"weight": v["params"]["weight"], "bias": bias}}
    flat = np.asarray(x @ v["params"]["weight"] / np.sqrt(5)).reshape(2, 4, 4, 3)
    np.testing.assert_allclose(layer.apply(v, x), flat + np.asarray(bias), atol=1e-5)
    with pytest.raises(ValueError, match="does not hold features=47"):
        Dense(47, out_shape=(4, 4, 3)).init(jax.random.PRNGKey(0), x)
