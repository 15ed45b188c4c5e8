"""Two processes on 127.0.0.1 (jax.distributed, gloo) against one process with the same devices."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stylegan_jax.distributed import free_port
from stylegan_jax.metrics.feature_stats import FeatureStats

WORKER = Path(__file__).parent / "multiprocess_worker.py"

pytestmark = pytest.mark.slow  # 3 processes compile the step on 2 cores; one waits 36 s


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Workers share a persistent compilation cache: only the first launch of each
    process layout compiles (~40 s -> ~10 s per later launch on 2 cores)."""
    CACHE.append(tmp_path_factory.mktemp("jax_cache"))
    yield
    CACHE.clear()


CACHE: list = []


def start(workdir, out, stop, devices, dist=(), **extra_env):
    env = {**os.environ, **extra_env}  # the worker sets its own device count
    if CACHE:
        env.update(JAX_COMPILATION_CACHE_DIR=str(CACHE[0]),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(workdir), str(out), str(stop), str(devices),
         *map(str, dist)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(procs, timeout=600):
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outputs.append(out)
        assert p.returncode == 0, out[-3000:]
    return outputs


def two_processes(workdir, out, stop, **extra_env):
    port = free_port()
    return [start(workdir, out, stop, 2, (f"127.0.0.1:{port}", 2, i), **extra_env)
            for i in range(2)]


def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def assert_close(a, b, rtol=1e-3):
    """Equal up to the order of cross-device sums (gloo vs. in-process reductions)."""
    assert sorted(a) == sorted(b)
    for k in a:
        scale = max(float(np.max(np.abs(b[k]))), 1e-6) if b[k].size else 1.0
        err = float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0
        assert err <= rtol * scale, f"{k}: {err:.3e}"


# Process 1 compiles this much later than process 0: past the 30 s that gloo gives a
# late peer at the first collective, which the compile barrier must make harmless.
LATE_S = 36


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    procs = two_processes(root / "two", root / "out_two", 3,
                          SGJ_TEST_COMPILE_DELAY=f"1:{LATE_S}")
    procs.append(start(root / "one", root / "out_one", 3, 4))
    logs = finish(procs)
    return root, logs


def test_processes_hold_identical_state_equal_to_one_process(runs):
    root, logs = runs
    p0, p1 = load(root / "out_two" / "state_p0.npz"), load(root / "out_two" / "state_p1.npz")
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)
    single = load(root / "out_one" / "state_p0.npz")
    assert_close(p0, single)
    assert any(line.startswith("tick ") for line in logs[0].splitlines())
    assert not any(line.startswith("tick ") for line in logs[1].splitlines())  # process 0 logs


def test_a_process_compiling_late_is_waited_for(runs):
    """Process 1 finished compiling LATE_S s after it could have; process 0 waited at the start
    line, then both trained (the state test above) instead of failing at the first
    collective."""
    _, logs = runs
    assert f"worker: reaching the start line {LATE_S} s late" in logs[1]
    (compiled, waited), = re.findall(r"Compiled \d+ programs? in ([\d.]+) s.*; waited "
                                     r"([\d.]+) s for the other processes", logs[0])
    # Process 0 arrived after its own compile; process 1 after its compile plus LATE_S.
    assert float(waited) >= LATE_S - float(compiled) - 1


def test_metrics_gather_every_process(runs):
    """The toy FID after 3 iterations: each process embeds its share of the real images and
    the gathered statistics equal one process's; only process 0 reports."""
    root, logs = runs
    (two,), (one,) = ((root / run / "stats_cache").glob("*.npz") for run in ("two", "one"))
    a, b = FeatureStats.load(two), FeatureStats.load(one)
    assert a.num_items == b.num_items == 100  # every bundled face, once
    for x, y in zip(a.get_mean_cov(), b.get_mean_cov(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
    for run in ("two", "one"):
        lines = (root / run / "metric-fid16_full.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["snapshot_pkl"] == "checkpoints/24"
        assert np.isfinite(json.loads(lines[0])["results"]["fid16_full"])
    assert '"metric": "fid16_full"' in logs[0] and '"metric"' not in logs[1]


def test_checkpoints_move_between_process_counts(runs):
    root, _ = runs
    # 2-process checkpoint -> 1 process, and 1-process checkpoint -> 2 processes.
    procs = [start(root / "two", root / "out_two_then_one", 5, 4)]
    procs += two_processes(root / "one", root / "out_one_then_two", 5)
    logs = finish(procs)
    assert "Resuming from" in logs[0] and "Resuming from" in logs[1]
    a = load(root / "out_two_then_one" / "state_p0.npz")
    b = load(root / "out_one_then_two" / "state_p0.npz")
    assert_close(a, b)
    assert int(a[".step"]) == 5


def test_a_killed_process_ends_the_other_and_restart_resumes(tmp_path):
    plain = dict(SGJ_TEST_PLAIN="1")  # no regularisers, no metrics: a cheaper compile
    procs = two_processes(tmp_path / "run", tmp_path / "out", 10_000, **plain)
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 400
    while not (ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            outs = [p.communicate(timeout=60)[0][-2000:] if p.poll() is not None else ""
                    for p in procs]
            pytest.fail(f"no checkpoint before the kill: {outs}")
        time.sleep(1)
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    out, _ = procs[0].communicate(timeout=120)
    assert time.time() - t0 < 90, "the surviving process did not stop in bounded time"
    assert procs[0].returncode != 0
    assert "another task died" in out or "unhealthy" in out, out[-2000:]
    # Both restarted: they resume from the newest complete checkpoint.
    saved = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    procs = two_processes(tmp_path / "run", tmp_path / "out", saved // 8 + 1, **plain)
    logs = finish(procs)
    assert f"Resuming from {ckpts}/{saved}" in logs[0], logs[0][-2000:]
