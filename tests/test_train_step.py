"""The data-parallel training step: backends agree, devices agree, N devices == 1 device."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stylegan2 import step as step_lib
from stylegan_jax.train.stylegan2.losses import PhaseDraws

N_DEV = 8
BATCH = 16  # global: 2 per device
RES, CH, ZD = 16, 1, 16


def tiny_networks(mbstd_group=2):
    model = ml_collections.ConfigDict(dict(
        z_dim=ZD, w_dim=ZD, mapping_layers=2, channel_base=128, channel_max=8,
        g_architecture="skip", d_architecture="resnet", conv_clamp=256.0, num_bf16_res=0,
        mbstd_group_size=mbstd_group, mbstd_num_channels=1))
    return step_lib.build_networks(model, RES, CH, c_dim=0)


def step_config(**kw):
    base = dict(batch_size=BATCH, g_reg_interval=2, d_reg_interval=2, ema_kimg=0.01,
                ema_rampup=0.05, g_lr=0.01, d_lr=0.01)
    return step_lib.StepConfig(**{**base, **kw})


def real_batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (BATCH, RES, RES, CH), dtype=np.uint8)


def run(backend_kind, nets, cfg, iterations=2, devices=None):
    backend = Backend(backend_kind, devices=devices)
    state = backend.put_state(step_lib.init_state(nets, cfg, seed=3))
    labels = backend.put_replicated(jnp.zeros((1, 0)))
    programs = {}
    stats = None
    for i in range(iterations):
        flags = cfg.phases(i)
        if flags not in programs:
            fn = functools.partial(step_lib.iteration_from_key, nets=nets, cfg=cfg,
                                   do_greg=flags[0], do_dreg=flags[1])
            programs[flags] = backend.compile(
                fn, ("replicated", "sharded", "sharded", "replicated"),
                ("replicated", "replicated"))
        batch = backend.put_batch((real_batch(i), np.zeros((BATCH, 0), np.float32)))
        state, stats = programs[flags](state, *batch, labels)
    return backend, state, stats


@pytest.fixture(scope="module")
def pmap_run():
    nets = tiny_networks()
    return run("pmap", nets, step_config(), iterations=2)


def test_devices_hold_identical_state(pmap_run):
    _, state, _ = pmap_run
    for leaf in jax.tree_util.tree_leaves(state):
        stacked = np.asarray(leaf)
        assert stacked.shape[0] == N_DEV
        for d in range(1, N_DEV):
            np.testing.assert_array_equal(stacked[d], stacked[0])


def test_state_advances(pmap_run):
    backend, state, stats = pmap_run
    host = backend.host_state(state)
    assert int(host.step) == 2 and int(host.nimg) == 2 * BATCH
    assert float(host.pl_mean) > 0  # Greg ran at iteration 0
    for name in ("G/loss", "D/loss", "ema_beta", "pl_mean"):  # iteration 1: no reg phases
        assert np.isfinite(np.asarray(stats[name])).all(), name
    init = step_lib.init_state(tiny_networks(), step_config(), seed=3)
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), host.G, init.G)
    assert max(jax.tree_util.tree_leaves(moved)) > 0


@pytest.mark.slow  # a second backend's programs: ~20 s
def test_pmap_and_shard_map_agree(pmap_run):
    backend, state, _ = pmap_run
    a = backend.host_state(state)
    b_backend, b_state, _ = run("shard_map", tiny_networks(), step_config(), iterations=2)
    b = b_backend.host_state(b_state)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                            jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))


def test_per_device_draws_differ_and_reproduce():
    nets = tiny_networks()
    cfg = step_config()
    key = jax.random.PRNGKey(0)
    table = jnp.zeros((1, 0))
    d0 = step_lib.draw_iteration(jax.random.fold_in(key, 0), nets, cfg, 2, table)
    d1 = step_lib.draw_iteration(jax.random.fold_in(key, 1), nets, cfg, 2, table)
    d0b = step_lib.draw_iteration(jax.random.fold_in(key, 0), nets, cfg, 2, table)
    assert not np.allclose(d0.g_main.z, d1.g_main.z)
    np.testing.assert_array_equal(d0.g_main.z, d0b.g_main.z)
    assert d0.pl_noise.shape == (1, RES, RES, CH)


def explicit_draws(rng, batch):
    """Global draws for the equivalence test: style mixing off (cutoff = num_ws)."""
    def phase():
        return dict(z=rng.standard_normal((batch, ZD)).astype(np.float32),
                    c=np.zeros((batch, 0), np.float32),
                    mix_z=rng.standard_normal((batch, ZD)).astype(np.float32))
    pl = (rng.standard_normal((batch // 2, RES, RES, CH)) / RES).astype(np.float32)
    return phase(), phase(), phase(), pl


@pytest.mark.slow  # two device layouts: ~18 s
def test_eight_devices_equal_one_device_on_the_global_batch():
    """Same global batch and draws: 8 devices (2 each) == 1 device (16)."""
    nets = tiny_networks(mbstd_group=1)  # stddev groups stay within a device
    cfg = step_config(style_mixing_prob=0.0, noise_mode="const")
    num_ws = nets.G.num_ws
    rng = np.random.default_rng(5)
    g_main, g_reg, d_main, pl = explicit_draws(rng, BATCH)
    real = real_batch(7)
    per_dev = BATCH // N_DEV

    def phase_draws(p, n_dev, reorder_reg=False):
        z, mix_z = p["z"], p["mix_z"]
        if reorder_reg:
            # Greg uses the first half of each device's share: on one device, put
            # those samples first so that both runs regularise the same samples.
            idx = np.arange(BATCH).reshape(N_DEV, per_dev)
            first = idx[:, : per_dev // 2].ravel()
            rest = idx[:, per_dev // 2 :].ravel()
            order = np.concatenate([first, rest]) if n_dev == 1 else np.arange(BATCH)
            z, mix_z = z[order], mix_z[order]
        return PhaseDraws(z=z, c=p["c"], mix_z=mix_z,
                          mix_cutoff=np.full((n_dev,), num_ws, np.int32),
                          noise_key=np.zeros((n_dev * 2,), np.uint32))

    results = []
    for n_dev in (N_DEV, 1):
        backend = Backend("shard_map", devices=jax.devices()[:n_dev])
        state = backend.put_state(step_lib.init_state(nets, cfg, seed=3))
        draws = step_lib.IterationDraws(
            phase_draws(g_main, n_dev), phase_draws(g_reg, n_dev, reorder_reg=True),
            phase_draws(d_main, n_dev), pl)
        sharded = backend.put_batch((real, np.zeros((BATCH, 0), np.float32), draws))
        fn = functools.partial(step_lib.iteration, nets=nets, cfg=cfg, do_greg=True,
                               do_dreg=True)
        program = backend.compile(fn, ("replicated", "sharded", "sharded", "sharded"),
                                  ("replicated", "replicated"))
        state, _ = program(state, *sharded)
        results.append(backend.host_state(state))
    multi, single = results
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(multi),
                            jax.tree_util.tree_leaves(single), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = max(np.max(np.abs(y)), 1e-3)
        assert np.max(np.abs(x - y)) <= 1e-4 * scale, jax.tree_util.keystr(path)
