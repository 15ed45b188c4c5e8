"""A stage's training programs, compiled ahead of time, and the start line all processes share.

Compiling takes seconds to minutes and rarely takes the same time on every process (a
warm or cold compilation cache, a slow file system, a busy host). The first
cross-process collective must not start while a peer is still compiling: on the CPU,
gloo gives a late peer 30 s and that limit cannot be set. So every process lowers and
compiles every program of a stage before its first step, then all meet at a barrier of
the coordination service (`distributed.barrier`, with a generous timeout) and start
together. A process that dies meanwhile is still noticed through the heartbeat.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable
from typing import Any

import jax

from stylegan_jax import compilation_cache, distributed

# (mapped function, argument layout) -> compiled executable, for the life of the process:
# a second run in the same process (tests, notebooks) does not compile again.
_COMPILED: dict = {}


@dataclasses.dataclass
class StagePrograms:
    """The compiled iterations of one stage, found by the trainer's program key."""

    stage_index: int
    compiled: dict[Hashable, Callable]
    compile_s: float  # this process: tracing, lowering, compiling (or loading from the cache)
    compile_s_by_key: dict[Hashable, float]
    wait_s: float  # this process, at the barrier: how long the slowest peer kept it waiting
    cache_hits: int  # programs loaded from the persistent compilation cache
    cache_misses: int
    owner: Any = None  # what they were compiled for (the loop: its trainer)

    def __getitem__(self, key: Hashable) -> Callable:
        return self.compiled[key]

    def summary(self) -> str:
        n = len(self.compiled)
        cache = ("" if self.cache_hits + self.cache_misses == 0 else
                 f", {self.cache_hits} of {self.cache_hits + self.cache_misses} from the "
                 "compilation cache")
        line = f"Compiled {n} program{'s' * (n != 1)} in {self.compile_s:.1f} s{cache}"
        if jax.process_count() > 1:
            line += f"; waited {self.wait_s:.1f} s for the other processes"
        return line


def forget_compiled() -> None:
    """Drops every compiled program of this process (a benchmark of loading them again)."""
    _COMPILED.clear()
    jax.clear_caches()


def _layout(args) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves)


def compile_stage(programs: dict[Hashable, Any], args: tuple, stage_index: int,
                  timeout_s: float) -> StagePrograms:
    """Compiles each mapped program for `args` (the step's real arguments; nothing runs and
    nothing is donated), then waits at the barrier for every process to do the same."""
    start = time.perf_counter()
    layout = _layout(args)
    compiled, seconds = {}, {}
    with compilation_cache.count_hits() as counts:
        for key, mapped in programs.items():
            t0 = time.perf_counter()
            cache_key = (mapped, layout)
            if cache_key not in _COMPILED:
                _COMPILED[cache_key] = mapped.lower(*args).compile()
            compiled[key], seconds[key] = _COMPILED[cache_key], time.perf_counter() - t0
    compile_s = time.perf_counter() - start
    wait_s = distributed.barrier(f"compiled-stage-{stage_index}", timeout_s)
    return StagePrograms(stage_index, compiled, compile_s, seconds, wait_s, counts.hits,
                         counts.misses)
