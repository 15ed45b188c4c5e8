"""Timing of one compiled program, shared by the benchmarks."""

from __future__ import annotations

import time

import jax


def time_compiled(fn, args, iters: int) -> tuple[float, float]:
    """(compile seconds, seconds per call) of a jitted `fn` on `args` (one warm-up call)."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        out = compiled(*args)
    jax.block_until_ready(out)
    return compile_s, (time.perf_counter() - t0) / iters


def peak_memory_mib() -> float | None:
    """The first local device's peak memory in MiB, where the backend reports it."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20
