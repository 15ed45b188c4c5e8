"""ProGAN / StyleGAN v1 objectives, EMA, TF Adam and the real-image fade, against closed forms
and NumPy transcriptions of the official TensorFlow formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.train.progressive import losses
from stylegan_jax.train.progressive.step import AdamState, fade_reals, tf_adam

RNG = np.random.default_rng(0)
N, R, C = 4, 8, 3
REALS = RNG.normal(size=(N, R, R, C)).astype(np.float32)
FAKES = RNG.normal(size=(N, R, R, C)).astype(np.float32)
W = RNG.normal(size=(R, R, C)).astype(np.float32) * 0.05


def linear_d(x):  # gradient W everywhere
    return jnp.sum(x * W, axis=(1, 2, 3))[:, None] + 0.3


def quadratic_d(x, a=0.7):  # gradient 2 a x
    return a * jnp.sum(jnp.square(x), axis=(1, 2, 3))[:, None]


def test_wgan_gp_with_a_linear_critic():
    mix = RNG.uniform(size=(N, 1, 1, 1)).astype(np.float32)
    loss, terms = losses.d_wgan_gp(linear_d, REALS, FAKES, mix, wgan_lambda=10.0,
                                   wgan_epsilon=0.001, wgan_target=1.0)
    real = np.sum(REALS * W, axis=(1, 2, 3))[:, None] + 0.3
    fake = np.sum(FAKES * W, axis=(1, 2, 3))[:, None] + 0.3
    norm = np.sqrt(np.sum(W.astype(np.float64) ** 2))  # the same for every interpolate
    want = fake - real + 10.0 * (norm - 1.0) ** 2 + 0.001 * real**2
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms["drift"], 0.001 * real**2, rtol=1e-5)
    np.testing.assert_allclose(terms["norms"], np.full((N, 1), norm), rtol=1e-5)


def test_wgan_gp_penalises_the_gradient_at_the_interpolates():
    """With D = a |x|^2 the gradient norm is 2 a |lerp(real, fake, mix)|, per sample."""
    mix = np.array([0.0, 1.0, 0.25, 0.6], np.float32).reshape(N, 1, 1, 1)
    lam, target = 3.0, 2.0
    loss, terms = losses.d_wgan_gp(quadratic_d, REALS, FAKES, mix, wgan_lambda=lam,
                                   wgan_epsilon=0.0, wgan_target=target)
    mixed = REALS + (FAKES - REALS) * mix
    norms = 2 * 0.7 * np.sqrt(np.sum(mixed.astype(np.float64) ** 2, axis=(1, 2, 3)))[:, None]
    penalty = (norms - target) ** 2 * lam / target**2
    np.testing.assert_allclose(terms["reg"], penalty, rtol=1e-5)
    main = 0.7 * (np.sum(FAKES**2, axis=(1, 2, 3)) - np.sum(REALS**2, axis=(1, 2, 3)))[:, None]
    np.testing.assert_allclose(loss, main + penalty, rtol=1e-5)


def test_wgan_gp_gradient_reaches_the_critic_parameters():
    """d penalty / d a for D = a |x|^2: lambda * 2 (2a|m| - 1) * 2|m| (double backprop)."""
    mix = np.full((N, 1, 1, 1), 0.5, np.float32)

    def reg(a):
        return jnp.sum(losses.d_wgan_gp(lambda x: quadratic_d(x, a), REALS, FAKES, mix,
                                        wgan_epsilon=0.0)[1]["reg"])

    a = 0.3
    m = np.sqrt(np.sum((0.5 * (REALS + FAKES)).astype(np.float64) ** 2, axis=(1, 2, 3)))
    want = np.sum(10.0 * 2 * (2 * a * m - 1) * 2 * m)
    assert float(jax.grad(reg)(a)) == pytest.approx(want, rel=1e-4)


def test_logistic_r1_with_a_quadratic_discriminator():
    gamma = 10.0
    loss, terms = losses.d_logistic_r1(quadratic_d, REALS, FAKES, r1_gamma=gamma)
    real = 0.7 * np.sum(REALS.astype(np.float64) ** 2, axis=(1, 2, 3))[:, None]
    fake = 0.7 * np.sum(FAKES.astype(np.float64) ** 2, axis=(1, 2, 3))[:, None]
    softplus = lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)  # noqa: E731
    r1 = gamma / 2 * np.sum((2 * 0.7 * REALS.astype(np.float64)) ** 2, axis=(1, 2, 3))[:, None]
    np.testing.assert_allclose(terms["reg"], r1, rtol=1e-5)
    np.testing.assert_allclose(loss, softplus(fake) + softplus(-real) + r1, rtol=1e-5)
    no_r1, _ = losses.d_logistic_r1(quadratic_d, REALS, FAKES, r1_gamma=0.0)
    np.testing.assert_allclose(no_r1, softplus(fake) + softplus(-real), rtol=1e-5)


def test_generator_losses():
    s = np.array([[-3.0], [0.0], [2.5]], np.float32)
    np.testing.assert_array_equal(losses.g_wgan(s), -s)
    np.testing.assert_allclose(losses.g_logistic_nonsaturating(s),
                               -np.log(1 / (1 + np.exp(-s.astype(np.float64)))), rtol=1e-6)


def test_ema_beta():
    assert losses.ema_beta(64, 0.0, 0.999) == 0.999  # ProGAN: per step, any minibatch
    beta = losses.ema_beta(32, 10.0, 0.0)  # StyleGAN: 10 kimg half-life
    assert beta == pytest.approx(0.5 ** (32 / 10_000))
    assert beta ** (10_000 / 32) == pytest.approx(0.5)  # after 10 kimg half the weight
    assert losses.ema_beta(32, 0.0, 0.0) == 0.0  # official "nosmoothing"


def tf_adam_numpy(p, grads, lr, b1, b2, eps):
    """tf.train.AdamOptimizer as documented: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),
    p -= lr_t m / (sqrt(v) + eps)."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return p, m, v


@pytest.mark.parametrize("betas", [(0.0, 0.99), (0.9, 0.999)])
def test_tf_adam(betas):
    p0 = RNG.normal(size=5)
    grads = [RNG.normal(size=5) * 10.0 ** -k for k in range(6)]  # includes tiny gradients
    want, m, v = tf_adam_numpy(p0, grads, 0.002, *betas, 1e-8)
    params = {"w": jnp.asarray(p0, jnp.float32)}
    state = AdamState(jnp.zeros((), jnp.int32), {"w": jnp.zeros(5)}, {"w": jnp.zeros(5)})
    for g in grads:
        params, state = tf_adam(params, {"w": jnp.asarray(g, jnp.float32)}, state, 0.002,
                                betas, 1e-8)
    assert int(state.count) == len(grads)
    np.testing.assert_allclose(params["w"], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state.v["w"], v, rtol=1e-4, atol=1e-20)


def process_reals_numpy(x_u8_nhwc, lod):
    """The official process_reals (DynamicRange, FadeLOD, UpscaleLOD), NCHW, without mirror."""
    x = np.transpose(x_u8_nhwc, (0, 3, 1, 2)).astype(np.float32) * (2 / 255) - 1
    s = x.shape
    y = x.reshape(-1, s[1], s[2] // 2, 2, s[3] // 2, 2).mean(axis=(3, 5), keepdims=True)
    y = np.tile(y, [1, 1, 1, 2, 1, 2]).reshape(-1, s[1], s[2], s[3])
    x = x + (y - x) * (lod - np.floor(lod))
    f = int(2 ** np.floor(lod))
    x = np.tile(x.reshape(-1, s[1], s[2], 1, s[3], 1), [1, 1, 1, f, 1, f])
    return np.transpose(x.reshape(-1, s[1], s[2] * f, s[3] * f), (0, 2, 3, 1))


@pytest.mark.parametrize("lod,level", [(2.0, 2), (1.25, 1), (0.5, 0), (0.0, 0)])
def test_reals_fade_like_the_official_process_reals(lod, level):
    res = 16 >> level
    u8 = RNG.integers(0, 256, size=(3, res, res, 2), dtype=np.uint8)
    got = fade_reals(jnp.asarray(u8), jnp.float32(lod), level, 16)
    assert got.shape == (3, 16, 16, 2)
    np.testing.assert_allclose(got, process_reals_numpy(u8, lod), atol=1e-6)
