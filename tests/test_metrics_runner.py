"""The metric runner: generated and real passes, sharding, seeding, caching, sharing.

Cheap stand-in feature functions (4x4 box features) replace Inception / VGG16 / LPIPS
here, so that the metric values can be recomputed directly from the same images; the
real networks are checked in test_metrics_feature_nets.py and test_metrics_cli.py.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from metrics_ppl_reference import (
    ClosedFormGenerator,
    closed_form_variables,
    np_pair_lengths,
    np_ppl,
    register_as_stylegan2,
    stand_in_detectors,
)
from toy_detectors import box_features_np, toy_detectors

from stylegan_jax.metrics import fid, runner
from stylegan_jax.metrics.detectors import Detectors
from stylegan_jax.metrics.parallel import LocalDevices
from stylegan_jax.metrics.registry import MetricSpec
from stylegan_jax.models.registry import Network, random_generator

RES = 16


@pytest.fixture(scope="module")
def G():
    return random_generator(RES, seed=3)


@pytest.fixture(scope="module")
def reals():
    return np.random.default_rng(0).integers(0, 256, (21, RES, RES, 3), dtype=np.uint8)


def batches_of(images, size=8):
    return lambda: (images[i : i + size] for i in range(0, len(images), size))


FID = MetricSpec("fid_test", "fid", 20, None)


def test_fid_equals_direct_computation_on_the_same_images(G, reals):
    """z of generated sample i is draw i of default_rng([seed, process]).standard_normal."""
    got = runner.compute_metrics([FID], G, batches_of(reals), None, detectors=toy_detectors(),
                                 batch_size=8, noise_mode="const", progress=False)
    z = np.random.default_rng([0, 0]).standard_normal((20, G.module.z_dim)).astype(np.float32)
    img = G.module.apply(G.variables, jnp.asarray(z), jnp.zeros((20, 0)), noise_mode="const")
    fake = np.clip(np.floor(np.asarray(img, np.float64) * 127.5 + 128), 0, 255).astype(np.uint8)
    f_gen, f_real = box_features_np(fake), box_features_np(reals)
    want = fid.frechet_distance(f_gen.mean(0), np.cov(f_gen, rowvar=False, bias=True),
                                f_real.mean(0), np.cov(f_real, rowvar=False, bias=True))
    result = got["fid_test"]
    assert result.results["fid_test"] == pytest.approx(want, rel=1e-3)
    assert result.num_devices == jax.device_count()
    line = json.loads(result.to_json("snap"))
    assert line["metric"] == "fid_test" and line["results"] == result.results


def test_results_do_not_depend_on_the_device_count(G, reals):
    specs = [FID, MetricSpec("kid_test", "kid", 20, None, num_subsets=3, max_subset_size=10),
             MetricSpec("pr_test", "pr", 20, None, nhood_size=2)]
    kw = dict(detectors=toy_detectors(), batch_size=8, noise_mode="const", progress=False)
    one = runner.compute_metrics(specs, G, batches_of(reals, 5), None,
                                 devices=LocalDevices(jax.local_devices()[:1]), **kw)
    eight = runner.compute_metrics(specs, G, batches_of(reals, 5), None, **kw)
    for name in one:
        for key, value in one[name].results.items():
            assert eight[name].results[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_generated_pass_is_shared_and_prefixes_are_used(G, reals, monkeypatch):
    calls = []
    step = runner._gen_step
    monkeypatch.setattr(runner, "_gen_step", lambda *a: calls.append(1) or step(*a))
    kw = dict(detectors=toy_detectors(), batch_size=8, noise_mode="const", progress=False)
    small = MetricSpec("fid_small", "fid", 12, None)
    both = runner.compute_metrics(
        [FID, MetricSpec("is_test", "is", 20, num_splits=2), small], G, batches_of(reals),
        None, **kw)
    assert len(calls) == 3  # one pass of ceil(20 / 8) batches serves all three
    alone = runner.compute_metrics([small], G, batches_of(reals), None, **kw)
    assert both["fid_small"].results == pytest.approx(alone["fid_small"].results, rel=1e-6)
    assert 1.0 <= both["is_test"].results["is_test_mean"] <= 10.0


def test_real_statistics_are_cached(G, reals, tmp_path):
    kw = dict(detectors=toy_detectors(), batch_size=8, noise_mode="const", progress=False,
              dataset_key="rand21", num_real=21)
    first = runner.compute_metrics([FID], G, batches_of(reals), tmp_path, **kw)
    assert len(list(tmp_path.glob("rand21-box-*.npz"))) == 1

    def no_data():
        raise AssertionError("the cached statistics should have been used")

    again = runner.compute_metrics([FID], G, no_data, tmp_path, **kw)
    assert again["fid_test"].results == first["fid_test"].results
    # KID needs every real feature; the FID cache kept only moments: the pass reruns
    kid = MetricSpec("kid_test", "kid", 20, None, num_subsets=2, max_subset_size=10)
    out = runner.compute_metrics([kid], G, batches_of(reals), tmp_path, **kw)
    assert np.isfinite(out["kid_test"].results["kid_test"])
    runner.compute_metrics([kid], G, no_data, tmp_path, **kw)  # now cached with every row


def test_ppl_pairs_share_their_noise(G):
    """With strong noise, different noise in the two images of a pair would add
    |noise|² / eps² to every length; sharing it keeps PPL at the noiseless scale."""
    spec = MetricSpec("ppl_test", "ppl", 16, space="w", sampling="end", crop=False)
    loud = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.ones_like(v) if "noise_strength" in str(p) else v, G.variables)
    kw = dict(detectors=toy_detectors(), batch_size=16, progress=False)
    quiet = runner.compute_metrics([spec], G, None, None, **kw)["ppl_test"].results["ppl_test"]
    noisy = runner.compute_metrics([spec], Network(G.module, loud), None, None,
                                   **kw)["ppl_test"].results["ppl_test"]
    assert 0 < quiet and 0 < noisy < 100 * quiet


def _ppl_draws(seed: int, num: int, pairs: int, z_dim: int):
    """The random inputs of the PPL pass, drawn as it draws them (the one thing this test
    takes from the implementation): key fold_in(PRNGKey(seed + 1), process 0); batch i of
    `pairs` paths uses fold_in(key, i) split into (t, z, noise) keys, t ~ U[0, 1) [pairs],
    z ~ N(0, I) [2 * pairs, z_dim] (z0 the first half); the last batch is cut to `num`."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), 0)
    z0, z1, t = [], [], []
    for i in range(-(-num // pairs)):
        kt, kz, _ = jax.random.split(jax.random.fold_in(key, i), 3)
        t.append(np.asarray(jax.random.uniform(kt, (pairs,)), np.float64))
        z = np.asarray(jax.random.normal(kz, (2 * pairs, z_dim)), np.float64)
        z0.append(z[:pairs])
        z1.append(z[pairs:])
    return (np.concatenate(z0)[:num], np.concatenate(z1)[:num], np.concatenate(t)[:num])


@pytest.mark.parametrize("metric,space,sampling,crop,res,channels", [
    # lerp in W, the face crop, 512 -> 256: box-downsampled by 2, grayscale -> RGB
    ("ppl_wfull_48", "w", "full", True, 512, 1),
    ("ppl_zfull_200", "z", "full", True, 32, 3),  # slerp in Z
    ("ppl2_wend_200", "w", "end", False, 16, 3),  # the official primary: t = 0, no crop
])
def test_ppl_equals_the_official_formula_on_a_closed_form_generator(
        metric, space, sampling, crop, res, channels, monkeypatch):
    """PPL through the runner (as `stylegan-jax metrics` runs it) against NumPy following
    stylegan2-ada-pytorch's perceptual_path_length.py on the same z0, z1, t, for a generator
    that is a known polynomial of w and an LPIPS stand-in that is a weighted squared L2 of
    its [-1, 1] inputs. It checks slerp / lerp, t ~ U[0, 1) or 0, the division by
    epsilon**2, the crop, the downsampling, the image range handed to LPIPS, RGB for LPIPS,
    the pair's shared noise (the generator adds strong noise_const: different noise in the
    two images would add |noise|**2 / epsilon**2) and the 1st-99th percentile mean (with
    200 paths it drops the smallest and the largest)."""
    register_as_stylegan2(monkeypatch)
    module = ClosedFormGenerator(z_dim=5, w_dim=3, img_resolution=res, img_channels=channels)
    G = Network(module, closed_form_variables(module))
    num = int(metric.rsplit("_", 1)[1])
    got = runner.compute_metrics([metric], G, None, None, detectors=stand_in_detectors(),
                                 batch_size=16, seed=0, progress=False)[metric]
    pairs = LocalDevices().round_batch(LocalDevices().round_batch(16) // 2)
    z0, z1, t = _ppl_draws(0, num, pairs, module.z_dim)
    if sampling == "end":
        t = np.zeros_like(t)
    params = jax.tree_util.tree_map(np.asarray, G.variables["params"])
    dist = np_pair_lengths(params, z0, z1, t, space=space, crop=crop, img_resolution=res,
                           img_channels=channels, epsilon=1e-4)
    want = np_ppl(dist)
    assert got.results[metric] == pytest.approx(want, rel=2e-3)
    assert got.provenance["counts"]["generated"] == num


def test_clear_errors(G, reals):
    cond = random_generator(RES)
    cond = Network(cond.module.clone(c_dim=3), cond.variables)
    with pytest.raises(ValueError, match="conditional.*label_fn"):
        runner.compute_metrics([FID], cond, batches_of(reals), None, progress=False,
                               detectors=toy_detectors())
    with pytest.raises(ValueError, match="uint8 \\[N, H, W, 1 or 3\\].*float32"):
        runner.compute_metrics([FID], G, lambda: iter([reals.astype(np.float32)]), None,
                               progress=False, detectors=toy_detectors())
    with pytest.raises(ValueError, match="real_iter_factory"):
        runner.compute_metrics([FID], G, None, None, progress=False, detectors=toy_detectors())


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("SGJ_METRICS_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SGJ_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth.*"
                                                "--inception-weights.*SGJ_INCEPTION_WEIGHTS"):
        Detectors().variables("inception")
    bad = tmp_path / "vgg16-00000000.pth"
    bad.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="SHA-256 does not start with 00000000"):
        Detectors().variables("vgg16")
