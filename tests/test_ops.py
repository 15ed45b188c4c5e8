"""The numerical building blocks against direct NumPy implementations of their definitions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.nn import ops

RNG = np.random.default_rng(0)


def np_upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Official definition, literally: zero-insert, pad, convolve with f, keep every down-th."""
    n, h, w, c = x.shape
    px0, px1, py0, py1 = pad
    u = np.zeros((n, h * up, w * up, c), x.dtype)
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (py0, py1), (px0, px1), (0, 0)))
    k = f[::-1, ::-1] * gain  # convolution = correlation with the flipped filter
    fh, fw = k.shape
    oh, ow = u.shape[1] - fh + 1, u.shape[2] - fw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(fh):
        for j in range(fw):
            out += u[:, i : i + oh, j : j + ow] * k[i, j]
    return out[:, ::down, ::down]


def np_correlate(x, w):
    """Valid 2-D correlation, x NHWC, w HWIO."""
    kh, kw = w.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + oh, j : j + ow] @ w[i, j]
    return out


ASYM = np.outer([1.0, 2.0, 4.0, 3.0], [2.0, 1.0, 3.0, 5.0])  # catches flips and transposes
ASYM /= ASYM.sum()


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (1, 1, (3, 0, 1, 2))])
def test_upfirdn2d_matches_definition(up, down, pad):
    x = RNG.standard_normal((2, 6, 6, 3)).astype(np.float32)
    ours = ops.upfirdn2d(jnp.asarray(x), ASYM, up=up, down=down, padding=pad, gain=up * up)
    ref = np_upfirdn2d(x, ASYM, up, down, pad, gain=up * up)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
def test_conv2d_resample_matches_generic_path(k, up, down):
    """The fast paths equal the official generic path: upfirdn, conv, then FIR-downsample."""
    f = ops.setup_filter()
    x = RNG.standard_normal((2, 8, 8, 3)).astype(np.float32)
    w = RNG.standard_normal((k, k, 3, 5)).astype(np.float32)
    pad = k // 2
    fw = f.shape[0]
    if up > 1:
        p0, p1 = pad + (fw + up - 1) // 2, pad + (fw - up) // 2
        y = np_upfirdn2d(x, f, up=up, pad=(p0, p1, p0, p1), gain=up * up)
        ref = np_correlate(y, w[::-1, ::-1])  # official up-convs are true convolutions
    else:
        p0, p1 = pad + (fw - down + 1) // 2, pad + (fw - down) // 2
        y = np_correlate(np.pad(x, ((0, 0), (p0, p1), (p0, p1), (0, 0))), w)
        ref = np_upfirdn2d(y, f, down=down)
    ours = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), f, up=up, down=down, padding=pad)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("up,demodulate", [(1, True), (2, True), (1, False)])
def test_modulated_conv_forms_agree(up, demodulate):
    """Activation scaling (training form) equals the per-sample grouped form."""
    x = jnp.asarray(RNG.standard_normal((3, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(RNG.standard_normal((3, 3, 4, 6)), jnp.float32)
    s = jnp.asarray(RNG.standard_normal((3, 4)) + 1, jnp.float32)
    f = ops.setup_filter()
    a = ops.modulated_conv2d(x, w, s, demodulate, up=up, padding=1, f=f, fused=False)
    b = ops.modulated_conv2d(x, w, s, demodulate, up=up, padding=1, f=f, fused=True)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    if demodulate:  # closed form: output channels of a demodulated conv see unit-norm weights
        ws = np.asarray(w)[None] * np.asarray(s)[:, None, None, :, None]
        norms = np.sqrt((ws**2).sum(axis=(1, 2, 3)))
        direct = ops.modulated_conv2d(x, w, s, False, up=up, padding=1, f=f)
        np.testing.assert_allclose(a, np.asarray(direct) / norms[:, None, None, :], rtol=1e-4,
                                   atol=1e-4)


def test_minibatch_stddev_matches_definition():
    x = RNG.standard_normal((8, 4, 4, 6)).astype(np.float32)
    out = np.asarray(ops.minibatch_stddev(jnp.asarray(x), group_size=4, num_channels=2))
    assert out.shape == (8, 4, 4, 8)
    np.testing.assert_array_equal(out[..., :6], x)
    for i in range(8):
        group = x[i % 2 :: 2]  # official grouping: sample i is in group i mod (N / G)
        for f in range(2):
            chans = group[..., f * 3 : (f + 1) * 3]
            expected = np.sqrt(chans.var(axis=0) + 1e-8).mean()
            np.testing.assert_allclose(out[i, :, :, 6 + f], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="not divisible by the group size 4"):
        ops.minibatch_stddev(jnp.zeros((6, 4, 4, 2)), group_size=4)


def test_bias_act_gain_and_clamp():
    x = jnp.asarray([-2.0, -0.5, 0.5, 300.0])
    out = ops.bias_act(x, jnp.asarray(1.0)[None], "lrelu", clamp=256)
    expected = np.array([-0.2, 0.5, 1.5, 301.0]) * np.sqrt(2)
    np.testing.assert_allclose(out, np.clip(expected, -256, 256), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        ops.bias_act(x, None, "gelu")


def test_normalize_2nd_moment():
    x = jnp.asarray(RNG.standard_normal((5, 7)) * 3)
    y = np.asarray(ops.normalize_2nd_moment(x))
    np.testing.assert_allclose((y**2).mean(axis=1), 1.0, rtol=1e-5)
