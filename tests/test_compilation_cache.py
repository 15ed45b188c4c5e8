"""The persistent compilation cache: where it lives, and that a second command loads from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stylegan_jax import compilation_cache
from stylegan_jax.distributed import with_host_devices


@pytest.mark.parametrize("env, expected", [
    ({"SGJ_COMPILATION_CACHE": "/x/sgj"}, Path("/x/sgj")),
    ({"SGJ_COMPILATION_CACHE": "off", "JAX_COMPILATION_CACHE_DIR": "/x/jax"}, None),
    ({"SGJ_COMPILATION_CACHE": "None"}, None),
    ({"JAX_COMPILATION_CACHE_DIR": "/x/jax"}, Path("/x/jax")),
    ({"XDG_CACHE_HOME": "/x/xdg"}, Path("/x/xdg/stylegan_jax/jax")),
    ({"HOME": "/x/home"}, Path("/x/home/.cache/stylegan_jax/jax")),
])
def test_default_directory_follows_the_environment(monkeypatch, env, expected):
    for name in ("SGJ_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert compilation_cache.default_directory() == expected


def test_an_unusable_directory_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=re.escape(str(blocker / "cache"))):
        compilation_cache.enable(blocker / "cache")


def bench(cache: Path | str) -> str:
    """A tiny config's training step through the CLI (one program: Gmain and Dmain; the
    regularisers' second-order passes would triple its compile time)."""
    env = {**os.environ, "XLA_FLAGS": with_host_devices(os.environ.get("XLA_FLAGS", ""), None)}
    overrides = ["--config.data.resolution=16", "--config.model.z_dim=16",
                 "--config.model.w_dim=16", "--config.model.channel_base=64",
                 "--config.model.channel_max=8", "--config.train.batch_size=4",
                 "--config.model.mbstd_group_size=2", "--config.train.r1_gamma=0",
                 "--config.train.pl_weight=0"]
    result = subprocess.run(
        [sys.executable, "-m", "stylegan_jax.cli", "--compilation-cache", str(cache), "bench",
         "--config", "quickstart", "--iters", "1", *overrides],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_second_command_loads_its_programs_from_the_cache(tmp_path):
    cache = tmp_path / "jax_cache"
    assert "0 of 1 from the compilation cache" in bench(cache)
    assert any(cache.iterdir())
    assert "1 of 1 from the compilation cache" in bench(cache)


def test_off_switches_the_cache_off(monkeypatch):
    import jax

    saved = (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir)
    monkeypatch.setenv("SGJ_COMPILATION_CACHE", "/somewhere")
    try:
        assert compilation_cache.enable("off") is None
        assert not compilation_cache.active()
        assert os.environ["SGJ_COMPILATION_CACHE"] == "off"  # processes it starts agree
        with compilation_cache.count_hits() as counts:
            jax.jit(lambda x: x * 3)(jax.numpy.ones(3)).block_until_ready()
        assert (counts.hits, counts.misses) == (0, 0)
    finally:
        jax.config.update("jax_enable_compilation_cache", saved[0])
        jax.config.update("jax_compilation_cache_dir", saved[1])
