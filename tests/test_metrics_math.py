"""FID, KID, precision/recall, IS, PPL and feature statistics against closed forms and
brute-force computations, and the metric names."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.metrics import fid, inception_score, kid, ppl, precision_recall, registry
from stylegan_jax.metrics.feature_stats import FeatureStats
from stylegan_jax.metrics.parallel import LocalDevices, process_share
from stylegan_jax.store.checkpoints import higher_is_better

RNG = np.random.default_rng(1234)


# --- Fréchet distance ------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # commuting covariances Q diag(a) Q^T, Q diag(b) Q^T: sum (sqrt a - sqrt b)^2
    q, _ = np.linalg.qr(RNG.standard_normal((6, 6)))
    a, b = RNG.uniform(0.5, 3, 6), RNG.uniform(0.5, 3, 6)
    mu1, mu2 = RNG.standard_normal(6), RNG.standard_normal(6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(want, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    x, y = RNG.standard_normal((200, 12)), RNG.standard_normal((150, 12)) @ RNG.uniform(
        0, 1, (12, 12))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    m1, m2 = x.mean(0), y.mean(0)
    root = scipy_linalg.sqrtm(s1 @ s2)
    want = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real
    assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(want, rel=1e-9)


def test_frechet_distance_of_singular_identical_gaussians_is_zero():
    x = RNG.standard_normal((10, 32))  # fewer samples than dims: rank-deficient
    stats = FeatureStats(capture_mean_cov=True)
    stats.append(x)
    mu, sigma = stats.get_mean_cov()
    # the square roots of ~1e-16 round-off eigenvalues leave ~1e-8 of the trace
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-7 * np.trace(sigma)


# --- feature statistics ------------------------------------------------------------------
def test_feature_stats_are_biased_moments_and_round_trip(tmp_path):
    x = RNG.standard_normal((50, 5)).astype(np.float32)
    stats = FeatureStats(capture_all=True, capture_mean_cov=True, max_items=37)
    for i in range(0, 50, 8):
        stats.append(x[i : i + 8])
    assert stats.num_items == 37 and stats.is_full()
    mean, cov = stats.get_mean_cov()
    np.testing.assert_allclose(mean, x[:37].astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x[:37].astype(np.float64), rowvar=False, bias=True),
                               atol=1e-12)
    mean10, cov10 = stats.get_mean_cov(10)  # a prefix comes from the kept rows
    np.testing.assert_allclose(cov10, np.cov(x[:10].astype(np.float64), rowvar=False, bias=True),
                               atol=1e-12)
    stats.save(tmp_path / "s.npz")
    back = FeatureStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.get_all(), x[:37])
    np.testing.assert_allclose(back.get_mean_cov()[1], cov, atol=0)
    only_moments = FeatureStats(capture_mean_cov=True)
    only_moments.append(x)
    with pytest.raises(ValueError, match="capture_all=False"):
        only_moments.get_all()


# --- KID ---------------------------------------------------------------------------------
def _mmd2_brute(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / m**2


def test_kid_is_the_unbiased_polynomial_mmd():
    x, y = RNG.standard_normal((9, 4)), RNG.standard_normal((9, 4)) + 0.5
    assert kid.polynomial_mmd2(x, y) == pytest.approx(_mmd2_brute(x, y), rel=1e-10)
    # one subset holding every row: KID is that MMD², whatever order the draws take
    assert kid.kernel_inception_distance(y, x, num_subsets=3, max_subset_size=50) == (
        pytest.approx(_mmd2_brute(x, y), rel=1e-10))


def test_kid_of_identical_sets_is_near_zero():
    """Same set, one subset of all m rows: MMD² = 2 S / (m² (m - 1)) - 2 T / m², with S the
    off-diagonal and T the diagonal kernel sum, O(1/m); two samples of one distribution
    give ~0 (the estimator is unbiased), a shifted one O(1)."""
    m, d = 400, 16
    x = RNG.standard_normal((m, d))
    same = kid.kernel_inception_distance(x, x.copy(), num_subsets=2, max_subset_size=m)
    k = (x @ x.T / d + 1) ** 3
    off, diag = k.sum() - np.trace(k), np.trace(k)
    assert same == pytest.approx(2 * off / (m**2 * (m - 1)) - 2 * diag / m**2, rel=1e-9)
    a, b = RNG.standard_normal((2, 2000, d))
    same_dist = kid.kernel_inception_distance(a, b, num_subsets=10, max_subset_size=1000)
    shifted = kid.kernel_inception_distance(a, b + 0.5, num_subsets=10, max_subset_size=1000)
    assert abs(same_dist) < 0.01 * shifted


# --- precision / recall --------------------------------------------------------------------
def _embed(points_1d, dims=4):
    out = np.zeros((len(points_1d), dims), np.float32)
    out[:, 0] = points_1d
    return out


def test_precision_recall_closed_form_on_a_line():
    real = _embed(np.arange(10.0))  # neighbour radius 1 everywhere (nhood 1)
    gen = _embed([0.5, 20.0])  # 0.5 lies in a real ball, 20 does not; both gen balls are 19.5
    p, r = precision_recall.precision_recall(real, gen, nhood_size=1)
    assert (p, r) == (0.5, 1.0)


def test_precision_recall_of_identical_sets_is_one():
    x = RNG.standard_normal((40, 16)).astype(np.float32)
    assert precision_recall.precision_recall(x, x.copy(), nhood_size=3) == (1.0, 1.0)


def _pr_brute(real, gen, k):
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    out = []
    for manifold, probes in ((real, gen), (gen, real)):
        radii = np.sort(dist(manifold, manifold), axis=1)[:, k]
        out.append(np.mean(np.any(dist(probes, manifold) <= radii[None, :], axis=1)))
    return tuple(out)


@pytest.mark.parametrize("devices", [1, 8])
def test_precision_recall_blocked_and_sharded_equals_brute_force(devices):
    real = RNG.standard_normal((45, 8)).astype(np.float64)
    gen = (RNG.standard_normal((38, 8)) * 1.3 + 0.4).astype(np.float64)
    want = _pr_brute(real.astype(np.float16).astype(np.float64),
                     gen.astype(np.float16).astype(np.float64), 3)
    got = precision_recall.precision_recall(
        real, gen, nhood_size=3, row_batch_size=16, col_batch_size=7,
        devices=LocalDevices(jax.local_devices()[:devices]))
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got[0] < 1 and 0 < got[1] < 1


# --- Inception Score -------------------------------------------------------------------------
def test_inception_score_closed_forms():
    one_hot = np.eye(4)[np.arange(40) % 4]  # confident and balanced: IS = number of classes
    assert inception_score.inception_score(one_hot, 10) == pytest.approx((4.0, 0.0))
    uniform = np.full((20, 7), 1 / 7)  # no information: IS = 1
    assert inception_score.inception_score(uniform, 2) == pytest.approx((1.0, 0.0))
    # split 1: two confident classes (2); split 2: identical soft rows (1)
    probs = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5]])
    assert inception_score.inception_score(probs, 2) == pytest.approx((1.5, 0.5))


def test_class_probabilities_ignore_the_output_bias():
    pool3 = jnp.asarray(RNG.standard_normal((3, 5)), jnp.float32)
    w = jnp.asarray(RNG.standard_normal((5, 4)), jnp.float32)
    logits = np.asarray(pool3, np.float64) @ np.asarray(w, np.float64)
    want = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(inception_score.class_probabilities(pool3, w), want, rtol=1e-5)


# --- perceptual path length ----------------------------------------------------------------
def _linear(b):
    """mapping z -> [z] (one w), synthesis w -> w @ b, distance = squared L2."""
    return dict(mapping=lambda z, c: z[:, None, :],
                synthesize_pairs=lambda ws0, ws1, key: (ws0[:, 0] @ b, ws1[:, 0] @ b),
                distance=lambda x, y: jnp.sum(jnp.square(x - y), axis=-1))


def test_ppl_of_a_linear_generator_in_w():
    """Images linear in w: (w(t + e) - w(t)) B = e (w1 - w0) B, so PPL = |(z1 - z0) B|²."""
    b = RNG.standard_normal((5, 3))
    z0, z1 = RNG.standard_normal((2, 64, 5))
    t = RNG.uniform(size=64)
    got = ppl.lengths_between(*(jnp.asarray(v, jnp.float32) for v in (z0, z1, t)),
                              jnp.zeros((64, 0)), jax.random.PRNGKey(0), space="w",
                              epsilon=1e-2, **_linear(jnp.asarray(b, jnp.float32)))
    np.testing.assert_allclose(got, np.sum(((z1 - z0) @ b) ** 2, axis=1), rtol=1e-4)


def test_ppl_in_z_is_the_great_circle_speed():
    """z-space paths are great circles at speed theta = angle(z0, z1): with identity mapping
    and images, PPL = (2 sin(theta e / 2) / e)², the chord over e."""
    z0, z1 = RNG.standard_normal((2, 64, 6))
    t = RNG.uniform(size=64)
    eps = 1e-2
    got = ppl.lengths_between(*(jnp.asarray(v, jnp.float32) for v in (z0, z1, t)),
                              jnp.zeros((64, 0)), jax.random.PRNGKey(0), space="z",
                              epsilon=eps, **_linear(jnp.eye(6)))
    cos = np.sum(z0 * z1, 1) / np.linalg.norm(z0, axis=1) / np.linalg.norm(z1, axis=1)
    theta = np.arccos(cos)
    np.testing.assert_allclose(got, (2 * np.sin(theta * eps / 2) / eps) ** 2, rtol=2e-3)


def _t_revealing(eps):
    """A generator whose path length reveals t. z_dim 1; mapping z -> w = (z, z²), a point on
    the parabola y = x², and the image is w itself. The pair's images are w(t) and
    w(t + eps) on the chord from (a, a²) to (b, b²), so d = (w(t + eps) - w(t)) / eps =
    (b - a, b² - a²) gives a + b = d_y / d_x and a = (a + b - d_x) / 2, and then
    t = (w_x(t) - a) / d_x. The 'distance' returns t * eps² (the length is distance / eps²,
    so the length is t); NaN where b - a is too small for float32 to solve."""
    def distance(x, y):
        d = (y - x) / eps
        a = (d[:, 1] / d[:, 0] - d[:, 0]) / 2
        t = (x[:, 0] - a) / d[:, 0]
        return jnp.where(jnp.abs(d[:, 0]) > 0.2, t, jnp.nan) * eps**2

    return dict(mapping=lambda z, c: jnp.stack([z[:, 0], z[:, 0] ** 2], -1)[:, None, :],
                synthesize_pairs=lambda ws0, ws1, key: (ws0[:, 0], ws1[:, 0]),
                distance=distance)


def test_t_revealing_generator_reads_t_back():
    """The test generator itself, on paths with known t (lengths_between takes t)."""
    z0, z1 = RNG.standard_normal((2, 64, 1))
    t = RNG.uniform(size=64)
    got = np.asarray(ppl.lengths_between(
        *(jnp.asarray(v, jnp.float32) for v in (z0, z1, t)), jnp.zeros((64, 0)),
        jax.random.PRNGKey(0), space="w", epsilon=0.25, **_t_revealing(0.25)))
    ok = np.abs(z1[:, 0] - z0[:, 0]) > 0.25  # solvable (the generator's own limit is 0.2)
    assert ok.sum() > 40
    np.testing.assert_allclose(got[ok], t[ok], atol=1e-3)


@pytest.mark.parametrize("sampling", ["full", "end"])
def test_ppl_sampling_draws_t_in_range(sampling):
    """'end' measures at t = 0 exactly; 'full' at t ~ U[0, 1), one t per path. The
    generator reads each path's t back (see _t_revealing): a t outside [0, 1), a t
    shared by every path or a sampling that ignores its name fails."""
    n = 512
    got = np.asarray(ppl.path_lengths(jax.random.PRNGKey(3), jnp.zeros((n, 0)), z_dim=1,
                                      sampling=sampling, space="w", epsilon=0.25,
                                      **_t_revealing(0.25)))
    t = got[np.isfinite(got)]
    assert len(t) > 0.8 * n  # P(|b - a| <= 0.2) = 0.11 for a, b ~ N(0, 1)
    if sampling == "end":
        np.testing.assert_allclose(t, 0.0, atol=1e-3)
        return
    assert t.min() >= -1e-3 and t.max() < 1 + 1e-3  # float32 solving error: ~1e-4
    # U[0, 1), one draw per path: the empirical CDF within 0.1 of the identity
    # (Kolmogorov-Smirnov; the 0.1% critical value for n ~ 450 is 1.95 / sqrt(n) = 0.092).
    # A constant t is >= 0.5 away, U[0, 0.5) 0.5 away.
    edf = np.arange(1, len(t) + 1) / len(t)
    assert np.max(np.abs(np.sort(t) - edf)) < 0.1
    with pytest.raises(ValueError, match="sampling must be one of"):
        ppl.path_lengths(jax.random.PRNGKey(3), jnp.zeros((16, 0)), z_dim=1, sampling="mid",
                         space="w", epsilon=0.25, **_t_revealing(0.25))


def test_ppl_aggregate_drops_the_outer_percentiles():
    lengths = np.arange(1, 201, dtype=np.float64)  # 1st 'lower' = 2, 99th 'higher' = 199
    assert ppl.aggregate(lengths) == pytest.approx(np.mean(np.arange(2, 200)))


def test_ppl_crop_and_downsample_follow_the_official_layout():
    img = jnp.asarray(RNG.standard_normal((1, 512, 512, 1)), jnp.float32)
    out = np.asarray(ppl.crop_and_downsample(img, crop=True, img_resolution=512))
    crop = np.asarray(img)[0, 192:448, 128:384, 0]  # rows 3/8..7/8, cols 2/8..6/8
    box = crop.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    assert out.shape == (1, 128, 128, 3)
    np.testing.assert_allclose(out[0, :, :, 1], box, atol=1e-6)


# --- names and sharing of samples -------------------------------------------------------------
def test_official_metric_names():
    s = registry.parse_metric("fid50k_full")
    assert (s.kind, s.num_gen, s.max_real) == ("fid", 50000, None)
    assert registry.parse_metric("fid50k").max_real == 50000
    assert registry.parse_metric("kid50k_full").max_real == 1_000_000
    pr = registry.parse_metric("pr50k3_full")
    assert (pr.nhood_size, pr.max_real, pr.result_keys) == (
        3, 200_000, ("pr50k3_full_precision", "pr50k3_full_recall"))
    assert registry.parse_metric("is50k").result_keys == ("is50k_mean", "is50k_std")
    for name, space, sampling, crop in [("ppl_zfull", "z", "full", True),
                                        ("ppl_wend", "w", "end", True),
                                        ("ppl2_wend", "w", "end", False)]:
        p = registry.parse_metric(name)
        assert (p.space, p.sampling, p.crop, p.num_gen, p.epsilon) == (
            space, sampling, crop, 50000, 1e-4)
    assert registry.parse_metric("ppl_wend_2k").num_gen == 2000
    assert registry.parse_metric("fid1k_full").num_gen == 1000
    assert registry.parse_metric("fid64").max_real == 64  # counts without k: images
    assert registry.parse_metric("ppl_zend_16").num_gen == 16
    with pytest.raises(ValueError, match="unknown metric 'fid'.*fid50k_full"):
        registry.parse_metric("fid")
    assert not higher_is_better("fid50k_full")
    assert higher_is_better("pr50k3_full_recall")


def test_process_shares_add_up():
    for total, count in [(50000, 3), (7, 8), (10, 1)]:
        shares = [process_share(total, i, count) for i in range(count)]
        assert sum(shares) == total and max(shares) - min(shares) <= 1
        assert math.ceil(total / count) == max(shares)
