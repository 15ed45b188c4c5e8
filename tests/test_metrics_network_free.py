"""ProGAN's SWD and MS-SSIM against numbers recorded from the official numpy code
(tests/data/official_progan_metrics, with the official random draws injected), closed-form
cases, and the metrics runner / CLI names around them."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from stylegan_jax.metrics import ms_ssim, swd
from stylegan_jax.metrics.parallel import LocalDevices
from stylegan_jax.metrics.registry import parse_metric
from stylegan_jax.metrics.runner import compute_metrics
from stylegan_jax.models.registry import random_generator

FIXTURES = Path(__file__).parent / "data" / "official_progan_metrics"
SWD_FILES = sorted(FIXTURES.glob("swd_*.npz"))
MSSSIM_FILES = sorted(FIXTURES.glob("msssim_*.npz"))


def test_fixtures_present():
    assert len(SWD_FILES) >= 4 and len(MSSSIM_FILES) >= 4


def _load(path):
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


def _centres(data, which):
    """[N, levels, 128, 2] (row, column) from the official per-level x / y draws."""
    n = data[which].shape[0]
    levels = len(data["resolutions"])
    out = np.empty((n, levels, 128, 2), np.int32)
    for lv in range(levels):
        out[:, lv, :, 0] = data[f"pos/{which}/y_level{lv}"].reshape(n, 128)
        out[:, lv, :, 1] = data[f"pos/{which}/x_level{lv}"].reshape(n, 128)
    return out


def _directions(data):
    """The official end('fakes') directions, regenerated from the recorded MT19937 state."""
    rs = np.random.RandomState()
    rs.set_state(("MT19937", data["rng_state/dirs/key"], int(data["rng_state/dirs/pos"]),
                  int(data["rng_state/dirs/has_gauss"]),
                  float(data["rng_state/dirs/cached_gaussian"])))
    return [np.stack([rs.randn(147, 128) for _ in range(4)]) for _ in data["resolutions"]]


def _descriptors(images_nchw, centres):
    return [np.asarray(d) for d in swd.batch_descriptors_jit(
        np.transpose(images_nchw, (0, 2, 3, 1)), centres)]


@pytest.mark.parametrize("path", SWD_FILES, ids=lambda p: p.stem)
def test_swd_equals_official(path):
    data = _load(path)
    real = _descriptors(data["reals"], _centres(data, "reals"))
    fake = _descriptors(data["fakes"], _centres(data, "fakes"))
    per_level = swd.swd_levels(real, fake, _directions(data))
    want = [float(data[f"swd/level{lv}"]) for lv in range(len(data["resolutions"]))]
    np.testing.assert_allclose(per_level, want, rtol=2e-6)
    name = "swd_test"
    got = swd.results(name, int(data["reals"].shape[-1]), per_level)
    np.testing.assert_allclose(got[name], float(data["swd/avg"]), rtol=2e-6)
    assert list(got) == [name] + [f"{name}_{r}" for r in data["resolutions"]]


def test_swd_pieces_equal_official_intermediates():
    data = _load(next(p for p in SWD_FILES if "intermediates" in p.stem))
    levels = len(data["resolutions"])
    pyramid = swd.laplacian_pyramid(np.transpose(data["reals"], (0, 2, 3, 1)), levels)
    for lv in range(levels):
        np.testing.assert_allclose(np.transpose(np.asarray(pyramid[lv]), (0, 3, 1, 2)),
                                   data[f"pyramid/level{lv}"], atol=2e-4)
    for which in ("reals", "fakes"):
        raw = _descriptors(data[which], _centres(data, which))[0]
        np.testing.assert_allclose(swd.normalise(raw), data[f"desc/{which}/level0"],
                                   atol=2e-5)


def test_swd_of_a_set_with_itself_is_zero_and_grows_with_difference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    centres = swd.draw_centres(rng, 8, 32)
    a = [np.asarray(d) for d in swd.batch_descriptors_jit(images, centres)]
    dirs = [swd.draw_directions(rng, 147) for _ in a]
    assert swd.swd_levels(a, a, dirs) == [0.0, 0.0]
    values = []
    for sigma in (10, 40, 120):
        noisy = np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)
        b = [np.asarray(d) for d in swd.batch_descriptors_jit(noisy, centres)]
        values.append(np.mean(swd.swd_levels(a, b, dirs)))
    assert 0 < values[0] < values[1] < values[2]


def test_swd_one_dimensional_closed_form():
    """One direction along one axis: the mean |sorted difference| of two samples."""
    a = np.zeros((4, 147), np.float32)
    b = np.zeros((4, 147), np.float32)
    a[:, 0] = [0.0, 1.0, 2.0, 3.0]
    b[:, 0] = [5.0, 0.5, 4.0, 1.5]  # sorted: 0.5 1.5 4 5
    direction = np.zeros((1, 147, 1))
    direction[0, 0, 0] = 3.0  # normalised to unit length
    assert swd.sliced_wasserstein(a, b, direction) == pytest.approx((0.5 + 0.5 + 2 + 2) / 4)


@pytest.mark.parametrize("path", MSSSIM_FILES, ids=lambda p: p.stem)
def test_msssim_equals_official(path):
    data = _load(path)
    images = np.transpose(data["images"], (0, 2, 3, 1))
    mb = int(data["minibatch_size"])
    firsts = np.concatenate([images[m:m + mb:2] for m in range(0, len(images), mb)])
    seconds = np.concatenate([images[m + 1:m + mb:2] for m in range(0, len(images), mb)])
    scores = np.asarray(ms_ssim.pair_scores_jit(firsts, seconds), np.float64)
    np.testing.assert_allclose(scores, data["pair_scores"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(scores.mean(), float(data["msssim"]), rtol=2e-5, atol=2e-6)


def test_msssim_gaussian_window_is_matlab_fspecial():
    for size, sigma in ((11, 1.5), (4, 4 * 1.5 / 11), (2, 2 * 1.5 / 11)):
        g = ms_ssim.gaussian_1d(size, sigma)
        x = np.arange(size) - size // 2 + (0.5 if size % 2 == 0 else 0.0)
        xx, yy = np.meshgrid(x, x)
        window = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
        np.testing.assert_allclose(np.outer(g, g), window / window.sum(), rtol=1e-12)


def test_metric_names():
    s = parse_metric("swd16k")
    assert (s.kind, s.num_gen, s.max_real, s.needs_real) == ("swd", 16384, 16384, True)
    assert parse_metric("swd256").num_gen == 256
    m = parse_metric("msssim20k")
    assert (m.kind, m.num_gen, m.needs_real, m.detector) == ("msssim", 20000, False, None)
    with pytest.raises(ValueError, match="even"):
        parse_metric("msssim15")


@pytest.fixture(scope="module")
def tiny_generator():
    return random_generator(32, 1, seed=3)


def test_runner_swd_and_msssim(tiny_generator):
    """Through the runner: per-level keys, reals repeated to the count, the same value for
    the same seed, and reals compared with themselves nearer than with noise."""
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (24, 32, 32, 1)).astype(np.uint8)
    batches = lambda: [reals[i:i + 16] for i in range(0, len(reals), 16)]  # noqa: E731
    out = compute_metrics(["swd64", "msssim32"], tiny_generator, batches, None,
                          batch_size=16, progress=False)
    assert set(out["swd64"].results) == {"swd64", "swd64_32", "swd64_16"}
    assert out["swd64"].results["swd64"] == pytest.approx(
        (out["swd64"].results["swd64_32"] + out["swd64"].results["swd64_16"]) / 2)
    assert 0.0 <= out["msssim32"].results["msssim32"] <= 1.0
    again = compute_metrics(["swd64"], tiny_generator, batches, None, batch_size=16,
                            progress=False)
    assert again["swd64"].results == out["swd64"].results
    # Sharded over the (8 fake) devices or on one: the same images, draws and results.
    one = compute_metrics(["swd64", "msssim32"], tiny_generator, batches, None, batch_size=16,
                          progress=False, devices=LocalDevices(jax.local_devices()[:1]))
    assert jax.device_count() > 1
    for name in one:
        for key, value in one[name].results.items():
            assert out[name].results[key] == pytest.approx(value, rel=1e-5), key
