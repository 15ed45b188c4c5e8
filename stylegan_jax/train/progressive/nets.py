"""The progressive networks applied within one stage, where floor(lod) is known statically.

The networks (models/progan.py, models/stylegan.py) take any lod as data and run the
official recursive structure with a conditional per level. Within a training stage lod
lies in [level, level + 1), so every one of those conditionals is decided by the stage,
except "fading or stable" at the stage's own level, and there the fade formula
lerp(fine, coarse, lod - level) equals the stable output exactly when lod == level. The
networks' own `__call__` is applied with a `progan.StageLod`, which answers those
comparisons with Python bools (the conditionals fold away at compile time; XLA:CPU runs
convolutions inside a conditional, and their gradients, ~40x slower) and keeps
`lod - level` traced, so the fade stays data.
"""

from __future__ import annotations

import jax.numpy as jnp

from stylegan_jax.models import progan
from stylegan_jax.models.registry import family_of


def fake_images(G, variables, latents, labels, lod, level: int, *, noise_mode="random",
                style_mixing_prob=0.0, update_dlatent_avg=False, noise_key=None):
    """G's training-mode images at full resolution -> (images, updated buffers or {})."""
    lod = progan.StageLod(jnp.asarray(lod, jnp.float32), level)
    if family_of(G).w_space:  # StyleGAN v1, in training mode: no truncation
        images, mutated = G.apply(
            variables, latents, labels, lod, 1.0, None, noise_mode, style_mixing_prob,
            update_dlatent_avg, rngs={} if noise_key is None else {"noise": noise_key},
            mutable=["buffers"])
        return images, mutated["buffers"]
    return G.apply(variables, latents, labels, lod), {}


def score(D, variables, images, labels, lod, level: int):
    """D's scores [N, 1] for full-resolution images."""
    return D.apply(variables, images, labels, progan.StageLod(jnp.asarray(lod, jnp.float32),
                                                              level))
