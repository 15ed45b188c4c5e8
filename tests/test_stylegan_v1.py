"""StyleGAN v1 networks: truncation, style mixing, dlatent_avg, noise, labels, lod, names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from official_fixtures import DATA, load, subdict

from stylegan_jax.models import stylegan

KW = dict(num_channels=3, resolution=32, latent_size=16, dlatent_size=16, mapping_layers=2,
          mapping_fmaps=16, fmap_base=256, fmap_max=32)


@pytest.fixture(scope="module")
def net():
    G = stylegan.Generator(label_size=3, **KW)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
    c = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3)
    v = jax.jit(G.init)({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}, z, c)
    v = jax.tree_util.tree_map(lambda a: a + 0.1, v)  # no trivially zero noise strengths
    run = jax.jit(lambda v, z, c, lod, psi, cutoff, mode, key, mix=0.0: G.apply(
        v, z, c, lod, psi, cutoff, mode, mix, rngs={"noise": key}), static_argnums=(4, 5, 6, 8))
    return dict(G=G, v=v, z=z, c=c, run=run)


def test_variable_names_are_the_official_ones():
    meta, arrays = load(DATA / "official_tf" / "stylegan_32_fused.npz")
    G = stylegan.Generator(**meta["G_kwargs"])
    D = stylegan.Discriminator(**meta["D_kwargs"])
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    for prefix, module, inputs in (("G/", G, (jnp.zeros((2, 64)), jnp.zeros((2, 0)))),
                                   ("D/", D, (jnp.zeros((2, 32, 32, 3)), jnp.zeros((2, 0))))):
        shapes = jax.eval_shape(lambda m=module, i=inputs: m.init(rngs, *i))
        names = {"/".join(k[1:]) for k in flatten_dict(shapes)}
        assert names == set(subdict(arrays, prefix)), prefix


def test_truncation_lerps_toward_dlatent_avg(net):
    G, v, z, c = net["G"], net["v"], net["z"], net["c"]
    w = G.apply(v, z, c, method=G.mapping_fn)
    assert w.shape == (4, G.num_layers, 16)
    avg = v["buffers"]["dlatent_avg"]
    t = G.apply(v, w, 0.6, 3, method=G.truncate_fn)
    np.testing.assert_allclose(t[:, :3], avg + 0.6 * (w[:, :3] - avg), atol=1e-6)
    np.testing.assert_allclose(t[:, 3:], w[:, 3:], atol=1e-6)
    # psi = 0 on every layer: every sample gets the average image.
    key = jax.random.PRNGKey(0)
    img = net["run"](v, z, c, 0.0, 0.0, None, "const", key)
    np.testing.assert_allclose(img, jnp.broadcast_to(img[:1], img.shape), atol=1e-5)


def test_noise_modes(net):
    v, z, c, run = net["v"], net["z"], net["c"], net["run"]
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    np.testing.assert_array_equal(run(v, z, c, 0.0, 1.0, None, "const", k1),
                                  run(v, z, c, 0.0, 1.0, None, "const", k2))
    assert not np.allclose(run(v, z, c, 0.0, 1.0, None, "random", k1),
                           run(v, z, c, 0.0, 1.0, None, "random", k2))
    # 'none' equals zero noise strengths.
    quiet = jax.tree_util.tree_map_with_path(
        lambda p, a: a * 0 if "Noise" in str(p) else a, v)
    np.testing.assert_allclose(run(v, z, c, 0.0, 1.0, None, "none", k1),
                               run(quiet, z, c, 0.0, 1.0, None, "random", k1), atol=1e-6)


def test_fractional_lod_blends_its_neighbours(net):
    v, z, c, run = net["v"], net["z"], net["c"], net["run"]
    key = jax.random.PRNGKey(0)
    gen = lambda lod: np.asarray(run(v, z, c, lod, 1.0, None, "const", key))  # noqa: E731
    expected = 0.7 * gen(1.0) + 0.3 * gen(2.0)
    np.testing.assert_allclose(gen(1.3), expected, atol=1e-5 * np.abs(expected).max())
    img = gen(2.0)
    np.testing.assert_array_equal(img, np.kron(img[:, ::4, ::4], np.ones((1, 4, 4, 1))))


def test_style_mixing_crosses_over_below_the_active_layers(net):
    G, v, z, c = net["G"], net["v"], net["z"], net["c"]
    w = G.apply(v, z, c, method=G.mapping_fn)
    cutoffs = set()
    for seed in range(12):
        mixed = G.apply(v, z, c, w, 1.0, 1.0, method=G.mix_styles_fn,
                        rngs={"noise": jax.random.PRNGKey(seed)})
        same = np.all(np.isclose(mixed, w), axis=(0, 2))
        cutoff = int(np.argmin(same)) if not same.all() else G.num_layers
        assert same[:cutoff].all() and not same[cutoff:].any()
        cutoffs.add(cutoff)
    # lod 1: 8 layers, the last two inactive: crossovers at 1..5 only.
    assert cutoffs <= set(range(1, 6)) and len(cutoffs) > 1
    # Not mixing keeps the active layers (the official code still swaps the inactive ones).
    kept = G.apply(v, z, c, w, 1.0, 0.0, method=G.mix_styles_fn,
                   rngs={"noise": jax.random.PRNGKey(0)})
    np.testing.assert_array_equal(kept[:, :6], w[:, :6])


def test_dlatent_avg_update(net):
    G, v, z, c = net["G"], net["v"], net["z"], net["c"]
    _, state = G.apply(v, z, c, 0.0, noise_mode="const", update_dlatent_avg=True,
                       mutable=["buffers"])
    w = G.apply(v, z, c, method=G.mapping_fn)
    batch = jnp.mean(w[:, 0], axis=0)
    expected = batch + 0.995 * (v["buffers"]["dlatent_avg"] - batch)
    np.testing.assert_allclose(state["buffers"]["dlatent_avg"], expected, atol=1e-6)


def test_discriminator_label_switch_and_separate_resampling():
    D = stylegan.Discriminator(label_size=3, fused_scale=False, num_channels=1, resolution=32,
                               fmap_base=256, fmap_max=32)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 32, 32, 1))
    c = jnp.eye(3)
    v = jax.jit(D.init)(jax.random.PRNGKey(0), x, c)
    assert v["params"]["4x4"]["Dense1"]["weight"].shape == (32, 3)
    score = jax.jit(D.apply)
    # sum(scores * labels) is linear in the labels.
    both = score(v, x, c + jnp.roll(c, 1, axis=1), 0.0)
    np.testing.assert_allclose(both, score(v, x, c, 0.0) + score(v, x, jnp.roll(c, 1, axis=1),
                               0.0), atol=1e-5)


def test_auto_fusing_starts_at_128():
    assert [stylegan.resample_mode("auto", r) for r in (3, 6, 7, 10)] == [
        "separate", "separate", "fused", "fused"]
    assert stylegan.resample_mode(True, 3) == "fused"
    assert stylegan.resample_mode(False, 10) == "separate"


def test_bad_kwargs_are_named():
    key = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    z, c = jnp.zeros((1, 16)), jnp.zeros((1, 0))
    with pytest.raises(ValueError, match="fused_scale must be one of"):
        jax.eval_shape(stylegan.Generator(fused_scale="yes", **KW).init, key, z, c)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        jax.eval_shape(stylegan.Generator(nonlinearity="elu", **KW).init, key, z, c)
    with pytest.raises(ValueError, match="resolution must be >= 8"):
        jax.eval_shape(stylegan.Generator(**dict(KW, resolution=4)).init, key, z, c)
