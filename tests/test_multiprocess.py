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


def metric_line(workdir, name):
    (line,) = (workdir / f"metric-{name}.jsonl").read_text().splitlines()
    return json.loads(line)


def generated_features(G, num, processes=2, devices=2, batch=8, seed=0):
    """{process: toy features [share, 48]} of the images that process generates in a
    `processes`-process evaluation (metrics/sampler.py): process p renders
    num // processes (+1 for the first num % processes) images, in batches of `batch`
    sharded over its `devices`, from z ~ default_rng([seed, p]) drawn a batch at a time
    and noise keys fold_in(fold_in(PRNGKey(seed), p), batch index), then quantises them
    as the official metrics do. Computed here, in one process."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
    from toy_detectors import box_features

    from stylegan_jax.models.sampling import synthesize

    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("data",))
    rows, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    g_vars = jax.device_put(G.variables, replicated)
    module = G.module

    @jax.jit
    def features(g_vars, z, c, key):
        img = synthesize(module, g_vars, z, c, key, np.float32(G.lod), noise_mode="random")
        img = jnp.clip(jnp.floor(img * 127.5 + 128.0), 0, 255).astype(jnp.uint8)
        return box_features({"scale": 2.0}, img)["pool3"]

    out = {}
    for p in range(processes):
        share = num // processes + (p < num % processes)
        rng = np.random.default_rng([seed, p])
        key = jax.random.fold_in(jax.random.PRNGKey(seed), p)
        got = []
        for i in range(-(-share // batch)):
            z = rng.standard_normal((batch, module.z_dim)).astype(np.float32)
            c = np.zeros((batch, 0), np.float32)
            got.append(np.asarray(features(g_vars, jax.device_put(z, rows),
                                           jax.device_put(c, rows), jax.random.fold_in(key, i))))
        out[p] = np.concatenate(got)[:share]
    return out


def official_fid(gen, real):
    """stylegan2-ada-pytorch's compute_fid: biased covariances, scipy's sqrtm (which warns
    that 16 samples in 48 dimensions make the product singular; its trace stays within
    1e-7 relative of the eigenvalue route here)."""
    import warnings

    import scipy.linalg

    mu_g, mu_r = gen.mean(0), real.mean(0)
    s_g, s_r = np.cov(gen, rowvar=False, bias=True), np.cov(real, rowvar=False, bias=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(s_g @ s_r)
    return float(np.real(np.sum((mu_g - mu_r) ** 2) + np.trace(s_g + s_r - 2 * root)))


def official_kid(gen, real, rng, num_subsets=100, max_subset_size=1000):
    """stylegan2-ada-pytorch's compute_kid (its draws from `rng`: generated, then real)."""
    n = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    t = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return t / num_subsets / m


def test_two_process_metrics_equal_one_process_on_the_same_images(runs):
    """FID, KID and PR that two processes gathered equal the values one process computes
    (here) on the same images: every process's generated features, regenerated from the
    evaluated snapshot with each process's seeds, against the gathered real features.
    (It also reads a checkpoint that two processes wrote from one process of another
    device count, as `generate` and `metrics` do.)

    Tolerances: the features are the same float32 numbers (the same programs on the same
    2-device layout); what differs is float64 summation order (FeatureStats' running sums
    vs. numpy's) and FID's square root (eigenvalues vs. scipy's sqrtm of a rank-15
    product; 3e-8 apart here): 1e-6 relative. KID uses the same draws: 1e-9. PR counts
    points within radii computed in float16 by the same programs (1 and 2 processes, 2 or
    8 devices give the same counts): equal. Dropping or duplicating one process's rows
    moves FID by ~10%, KID by ~30% and PR by several points."""
    from stylegan_jax.metrics import precision_recall
    from stylegan_jax.store.load import load_generator

    root, _ = runs
    two = root / "two"
    fid_line = metric_line(two, "fid16_full")
    assert fid_line["snapshot_pkl"] == "checkpoints/24"
    G = load_generator(two / fid_line["snapshot_pkl"])
    gen = generated_features(G, 1000)  # PR's pass; FID and KID's 16 are its first 8 + 8
    (two_cache,), (one_cache,) = ((root / run / "stats_cache").glob("*.npz")
                                  for run in ("two", "one"))
    real = FeatureStats.load(two_cache).get_all().astype(np.float64)  # gathered order
    one_real = FeatureStats.load(one_cache).get_all().astype(np.float64)
    # The real side: the same 100 rows as one process embedded (in another order).
    np.testing.assert_allclose(real[np.lexsort(real.T[::-1])],
                               one_real[np.lexsort(one_real.T[::-1])], rtol=1e-6, atol=1e-7)

    fid_gen = np.concatenate([gen[0][:8], gen[1][:8]]).astype(np.float64)
    fid = fid_line["results"]["fid16_full"]
    assert fid == pytest.approx(official_fid(fid_gen, real), rel=1e-6)
    # Only process 0's 8 rows would give another value, far outside the tolerance.
    assert abs(official_fid(fid_gen[:8], real) - fid) > 1e-2 * fid

    kid = metric_line(two, "kid16_full")["results"]["kid16_full"]
    assert kid == pytest.approx(official_kid(fid_gen, real, np.random.default_rng(0)),
                                rel=1e-9)

    pr = metric_line(two, "pr1k3_full")["results"]
    want = precision_recall.precision_recall(real, np.concatenate([gen[0], gen[1]]), 3)
    assert (pr["pr1k3_full_precision"], pr["pr1k3_full_recall"]) == want


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
