"""The stage-specialised application of the networks equals their own `__call__`.

Within a stage floor(lod) is fixed, so progressive_nets answers the networks' structural
conditionals statically; the networks themselves (models/progan.py, models/stylegan.py)
decide them from the traced lod and are the reference here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.models import progan, stylegan
from stylegan_jax.train.progressive import nets as stage_nets

KW = dict(num_channels=1, resolution=16, fmap_base=64, fmap_max=16, label_size=2)
LODS = [(2.0, 2), (1.375, 1), (0.0, 0), (0.75, 0)]  # (lod, its stage's level)


def random_like(shapes, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), jnp.float32), shapes)


@pytest.fixture(scope="module", params=["progan", "stylegan"])
def nets(request):
    if request.param == "progan":
        G = progan.Generator(latent_size=8, **KW)
        D = progan.Discriminator(mbstd_group_size=2, **KW)
    else:
        G = stylegan.Generator(latent_size=8, dlatent_size=8, mapping_fmaps=8,
                               mapping_layers=2, **KW)
        D = stylegan.Discriminator(mbstd_group_size=2, **KW)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
    c = jax.nn.one_hot(jnp.array([0, 1, 1, 0]), 2)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 16, 16, 1))
    # Random values for every variable (biases and noise strengths too, so no path is
    # trivially zero); shapes from tracing init, which is cheaper than compiling it.
    g_vars = random_like(jax.eval_shape(G.init, {"params": jax.random.PRNGKey(0),
                                                 "noise": jax.random.PRNGKey(3)}, z, c), 1)
    d_vars = random_like(jax.eval_shape(D.init, jax.random.PRNGKey(0), x, c), 2)
    is_stylegan = request.param == "stylegan"
    opts = dict(noise_mode="random", style_mixing_prob=0.9, update_dlatent_avg=True)

    # Compiled once: the networks with a traced lod, the stage version per level.
    @jax.jit
    def g_call(v, lod, key):
        if is_stylegan:
            images, mutated = G.apply(v, z, c, lod, **opts, rngs={"noise": key},
                                      mutable=["buffers"])
            return images, mutated["buffers"]
        return G.apply(v, z, c, lod), {}

    @functools.partial(jax.jit, static_argnums=3)
    def g_stage(v, lod, key, level):
        if is_stylegan:
            return stage_nets.fake_images(G, v, z, c, lod, level, **opts, noise_key=key)
        return stage_nets.fake_images(G, v, z, c, lod, level)

    d_call = jax.jit(lambda v, lod: D.apply(v, x, c, lod))
    d_stage = jax.jit(lambda v, lod, level: stage_nets.score(D, v, x, c, lod, level),
                      static_argnums=2)
    return dict(G=G, D=D, z=z, c=c, x=x, g_vars=g_vars, d_vars=d_vars, g_call=g_call,
                g_stage=g_stage, d_call=d_call, d_stage=d_stage)


@pytest.mark.parametrize("lod,level", LODS)
def test_generator_matches_its_call(nets, lod, level):
    """Training mode: StyleGAN's random noise, style mixing and dlatent_avg update included."""
    key, lod = jax.random.PRNGKey(7), jnp.float32(lod)
    want, want_buffers = nets["g_call"](nets["g_vars"], lod, key)
    got, got_buffers = nets["g_stage"](nets["g_vars"], lod, key, level)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(got_buffers),
                    jax.tree_util.tree_leaves(want_buffers), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("lod,level", LODS)
def test_discriminator_matches_its_call(nets, lod, level):
    lod = jnp.float32(lod)
    np.testing.assert_allclose(nets["d_stage"](nets["d_vars"], lod, level),
                               nets["d_call"](nets["d_vars"], lod), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lod,level", [(0.25, 0)])
def test_gradients_match_under_jit(nets, lod, level):
    """Parameter and input gradients (the R1 / gradient-penalty path) of D, compiled."""
    D, v, x, c = nets["D"], nets["d_vars"], nets["x"], nets["c"]

    def grads(apply):
        def loss(v, x):
            return jnp.sum(jnp.square(apply(v, x)))
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(v, x)

    want = grads(lambda v, x: D.apply(v, x, c, jnp.float32(lod)))
    got = grads(lambda v, x: stage_nets.score(D, v, x, c, lod, level))
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
