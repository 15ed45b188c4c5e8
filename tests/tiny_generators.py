"""Tiny generators of every family for the tests that hold a tool's images to `generate`'s
(serve, export): small enough to compile in seconds, with the buffers that truncation and
noise read moved off zero so that both change the image."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stylegan_jax.models import progan, stylegan, stylegan3
from stylegan_jax.models.registry import Network


def visible(net: Network) -> Network:
    """Moves w_avg and the noise strengths off zero, where a fresh network has them, so
    that truncation and noise change the image."""
    names = ("w_avg", "dlatent_avg", "noise_strength")
    variables = jax.tree_util.tree_map_with_path(
        lambda path, a: a + 0.3 if any(getattr(k, "key", None) in names for k in path) else a,
        net.variables)
    return Network(net.module, variables, net.lod)


def stylegan_v1() -> Network:
    G = stylegan.Generator(num_channels=3, resolution=16, latent_size=16, dlatent_size=16,
                           mapping_layers=2, mapping_fmaps=16, fmap_base=128, fmap_max=16)
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    return visible(Network(G, G.init(rngs, jnp.zeros((1, 16)), jnp.zeros((1, 0)))))


def progan_conditional() -> Network:
    """Two classes, left at lod 0.5 (mid-growth)."""
    G = progan.Generator(num_channels=3, resolution=16, latent_size=16, label_size=2,
                         fmap_base=128, fmap_max=16)
    v = G.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)), jnp.zeros((1, 2)))
    return Network(G, jax.tree_util.tree_map(lambda a: a + 0.05, v), lod=0.5)


def stylegan3_conditional(resolution: int = 16) -> Network:
    G = stylegan3.Generator(z_dim=16, c_dim=2, w_dim=16, img_resolution=resolution,
                            img_channels=3, channel_base=256, channel_max=16, num_layers=4,
                            num_critical=1)
    v = jax.jit(G.init)(jax.random.key(0), jnp.zeros((1, 16)), jnp.zeros((1, 2)))
    return visible(Network(G, v))
