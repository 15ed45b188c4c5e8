"""ProGAN networks: the level-of-detail contract, official names, labels, batch sizes.

The lod properties are those of the official progressive structure: at an integer lod k
the generator's image is a 2**-k resolution image upscaled by nearest neighbour, a
fractional lod is the linear blend of its two neighbours, and the discriminator at lod
k sees only the box-filtered 2**-k resolution content.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from official_fixtures import DATA, load, subdict

from stylegan_jax.models import progan

KW = dict(num_channels=3, resolution=32, fmap_base=256, fmap_max=32)


@pytest.fixture(scope="module")
def nets():
    G = progan.Generator(label_size=2, latent_size=16, **KW)
    D = progan.Discriminator(label_size=2, **KW)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
    c = jax.nn.one_hot(jnp.array([0, 1, 1, 0]), 2)
    g_vars = jax.jit(G.init)(jax.random.PRNGKey(0), z, c)
    d_vars = jax.jit(D.init)(jax.random.PRNGKey(0), jnp.zeros((4, 32, 32, 3)), c)
    # Random biases too, so no layer is trivially zero.
    g_vars = jax.tree_util.tree_map(lambda a: a + 0.1, g_vars)
    d_vars = jax.tree_util.tree_map(lambda a: a + 0.1, d_vars)
    return dict(G=G, D=D, z=z, c=c, g_vars=g_vars, d_vars=d_vars,
                generate=jax.jit(lambda v, z, c, lod: G.apply(v, z, c, lod)),
                score=jax.jit(lambda v, x, c, lod: D.apply(v, x, c, lod)))


def test_variable_names_are_the_official_ones():
    meta, arrays = load(DATA / "official_tf" / "progan_32.npz")
    for prefix, cls, key in (("G/", progan.Generator, "G_kwargs"),
                             ("D/", progan.Discriminator, "D_kwargs")):
        module = cls(**meta[key])
        inputs = ((jnp.zeros((2, module.z_dim)), jnp.zeros((2, 0))) if prefix == "G/" else
                  (jnp.zeros((2, 32, 32, 3)), jnp.zeros((2, 0))))
        shapes = jax.eval_shape(lambda m=module, i=inputs: m.init(jax.random.PRNGKey(0), *i))
        names = {"/".join(k[1:]) for k in flatten_dict(shapes)}
        assert names == set(subdict(arrays, prefix)), prefix


def test_integer_lod_is_a_nearest_upscaled_coarser_image(nets):
    G, traces = nets["G"], []

    def generate(v, z, c, lod):
        traces.append(lod)
        return G.apply(v, z, c, lod)

    generate = jax.jit(generate)
    for k in (1, 2, 3):
        img = np.asarray(generate(nets["g_vars"], nets["z"], nets["c"], jnp.float32(k)))
        s = 2**k
        coarse = img[:, ::s, ::s]
        np.testing.assert_array_equal(img, np.kron(coarse, np.ones((1, s, s, 1), np.float32)))
    assert len(traces) == 1  # lod is data: one compilation for every lod


@pytest.mark.parametrize("lod", [0.25, 1.5, 2.75])
def test_fractional_lod_blends_its_neighbours(nets, lod):
    gen = lambda x: np.asarray(nets["generate"](nets["g_vars"], nets["z"], nets["c"], x))  # noqa: E731
    lo, t = np.floor(lod), lod - np.floor(lod)
    expected = (1 - t) * gen(lo) + t * gen(lo + 1)
    np.testing.assert_allclose(gen(lod), expected, atol=1e-5 * np.abs(expected).max())


def test_lod_beyond_the_range_is_clamped(nets):
    gen = lambda x: np.asarray(nets["generate"](nets["g_vars"], nets["z"], nets["c"], x))  # noqa: E731
    np.testing.assert_array_equal(gen(-1.0), gen(0.0))
    np.testing.assert_array_equal(gen(4.5), gen(3.0))


def test_discriminator_at_lod_k_sees_the_coarse_image_only(nets):
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 3))
    for k in (1, 2):
        s = 2**k
        box = jnp.repeat(jnp.repeat(
            x.reshape(4, 32 // s, s, 32 // s, s, 3).mean(axis=(2, 4)), s, 1), s, 2)
        a = nets["score"](nets["d_vars"], x, nets["c"], float(k))
        b = nets["score"](nets["d_vars"], box, nets["c"], float(k))
        np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(a).max()))
    full = nets["score"](nets["d_vars"], x, nets["c"], 0.0)
    assert not np.allclose(full, nets["score"](nets["d_vars"], box, nets["c"], 0.0))


def test_inactive_resolutions_get_no_gradient(nets):
    D = nets["D"]
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 3))
    grads = jax.jit(jax.grad(lambda v: jnp.sum(D.apply(v, x, nets["c"], 2.0))))(nets["d_vars"])
    norms = {"/".join(k[1:]): float(jnp.abs(g).sum()) for k, g in flatten_dict(grads).items()}
    for name, norm in norms.items():
        active = name.startswith(("4x4", "8x8", "FromRGB_lod2"))
        assert (norm > 0) == active, (name, norm)


def test_labels_condition_the_generator_only(nets):
    z, c = nets["z"], nets["c"]
    other = 1 - c
    assert not np.allclose(nets["generate"](nets["g_vars"], z, c, 0.0),
                           nets["generate"](nets["g_vars"], z, other, 0.0))
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 32, 32, 3))
    np.testing.assert_array_equal(nets["score"](nets["d_vars"], x, c, 0.0),
                                  nets["score"](nets["d_vars"], x, other, 0.0))


def test_separate_resampling_and_odd_batches():
    G = progan.Generator(fused_scale=False, latent_size=8, **dict(KW, num_channels=1))
    D = progan.Discriminator(fused_scale=False, **dict(KW, num_channels=1))
    z, c = jnp.ones((3, 8)), jnp.zeros((3, 0))
    g_vars = jax.jit(G.init)(jax.random.PRNGKey(0), z, c)
    assert "Conv0" in g_vars["params"]["8x8"] and "Conv0_up" not in g_vars["params"]["8x8"]
    img = jax.jit(G.apply)(g_vars, z, c, 0.5)
    assert img.shape == (3, 32, 32, 1)
    d_vars = jax.jit(D.init)(jax.random.PRNGKey(0), img, c)
    assert "Conv1" in d_vars["params"]["16x16"]
    assert jax.jit(D.apply)(d_vars, img, c, 0.5).shape == (3, 1)  # mbstd group of 3
    with pytest.raises(ValueError, match="batch size 6 is not divisible by the group size 4"):
        jax.eval_shape(D.apply, d_vars, jnp.zeros((6, 32, 32, 1)), jnp.zeros((6, 0)), 0.0)


def test_bad_inputs_and_kwargs_are_named():
    G = progan.Generator(**KW)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"latents must have shape \(None, 32\)"):
        jax.eval_shape(G.init, key, jnp.zeros((2, 5)), jnp.zeros((2, 0)))
    with pytest.raises(ValueError, match="resolution must be a power of two"):
        jax.eval_shape(progan.Generator(num_channels=3, resolution=48).init, key,
                       jnp.zeros((1, 512)), jnp.zeros((1, 0)))
    with pytest.raises(ValueError, match="fused_scale must be one of"):
        jax.eval_shape(progan.Discriminator(fused_scale="auto", **KW).init, key,
                       jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 0)))
