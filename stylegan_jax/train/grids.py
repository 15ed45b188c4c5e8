"""The run's image grids under workdir/samples (process 0): the reals, and G EMA's fakes
for the fixed seeds 0..n-1, as the official snapshots."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax import images
from stylegan_jax.models.sampling import latents_for_seeds, synthesize
from stylegan_jax.train.inputs import one_hot


class Grids:
    """Renders and writes the grids. They are not essential: the first failed write warns,
    later ones are silent, and training goes on."""

    def __init__(self, samples: Path, z_dim: int, c_dim: int, seeds: int,
                 log: Callable[[str], None]):
        self.samples, self.log, self.failed = samples, log, False
        self.n = max(1, seeds)
        self.z = jnp.asarray(latents_for_seeds(list(range(self.n)), z_dim))
        self.c = jnp.asarray(one_hot(np.arange(self.n) % max(c_dim, 1), c_dim))

    def fakes(self, G) -> np.ndarray:
        """G's (a registry.Network) images for the fixed seeds, uint8 NHWC."""
        fakes = _grid_program(G.module)(G.variables, self.z, self.c, G.lod)
        return images.to_uint8(np.asarray(fakes))

    def save(self, grid: np.ndarray, name: str) -> None:
        path = self.samples / name
        try:
            path.parent.mkdir(exist_ok=True)
            images.save_image(grid, path)
        except OSError as e:
            if not self.failed:
                self.log(f"warning: cannot write the image grid {path} ({e}); training goes "
                         "on (later grid failures are not reported)")
            self.failed = True


@functools.cache
def _grid_program(G):
    return jax.jit(lambda v, z, c, lod: synthesize(G, v, z, c, jax.random.PRNGKey(0), lod))
