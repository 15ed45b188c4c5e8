"""Filter design (against scipy) and the filtered leaky ReLU (against a float64 numpy
implementation of the official reference sequence, and JAX's own autodiff of a dense
convolution form for the gradient)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import scipy.special

from stylegan_jax.models.stylegan3 import layer_specs
from stylegan_jax.nn import filter_design as fd
from stylegan_jax.nn.filtered_lrelu import filtered_lrelu

# (numtaps, cutoff, width, fs) of every distinct layer of 32 / 256 / 1024 px generators.
DESIGNS = sorted({
    (s.up_taps, s.in_cutoff, 2 * s.in_half_width, s.in_sampling_rate * s.up)
    for res in (32, 256, 1024) for s in layer_specs(res, 3)[1] if s.up_taps > 1
} | {
    (s.down_taps, s.out_cutoff, 2 * s.out_half_width, s.out_sampling_rate * s.down)
    for res in (32, 256, 1024) for s in layer_specs(res, 3)[1] if s.down_taps > 1
})


def test_kaiser_formulas_match_scipy():
    for taps, width in [(12, 0.1), (24, 0.3), (7, 0.02), (48, 0.6)]:
        a = fd.kaiser_atten(taps, width)
        assert a == pytest.approx(scipy.signal.kaiser_atten(taps, width), rel=1e-12)
    for atten in (10.0, 21.0, 30.0, 50.0, 80.0):
        assert fd.kaiser_beta(atten) == pytest.approx(scipy.signal.kaiser_beta(atten), abs=1e-12)


def test_kaiser_lowpass_matches_firwin():
    assert len(DESIGNS) > 10
    for numtaps, cutoff, width, fs in DESIGNS + [(13, 3.0, 2.0, 20.0)]:
        ours = fd.kaiser_lowpass(numtaps, cutoff, width, fs)
        ref = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12, err_msg=str(numtaps))


def test_bessel_j1_matches_scipy():
    x = np.linspace(0, 80, 2001)
    np.testing.assert_allclose(fd.bessel_j1(x), scipy.special.j1(x), rtol=0, atol=1e-13)
    np.testing.assert_allclose(fd.bessel_j1(-x), -scipy.special.j1(x), rtol=0, atol=1e-13)


def test_jinc_lowpass_matches_scipy_design():
    for numtaps, cutoff, width, fs in DESIGNS:
        x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        ref = scipy.special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
        beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
        win = scipy.signal.windows.kaiser(numtaps, beta)
        ref = ref * np.outer(win, win)
        ref /= ref.sum()
        np.testing.assert_allclose(fd.jinc_lowpass(numtaps, cutoff, width, fs), ref,
                                   rtol=0, atol=1e-12)


def test_design_rejects_bad_arguments():
    assert fd.design_lowpass(1, 2.0, 1.0, 16.0) is None
    with pytest.raises(ValueError, match="cutoff must lie in"):
        fd.kaiser_lowpass(12, 9.0, 1.0, 16.0)
    with pytest.raises(ValueError, match="numtaps must be a positive integer"):
        fd.jinc_lowpass(0, 2.0, 1.0, 16.0)


# --- filtered_lrelu ------------------------------------------------------------------


def _fir_np(x, f, up, down, pad):
    """Official upfirdn2d in float64: zero insertion, pad / crop, true 2-D convolution
    (valid), keep every down-th sample. x: [H, W]."""
    y = np.zeros((x.shape[0] * up, x.shape[1] * up))
    y[::up, ::up] = x
    x0, x1, y0, y1 = pad
    y = np.pad(y, ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    y = y[max(-y0, 0): y.shape[0] - max(-y1, 0), max(-x0, 0): y.shape[1] - max(-x1, 0)]
    y = scipy.signal.convolve2d(y, f, mode="valid")
    return y[::down, ::down]


def _reference(x, fu, fd2, b, up, down, pad, gain, slope, clamp):
    x = np.asarray(x, np.float64) + np.asarray(b, np.float64)
    out = []
    for n in range(x.shape[0]):
        chans = []
        for c in range(x.shape[3]):
            y = _fir_np(x[n, :, :, c], fu, up, 1, pad) * up * up
            y = np.where(y >= 0, y, y * slope) * gain
            if clamp is not None:
                y = np.clip(y, -clamp, clamp)
            chans.append(_fir_np(y, fd2, 1, down, (0, 0, 0, 0)))
        out.append(np.stack(chans, -1))
    return np.stack(out)


CASES = {
    # name: (in size, up, down, padding, radial down filter)
    "up2_down2": (10, 2, 2, (9, 8, 9, 8), False),
    "up4_down2_crop": (14, 4, 2, (-6, -9, -6, -9), False),
    "radial": (10, 2, 2, (9, 8, 7, 10), True),
    "asymmetric_pad": (9, 2, 1, (3, 2, 1, 4), False),
}


def _filters(up, down, radial):
    fu = fd.design_lowpass(6 * up, 3.0, 2.5, 16.0 * up / 2) if up > 1 else None
    fdn = fd.design_lowpass(6 * down, 2.5, 3.0, 16.0 * up / 2, radial) if down > 1 else None
    return fu, fdn


@pytest.mark.parametrize("case", sorted(CASES))
def test_filtered_lrelu_matches_float64_reference(case):
    size, up, down, pad, radial = CASES[case]
    fu, fdn = _filters(up, down, radial)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32) * 3
    b = rng.normal(size=(3,)).astype(np.float32)
    clamp = 2.5  # low enough to bite
    ours = jax.jit(lambda x, b: filtered_lrelu(x, fu, fdn, b, up, down, pad,
                                               gain=math.sqrt(2), slope=0.2, clamp=clamp))(
        jnp.asarray(x), jnp.asarray(b))
    f2 = lambda f: np.ones((1, 1)) if f is None else (np.outer(f, f) if f.ndim == 1 else f)  # noqa: E731
    ref = _reference(x, f2(fu), f2(fdn), b, up, down, pad, math.sqrt(2), 0.2, clamp)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


def test_identity_filters_are_bias_lrelu_gain_clamp():
    x = jnp.linspace(-300, 300, 2 * 4 * 4 * 2).reshape(2, 4, 4, 2)
    b = jnp.array([1.0, -2.0])
    y = filtered_lrelu(x, None, None, b, gain=2.0, slope=0.2, clamp=256)
    z = np.asarray(x) + np.asarray(b)
    np.testing.assert_array_equal(y, np.clip(np.where(z >= 0, z, 0.2 * z) * 2, -256, 256))
    lin = filtered_lrelu(x, None, None, b, gain=1, slope=1, clamp=None)
    np.testing.assert_array_equal(lin, z)


def _dense_jax(x, fu2, fd2, b, up, down, pad, gain, slope, clamp):
    """Second implementation: depthwise lax convolutions, differentiated by JAX itself."""
    c = x.shape[-1]

    def depthwise(y, f, lhs_dil, stride, padding):
        k = jnp.asarray(f[::-1, ::-1].copy(), y.dtype)[:, :, None, None] * jnp.ones((1, 1, 1, c))
        return jax.lax.conv_general_dilated(
            y, k, (stride, stride), padding, lhs_dilation=(lhs_dil, lhs_dil),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)

    x0, x1, y0, y1 = pad
    y = x + b
    # Zero insertion = lhs dilation; the trailing up - 1 zeros are part of the padding.
    y = depthwise(y, fu2 * up * up, up, 1, ((y0, y1 + up - 1), (x0, x1 + up - 1)))
    y = jnp.clip(jnp.where(y >= 0, y, y * slope) * gain, -clamp, clamp)
    return depthwise(y, fd2, 1, down, ((0, 0), (0, 0)))


@pytest.mark.parametrize("case", ["up2_down2", "radial"])
def test_filtered_lrelu_gradient_matches_autodiff_of_dense_form(case):
    size, up, down, pad, radial = CASES[case]
    fu, fdn = _filters(up, down, radial)
    fu2 = np.outer(fu, fu)
    fd2 = fdn if fdn.ndim == 2 else np.outer(fdn, fdn)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32) * 3
    b = jnp.asarray(rng.normal(size=(3,)), jnp.float32)
    out_shape = jax.eval_shape(lambda x: filtered_lrelu(x, fu, fdn, b, up, down, pad), x).shape
    w = jnp.asarray(rng.normal(size=out_shape), jnp.float32)

    def loss(fn, *args):
        return lambda x, b: jnp.sum(fn(x, *args[:2], b, *args[2:]) * w)

    ours = jax.jit(jax.grad(loss(filtered_lrelu, fu, fdn, up, down, pad, math.sqrt(2), 0.2,
                                 2.5), argnums=(0, 1)))(x, b)
    ref = jax.grad(loss(_dense_jax, fu2, fd2, up, down, pad, math.sqrt(2), 0.2, 2.5),
                   argnums=(0, 1))(x, b)
    for o, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(o, r, rtol=0, atol=1e-5 * np.abs(r).max())


def test_bad_arguments_are_named():
    x = jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="slope must be one of"):
        filtered_lrelu(x, slope=0.1)
    with pytest.raises(ValueError, match="padding must be"):
        filtered_lrelu(x, padding=(1, 2))
    with pytest.raises(ValueError, match="NHWC"):
        filtered_lrelu(jnp.zeros((4, 4, 1)))
