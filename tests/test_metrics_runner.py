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
