"""Where the pipe's random numbers come from: a PRNG key (training) or a recording (tests).

The official pipe asks for every random number with `rand` (uniform [0, 1)) or `randn`
(standard normal) in a fixed order and in the official (NCHW) shapes. Both sources here
answer the same requests in the same order, so a recording of the official draws replays
the official augmentation exactly, and a key gives fresh draws of the same kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("rand", "randn")


class DrawSource(Protocol):
    """Answers the pipe's random-number requests, one call per official draw."""

    def rand(self, shape: Sequence[int]) -> jax.Array: ...

    def randn(self, shape: Sequence[int]) -> jax.Array: ...


Plan = tuple[tuple[str, tuple[int, ...]], ...]  # (kind, shape) of every draw, in order


class KeyDraws:
    """Draws from a PRNG key, following a plan of every draw the pipe will ask for.

    All uniform draws come from one `uniform` call and all normal draws from one
    `normal` call, sliced in request order: ~35 separate PRNG calls (a threefry hash
    each) would dominate the pipe's compile time. A request that strays from the plan
    raises, naming the draw.
    """

    def __init__(self, key: jax.Array, plan: Plan):
        self.plan = tuple((kind, tuple(shape)) for kind, shape in plan)
        sizes = {kind: sum(int(np.prod(s)) for k, s in self.plan if k == kind) for kind in KINDS}
        k_rand, k_randn = jax.random.split(key)
        buffers = {"rand": jax.random.uniform(k_rand, (sizes["rand"],), jnp.float32),
                   "randn": jax.random.normal(k_randn, (sizes["randn"],), jnp.float32)}
        # Keep XLA from fusing (and so duplicating) the PRNG into every consumer.
        self._buffers = jax.lax.optimization_barrier(buffers)
        self._offsets = dict.fromkeys(KINDS, 0)
        self.count = 0

    def _next(self, kind: str, shape: Sequence[int]) -> jax.Array:
        i, shape = self.count, tuple(shape)
        if i >= len(self.plan) or self.plan[i] != (kind, shape):
            planned = self.plan[i] if i < len(self.plan) else "nothing"
            raise ValueError(f"draw {i}: the pipe asks for {kind}{list(shape)} but the plan "
                             f"has {planned}")
        start = self._offsets[kind]
        self._offsets[kind] = start + int(np.prod(shape))
        self.count += 1
        return self._buffers[kind][start:self._offsets[kind]].reshape(shape)

    def rand(self, shape: Sequence[int]) -> jax.Array:
        return self._next("rand", shape)

    def randn(self, shape: Sequence[int]) -> jax.Array:
        return self._next("randn", shape)


class PlanRecorder:
    """Records the kind and shape of each request (answering zeros): makes a Plan."""

    def __init__(self):
        self.requests: list[tuple[str, tuple[int, ...]]] = []

    def rand(self, shape: Sequence[int]) -> jax.Array:
        self.requests.append(("rand", tuple(shape)))
        return jnp.zeros(tuple(shape), jnp.float32)

    def randn(self, shape: Sequence[int]) -> jax.Array:
        self.requests.append(("randn", tuple(shape)))
        return jnp.zeros(tuple(shape), jnp.float32)


class RecordedDraws:
    """Replays a list of recorded draws, checking each request's kind and shape.

    `kinds` (optional) names each draw `rand` or `randn`; a request of another kind or
    shape, or more requests than draws, raises naming the draw's index. `finish()` checks
    that the pipe consumed every draw (a pipe that draws less is not the official one).
    """

    def __init__(self, draws: Sequence, kinds: Sequence[str] | None = None):
        self.draws = list(draws)
        if kinds is not None:
            kinds = list(kinds)
            if len(kinds) != len(self.draws):
                raise ValueError(f"draw kinds: {len(kinds)} kinds for {len(self.draws)} draws")
            for i, kind in enumerate(kinds):
                if kind not in KINDS:
                    raise ValueError(f"draw kinds[{i}]: {kind!r} is not one of {KINDS}")
        self.kinds = kinds
        self.count = 0

    def _next(self, kind: str, shape: Sequence[int]) -> jax.Array:
        i = self.count
        if i >= len(self.draws):
            raise ValueError(
                f"draw {i}: the pipe asks for {kind}{list(shape)} but the recording holds "
                f"only {len(self.draws)} draws")
        value = self.draws[i]
        if self.kinds is not None and self.kinds[i] != kind:
            raise ValueError(f"draw {i}: the pipe asks for {kind}{list(shape)} but the "
                             f"recording holds {self.kinds[i]}{list(np.shape(value))}")
        if tuple(np.shape(value)) != tuple(shape):
            raise ValueError(f"draw {i}: the pipe asks for {kind}{list(shape)} but the "
                             f"recording holds shape {list(np.shape(value))}")
        self.count += 1
        return jnp.asarray(value, jnp.float32)

    def rand(self, shape: Sequence[int]) -> jax.Array:
        return self._next("rand", shape)

    def randn(self, shape: Sequence[int]) -> jax.Array:
        return self._next("randn", shape)

    def finish(self) -> None:
        """Raises if some recorded draws were never asked for."""
        if self.count != len(self.draws):
            raise ValueError(f"the pipe used {self.count} of {len(self.draws)} recorded draws")
