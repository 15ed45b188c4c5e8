"""The progressive networks applied within one stage, where floor(lod) is known statically.

The networks (models/progan.py, models/stylegan.py) take any lod as data and run the
official recursive structure with a conditional per level. Within a training stage lod
lies in [level, level + 1), so every one of those conditionals is decided by the stage,
except "fading or stable" at the stage's own level, and there the fade formula
lerp(fine, coarse, lod - level) equals the stable output exactly when lod == level.
`StageLod` answers the structure's comparisons with Python bools (the conditionals fold
away at compile time) and keeps `lod - level` traced, so the fade stays data.

Why not the networks' own `__call__`: XLA:CPU leaves convolutions inside a conditional in
a layout its fast convolution does not take, so their gradients (weights and, for the
R1 / gradient penalty, inputs) run ~40x slower on a CPU. The functions below reuse the
networks' own blocks and growth functions and are tested equal to `__call__`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stylegan_jax.models import progan, stylegan
from stylegan_jax.nn import ops


@jax.tree_util.register_pytree_node_class
class StageLod:
    """A traced lod known to lie in [level, level + 1): static comparisons, traced fade.

    A pytree (value is the leaf), as the networks pass lod through their conditionals.
    """

    def __init__(self, value: jax.Array, level: int):
        self.value, self.level = value, level

    def tree_flatten(self):
        return (self.value,), self.level

    @classmethod
    def tree_unflatten(cls, level, children):
        return cls(children[0], level)

    def __lt__(self, k: int) -> bool:  # go to a finer level than k?
        return k > self.level

    def __gt__(self, k: int) -> bool:  # fade with the level below k? (exact when lod == k)
        return k <= self.level

    def __sub__(self, k: int) -> jax.Array:
        return self.value - k


def _progan_g(G, latents, labels, lod):
    x = jnp.concatenate([latents, labels], axis=1).astype(jnp.float32)
    return progan.grow_images(G, x, lod, 2, G.max_lod, progan._g_block, progan._g_torgb)


def _progan_d(D, images, labels, lod):
    return progan.grow_scores(D, images.astype(jnp.float32), lod, 2, D.max_lod,
                              progan._d_fromrgb, progan._d_block)


def _stylegan_g(G, latents, labels, lod, noise_mode, style_mixing_prob, update_dlatent_avg):
    """G_style in training mode (no truncation), as `stylegan.Generator.__call__`."""
    dlatents = G.mapping_fn(latents, labels)
    if update_dlatent_avg and G.dlatent_avg_beta is not None:
        batch_avg = jax.lax.stop_gradient(jnp.mean(dlatents[:, 0], axis=0))
        if G.axis_name is not None:
            batch_avg = jax.lax.pmean(batch_avg, G.axis_name)
        G.dlatent_avg.value = ops.lerp(batch_avg, G.dlatent_avg.value, G.dlatent_avg_beta)
    if style_mixing_prob > 0:
        dlatents = G.mix_styles_fn(latents, labels, dlatents, lod.value, style_mixing_prob)
    dlatents = dlatents.astype(jnp.float32)

    def block(m, res, x):  # as SynthesisNetwork.__call__
        idx = (2 * res - 4, 2 * res - 3)
        noise = [m._noise(i, dlatents.shape[0], noise_mode) for i in idx]
        return m.blocks[progan.scope(res)](x, dlatents[:, idx[0]:idx[1] + 1], noise)

    synthesis = G.synthesis
    x = block(synthesis, 2, None)
    return progan.grow_images(synthesis, x, lod, 3, G.max_lod - 1, block, stylegan._torgb)


def _stylegan_d(D, images, labels, lod):
    scores = progan.grow_scores(D, images.astype(jnp.float32), lod, 2, D.max_lod,
                                stylegan._d_fromrgb, stylegan._d_block)
    if D.label_size:
        scores = jnp.sum(scores * labels.astype(jnp.float32), axis=1, keepdims=True)
    return scores


def generate(G, variables, latents, labels, lod, level: int, *, noise_mode="random",
             style_mixing_prob=0.0, update_dlatent_avg=False, noise_key=None):
    """G's training-mode images at full resolution -> (images, updated buffers or {})."""
    lod = StageLod(jnp.asarray(lod, jnp.float32), level)
    if isinstance(G, stylegan.Generator):
        images, mutated = G.apply(
            variables, latents, labels, lod, noise_mode, style_mixing_prob, update_dlatent_avg,
            method=_stylegan_g, rngs={} if noise_key is None else {"noise": noise_key},
            mutable=["buffers"])
        return images, mutated["buffers"]
    return G.apply(variables, latents, labels, lod, method=_progan_g), {}


def score(D, variables, images, labels, lod, level: int):
    """D's scores [N, 1] for full-resolution images."""
    lod = StageLod(jnp.asarray(lod, jnp.float32), level)
    fn = _stylegan_d if isinstance(D, stylegan.Discriminator) else _progan_d
    return D.apply(variables, images, labels, lod, method=fn)
