"""Data parallelism of the metrics: batches sharded over local devices, rows over processes.

Every metric pass is embarrassingly parallel: each process takes its share of the
samples, shards each batch over its own devices with `jax.jit` + `NamedSharding`
(weights replicated), and the per-process results are gathered at the end. A jitted
function of a sharded batch runs one slice per device; a replicated batch would
make every device compute everything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from stylegan_jax.distributed import barrier

# How long a process waits for the others before a cross-process gather: their shares of
# a metric's work differ, and the first collective must not start with a peer far behind.
GATHER_TIMEOUT_S = 3600.0


class LocalDevices:
    """The process's devices as a 1-D mesh (axis 'data')."""

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = list(devices or jax.local_devices())
        self.mesh = Mesh(np.array(self.devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharded = NamedSharding(self.mesh, P("data"))

    @property
    def count(self) -> int:
        return len(self.devices)

    def round_batch(self, batch: int) -> int:
        """The smallest multiple of the device count >= batch."""
        return max(1, math.ceil(batch / self.count)) * self.count

    def replicate(self, tree):
        """Copies onto every local device; a replicated global array (a training state
        spanning several processes) contributes this process's own copy."""
        return jax.device_put(jax.tree_util.tree_map(_local_copy, tree), self.replicated)

    def shard(self, *arrays: np.ndarray) -> tuple[list[jax.Array], int]:
        """Pads each [n, ...] array to a multiple of the device count (repeating its last
        row) and shards it over the batch; returns the arrays and n."""
        n = arrays[0].shape[0]
        padded = self.round_batch(n)
        out = []
        for a in arrays:
            a = np.asarray(a)
            if a.shape[0] != n:
                raise ValueError(f"batch arrays disagree in length: {a.shape[0]} != {n}")
            if padded > n:
                a = np.concatenate([a, np.repeat(a[-1:], padded - n, axis=0)])
            out.append(jax.device_put(a, self.batch_sharded))
        return out, n


def _local_copy(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError(f"an array sharded over several processes ({x.sharding}) cannot be "
                             "used as metric weights; replicate it first")
        return x.addressable_shards[0].data
    return x


def process_share(total: int, index: int | None = None, count: int | None = None) -> int:
    """How many of `total` samples process `index` produces (the first total % count get one
    more), so that the shares add up to `total`."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    return total // count + (1 if index < total % count else 0)


def gather_rows(x: np.ndarray) -> np.ndarray:
    """Concatenates every process's [n_p, ...] rows in process order (n_p may differ)."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return x
    barrier("gather_rows", GATHER_TIMEOUT_S)  # see distributed.py: gloo's first-use limit
    counts = np.asarray(multihost_utils.process_allgather(np.int64(x.shape[0])))
    longest = int(counts.max())
    padded = np.zeros((longest, *x.shape[1:]), x.dtype)
    padded[: x.shape[0]] = x
    every = np.asarray(multihost_utils.process_allgather(padded))  # [processes, longest, ...]
    return np.concatenate([every[p, : int(c)] for p, c in enumerate(counts)])


def broadcast_flag(flag: bool) -> bool:
    """Process 0's value of `flag` on every process (e.g. 'the cache file exists')."""
    if jax.process_count() == 1:
        return bool(flag)
    barrier("broadcast_flag", GATHER_TIMEOUT_S)
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))
