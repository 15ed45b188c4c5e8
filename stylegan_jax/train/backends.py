"""The two ways to run the per-device step over all devices: `jax.pmap` or jit + shard_map.

Both wrap the same per-device function (collectives over axis 'data'). The state is
replicated (pmap: stacked copies on local devices; shard_map: global arrays replicated
over the mesh); batches are split over the 'data' axis. `host_state` always returns
one plain copy (global arrays), which is what checkpoints store, so a checkpoint
restores onto any device count and either backend.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"  # the mesh / pmap axis every training collective reduces over
BACKENDS = ("pmap", "shard_map")


class Backend:
    """Places state and batches and compiles per-device functions for one backend."""

    def __init__(self, kind: str, devices=None):
        if kind not in BACKENDS:
            raise ValueError(f"train.backend must be one of {BACKENDS}, got {kind!r}")
        self.kind = kind
        self.devices = list(devices if devices is not None else jax.devices())
        self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
        self.mesh = Mesh(np.array(self.devices), (AXIS,))
        self.num_devices = len(self.devices)
        # pmap takes arrays stacked over this process's devices.
        self._stacked = NamedSharding(Mesh(np.array(self.local_devices), (AXIS,)), P(AXIS))

    # -- placement -------------------------------------------------------------
    def put_state(self, state):
        """One host/global copy of the state -> this backend's replicated layout."""
        if self.kind == "pmap":
            return self._stack(state)
        sharding = NamedSharding(self.mesh, P())
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                                   lambda idx: np.asarray(x)[idx]),
            state)

    def host_state(self, state):
        """The replicated state -> one copy as global arrays replicated over all devices.

        Every process can save it (Orbax needs global arrays in multi-process runs).
        """
        if self.kind == "pmap":
            replicated = NamedSharding(self.mesh, P())

            def one_copy(x):
                local = np.asarray(x.addressable_shards[0].data)[0]
                return jax.make_array_from_callback(local.shape, replicated,
                                                    lambda idx: local[idx])

            return jax.tree_util.tree_map(one_copy, state)
        return state

    def put_batch(self, local):
        """This process's share of a batch ([b_process, ...] numpy) -> device layout."""
        if self.kind == "pmap":
            n = len(self.local_devices)
            return jax.tree_util.tree_map(
                lambda x: jax.device_put(
                    np.reshape(x, (n, np.shape(x)[0] // n, *np.shape(x)[1:])), self._stacked),
                local)
        sharding = NamedSharding(self.mesh, P(AXIS))
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local)

    def put_replicated(self, x):
        """A constant every device needs whole (e.g. the label table)."""
        if self.kind == "pmap":
            return self._stack(x)
        return jax.device_put(x, NamedSharding(self.mesh, P()))

    def _stack(self, tree):
        n = len(self.local_devices)
        return jax.tree_util.tree_map(
            lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n, *np.shape(x))),
                                     self._stacked),
            tree)

    # -- compilation -----------------------------------------------------------
    def compile(self, fn: Callable, in_kinds: tuple[str, ...], out_kinds: tuple[str, ...],
                donate_state: bool = True) -> Callable:
        """Maps a per-device `fn` over devices. kinds: 'replicated' or 'sharded' per arg/output."""
        donate = (0,) if donate_state else ()
        if self.kind == "pmap":
            return jax.pmap(fn, axis_name=AXIS, devices=self.local_devices,
                            donate_argnums=donate)
        spec = {"replicated": P(), "sharded": P(AXIS)}
        mapped = jax.shard_map(
            fn, mesh=self.mesh, in_specs=tuple(spec[k] for k in in_kinds),
            out_specs=tuple(spec[k] for k in out_kinds), check_vma=False)
        return jax.jit(mapped, donate_argnums=donate)

