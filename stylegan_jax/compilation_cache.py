"""JAX's persistent compilation cache, on by default for every command that compiles.

A restarted (preempted) run, `generate` and `metrics` would otherwise compile every
program again: a minute and a half for the quickstart on a 2-core CPU, minutes at 1024²
on a GPU. The cache lives in `$SGJ_COMPILATION_CACHE` (a directory, or `off`), else in
`$JAX_COMPILATION_CACHE_DIR` when that is set, else in `~/.cache/stylegan_jax/jax`
(`$XDG_CACHE_HOME` respected). Entries are keyed by the program, the devices and the jax
version, so a stale entry is never used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax
from jax import monitoring

OFF = ("off", "none", "0", "false", "")


def default_directory() -> Path | None:
    """Where the cache lives according to the environment (None: switched off)."""
    chosen = os.environ.get("SGJ_COMPILATION_CACHE")
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else Path(chosen).expanduser()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylegan_jax" / "jax"


def enable(directory: str | Path | None = None) -> Path | None:
    """Turns the cache on (in `directory`, else `default_directory()`); returns where.

    Call before the first compilation: JAX decides once per process whether it caches.
    `directory='off'` (or an environment that says so) leaves it off and returns None.
    """
    if directory is not None and str(directory).strip().lower() in OFF:
        os.environ["SGJ_COMPILATION_CACHE"] = "off"  # and for the processes this one starts
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(directory).expanduser() if directory is not None else default_directory()
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = path.absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"compilation cache directory {path} cannot be created ({e}); "
                         "set SGJ_COMPILATION_CACHE to another directory or to 'off'") from e
    os.environ["SGJ_COMPILATION_CACHE"] = str(path)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every program that takes a noticeable time; tiny ones compile faster than a read.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


class _Counts:
    def __init__(self):
        self.requests = self.hits = 0

    @property
    def misses(self) -> int:
        return self.requests - self.hits


def active() -> bool:
    """Whether compilations now go through a persistent cache directory."""
    return bool(jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir)


@contextlib.contextmanager
def count_hits():
    """Counts, inside the block, compilations served by the persistent cache (`hits`) and
    those that compiled although the cache was on (`misses`); none without a cache."""
    counts = _Counts()
    if not active():  # jax still records 'requests' when no directory is set
        yield counts
        return

    def listener(event: str, **_):
        if event == "/jax/compilation_cache/compile_requests_use_cache":
            counts.requests += 1
        elif event == "/jax/compilation_cache/cache_hits":
            counts.hits += 1

    monitoring.register_event_listener(listener)
    try:
        yield counts
    finally:
        monitoring.unregister_event_listener(listener)
