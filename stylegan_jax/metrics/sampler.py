"""How a metric's generator pass draws: the generator, its labels, batch size, seed,
truncation, noise and devices, shared by the feature, PPL and equivariance passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from stylegan_jax.metrics.parallel import LocalDevices
from stylegan_jax.models.registry import Network

LabelFn = Callable[[np.random.Generator, int], np.ndarray]


def quantize(img: jax.Array) -> jax.Array:
    """Generator output in [-1, 1] -> uint8, the official metrics' conversion."""
    return jnp.clip(jnp.floor(img * 127.5 + 128.0), 0, 255).astype(jnp.uint8)


@dataclass(frozen=True)
class Sampler:
    """`batch_size` is already rounded to the devices; `progress` only on process 0."""

    G: Network
    devices: LocalDevices
    batch_size: int
    seed: int
    psi: float = 1.0
    noise_mode: str = "random"
    label_fn: LabelFn | None = None
    progress: bool = True

    def labels(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, c_dim] float32 labels drawn as the dataset has them (none when unconditional)."""
        c_dim = self.G.module.c_dim
        if c_dim == 0:
            return np.zeros((n, 0), np.float32)
        if self.label_fn is None:
            raise ValueError(f"the generator is conditional (c_dim={c_dim}): metrics need "
                             "label_fn to draw labels as the dataset has them")
        c = np.asarray(self.label_fn(rng, n), np.float32)
        if c.shape != (n, c_dim):
            raise ValueError(f"label_fn returned shape {c.shape}, expected {(n, c_dim)}")
        return c

    def bar(self, total: int | None, desc: str, unit: str) -> tqdm:
        """A progress bar over the images (or paths) of every process."""
        return tqdm(total=total, desc=desc, unit=unit, disable=not self.progress)

    def process_rng(self, stream: int | None = None) -> np.random.Generator:
        """This process's NumPy stream; `stream` keeps the passes' draws apart."""
        entropy = [self.seed, jax.process_index()]
        return np.random.default_rng(entropy if stream is None else [*entropy, stream])
