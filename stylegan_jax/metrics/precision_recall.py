"""Improved precision and recall (Kynkäänniemi et al. 2019) on VGG16 fc2 features.

Each point of a manifold (the real set for precision, the generated set for recall)
gets the radius of a ball reaching its k-th nearest other point (the (k+1)-th
smallest distance, counting itself); a probe belongs to the manifold when it lies in
any ball. Precision = fraction of generated points in the real manifold, recall =
fraction of real points in the generated one. As in stylegan2-ada-pytorch, features
are held in float16 and distances compared at float16 resolution (its `cdist` runs in
half precision); the distance matrix is computed in blocks, rows sharded over the
local devices and split over processes, columns scanned in `col_batch_size` blocks.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics.parallel import LocalDevices, gather_rows, process_share


def _distances(rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Euclidean distances [R, C] at float16 resolution (held as float32)."""
    rows, cols = rows.astype(jnp.float32), cols.astype(jnp.float32)
    d2 = (jnp.sum(rows**2, axis=1)[:, None] + jnp.sum(cols**2, axis=1)[None, :]
          - 2.0 * jnp.dot(rows, cols.T, precision=jax.lax.Precision.HIGHEST))
    return jnp.sqrt(jnp.maximum(d2, 0.0)).astype(jnp.float16).astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=3)
def _smallest(rows, col_blocks, col_valid, k):
    """The k smallest distances [R, k] from each row to the valid columns."""
    def step(best, block):
        cols, valid = block
        d = jnp.where(valid[None, :], _distances(rows, cols), jnp.inf)
        merged = jnp.concatenate([best, -jax.lax.top_k(-d, min(k, d.shape[1]))[0]], axis=1)
        return -jax.lax.top_k(-merged, k)[0], None

    init = jnp.full((rows.shape[0], k), jnp.inf, jnp.float32)
    best, _ = jax.lax.scan(step, init, (col_blocks, col_valid))
    return best


@jax.jit
def _inside(rows, col_blocks, col_radii):
    """[R] bool: whether each row lies within some column's radius (padding has -inf)."""
    def step(hit, block):
        cols, radii = block
        return hit | jnp.any(_distances(rows, cols) <= radii[None, :], axis=1), None

    hit, _ = jax.lax.scan(step, jnp.zeros((rows.shape[0],), bool), (col_blocks, col_radii))
    return hit


def _blocks(x: np.ndarray, size: int, fill) -> tuple[np.ndarray, np.ndarray]:
    """[N, ...] -> [ceil(N / size), size, ...] padded with `fill`, and a validity mask."""
    n = x.shape[0]
    nb = max(1, math.ceil(n / size))
    size = min(size, n) if nb == 1 else size
    out = np.full((nb * size, *x.shape[1:]), fill, x.dtype)
    out[:n] = x
    valid = np.zeros(nb * size, bool)
    valid[:n] = True
    return out.reshape(nb, size, *x.shape[1:]), valid.reshape(nb, size)


def _map_rows(fn, rows: np.ndarray, row_batch: int, devices: LocalDevices) -> np.ndarray:
    """fn over this process's share of `rows` in sharded blocks; every process's results."""
    start = sum(process_share(rows.shape[0], p) for p in range(jax.process_index()))
    mine = rows[start : start + process_share(rows.shape[0])]
    batch = devices.round_batch(min(row_batch, max(len(mine), 1)))
    out = []
    for i in range(0, len(mine), batch):
        chunk = mine[i : i + batch]
        (sharded,), n = devices.shard(np.concatenate(
            [chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)]))
        out.append(np.asarray(fn(sharded))[: len(chunk)])
    local = np.concatenate(out) if out else np.zeros((0,), np.float32)
    return gather_rows(local)


def manifold_radii(manifold: np.ndarray, nhood_size: int, row_batch_size: int = 10000,
                   col_batch_size: int = 10000, devices: LocalDevices | None = None) -> np.ndarray:
    """[N] distance from each point to its `nhood_size`-th nearest other point."""
    devices = devices or LocalDevices()
    feats = np.asarray(manifold, np.float16)
    cols, valid = _blocks(feats, col_batch_size, 0)
    cols, valid = devices.replicate(cols), devices.replicate(valid)
    k = nhood_size + 1
    return _map_rows(lambda r: _smallest(r, cols, valid, k)[:, -1], feats, row_batch_size,
                     devices)


def inside_manifold(probes: np.ndarray, manifold: np.ndarray, radii: np.ndarray,
                    row_batch_size: int = 10000, col_batch_size: int = 10000,
                    devices: LocalDevices | None = None) -> np.ndarray:
    """[M] bool: whether each probe lies within a ball of `radii` around some manifold point."""
    devices = devices or LocalDevices()
    cols, _ = _blocks(np.asarray(manifold, np.float16), col_batch_size, 0)
    col_radii, _ = _blocks(np.asarray(radii, np.float32), col_batch_size, -np.inf)
    cols, col_radii = devices.replicate(cols), devices.replicate(col_radii)
    probes = np.asarray(probes, np.float16)
    return _map_rows(lambda r: _inside(r, cols, col_radii), probes, row_batch_size, devices)


def precision_recall(real: np.ndarray, gen: np.ndarray, nhood_size: int = 3,
                     row_batch_size: int = 10000, col_batch_size: int = 10000,
                     devices: LocalDevices | None = None) -> tuple[float, float]:
    """(precision, recall) of generated features `gen` against `real` ([N, D] each)."""
    kw = dict(row_batch_size=row_batch_size, col_batch_size=col_batch_size, devices=devices)
    out = []
    for manifold, probes in ((real, gen), (gen, real)):
        if manifold.shape[0] <= nhood_size:
            raise ValueError(f"{manifold.shape[0]} points cannot have {nhood_size} neighbours")
        radii = manifold_radii(manifold, nhood_size, **kw)
        out.append(float(np.mean(inside_manifold(probes, manifold, radii, **kw))))
    return out[0], out[1]
