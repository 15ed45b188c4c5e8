"""Gradient accumulation (`train.batch_per_device`, the official `batch_gpu`).

The official loop backpropagates each round's mean loss and sums the rounds, so with
R rounds the gradient is R times the plain step's on the same samples, when the
rounds see what the plain step sees: minibatch-stddev groups equal to the rounds,
the same style-mixing cutoff and noise, a path-length mean that does not move
(pl_decay = 0). The per-round updates of pl_mean and w_avg are checked against their
closed forms, computed from the networks directly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stylegan_jax.train import config as config_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stylegan2 import step as step_lib
from stylegan_jax.train.stylegan2.losses import PhaseDraws

RES, CH, ZD = 8, 1, 8
N_DEV, PER_DEV, MICRO, SHRINK = 8, 4, 2, 2
BATCH = N_DEV * PER_DEV  # global
PAIRS = BATCH // MICRO  # micro-batches in the global batch


def tiny_networks():
    model = ml_collections.ConfigDict(dict(
        z_dim=ZD, w_dim=ZD, mapping_layers=1, channel_base=64, channel_max=8,
        g_architecture="skip", d_architecture="resnet", conv_clamp=256.0, num_bf16_res=0,
        mbstd_group_size=MICRO, mbstd_num_channels=1))  # a group is a whole round
    return step_lib.build_networks(model, RES, CH, c_dim=0)


def step_config(micro, **kw):
    base = dict(batch_size=BATCH, batch_per_device=micro, g_reg_interval=2,
                d_reg_interval=2, ema_kimg=0.01, ema_rampup=0.05, g_lr=0.01, d_lr=0.01,
                pl_batch_shrink=SHRINK, pl_decay=0.0, style_mixing_prob=0.0,
                noise_mode="const")
    return step_lib.StepConfig(**{**base, **kw})


def interleave(x):
    """Rows of micro-batch j, sample k -> position j + PAIRS * k. On one device, the plain
    step's minibatch-stddev groups (position i in group i mod PAIRS) are then the
    micro-batches, and its first BATCH // SHRINK samples (path length) are the first one
    of each micro-batch, as in the accumulated step."""
    x = np.asarray(x).reshape(PAIRS, MICRO, *np.shape(x)[1:])
    return np.swapaxes(x, 0, 1).reshape(-1, *np.shape(x)[2:])


def make_inputs(rng):
    """(z, mix_z) of Gmain, Greg, Dmain; path-length noise (one row per micro-batch); reals."""
    phases = [tuple(rng.standard_normal((BATCH, ZD)).astype(np.float32) for _ in range(2))
              for _ in range(3)]
    pl = (rng.standard_normal((PAIRS * (MICRO // SHRINK), RES, RES, CH)) / RES)
    real = rng.integers(0, 256, (BATCH, RES, RES, CH), dtype=np.uint8)
    return phases, pl.astype(np.float32), real


def iteration_draws(phases, pl, n_dev, rounds, cutoff):
    def phase(z, mix_z):
        return PhaseDraws(z=z, c=np.zeros((z.shape[0], 0), np.float32), mix_z=mix_z,
                          mix_cutoff=np.full((n_dev * rounds,), cutoff, np.int32),
                          noise_key=np.zeros((n_dev * 2,), np.uint32))
    return step_lib.IterationDraws(*(phase(*p) for p in phases), pl)


def run_iteration(n_dev, nets, cfg, draws, real):
    backend = Backend("shard_map", devices=jax.devices()[:n_dev])
    state = backend.put_state(step_lib.init_state(nets, cfg, seed=3))
    batch = backend.put_batch((real, np.zeros((real.shape[0], 0), np.float32), draws))
    fn = functools.partial(step_lib.iteration, nets=nets, cfg=cfg, do_greg=True,
                           do_dreg=True, return_grads=True)
    program = backend.compile(fn, ("replicated", "sharded", "sharded", "sharded"),
                              ("replicated", "replicated", "replicated"))
    state, stats, grads = program(state, *batch)
    return backend.host_state(state), stats, grads


@pytest.fixture(scope="module")
def plain_run():
    """The plain step on one device, on the micro-batches interleaved (see interleave).

    lr = 0 in every run here, so that each phase of every step sees the same weights: an
    Adam step on gradients that are zero up to rounding goes either way by a whole lr
    (see test_train_step_official), which would blur the comparison of later phases.
    Adam takes the same step on R x the gradient up to eps.
    """
    nets = tiny_networks()
    phases, pl, real = make_inputs(np.random.default_rng(1))
    cutoff = 3  # style mixing on, at the same layer in every round
    draws = iteration_draws([(interleave(z), interleave(m)) for z, m in phases], pl, 1, 1,
                            cutoff)
    plain = run_iteration(1, nets, step_config(0, g_lr=0.0, d_lr=0.0), draws,
                          interleave(real))
    return nets, phases, pl, real, cutoff, plain


def assert_grads_scaled(acc_grads, plain_grads, rounds, phases):
    for phase in phases:
        for (path, a), p in zip(jax.tree_util.tree_leaves_with_path(acc_grads[phase]),
                                jax.tree_util.tree_leaves(plain_grads[phase]), strict=True):
            a, p = np.asarray(a, np.float64), rounds * np.asarray(p, np.float64)
            scale = max(np.max(np.abs(p)), 1e-6)
            assert np.max(np.abs(a - p)) <= 1e-5 * scale, f"{phase}{jax.tree_util.keystr(path)}"


def test_eight_devices_two_rounds_each_give_twice_the_plain_gradient(plain_run):
    nets, phases, pl, real, cutoff, plain = plain_run
    rounds = PER_DEV // MICRO
    acc_state, acc_stats, acc_grads = run_iteration(
        N_DEV, nets, step_config(MICRO, g_lr=0.0, d_lr=0.0),
        iteration_draws(phases, pl, N_DEV, rounds, cutoff), real)
    _, plain_stats, plain_grads = plain
    assert_grads_scaled(acc_grads, plain_grads, rounds, ("Gmain", "Greg", "Dmain", "Dreg"))
    for name in ("G/loss", "D/loss", "G/reg", "D/reg"):  # mean over rounds == plain mean
        np.testing.assert_allclose(acc_stats[name], plain_stats[name], rtol=1e-5, err_msg=name)
    assert int(acc_state.nimg) == BATCH


def test_one_device_sixteen_rounds_and_per_round_state_updates(plain_run):
    """16 rounds on one device: 16 x the plain gradient (Gmain, Dmain, Dreg), and pl_mean
    and w_avg move once per round, in order (official), against their closed forms."""
    nets, phases, pl, real, cutoff, plain = plain_run
    decay, beta = 0.5, nets.G.w_avg_beta
    state, _, acc_grads = run_iteration(
        1, nets, step_config(MICRO, g_lr=0.0, d_lr=0.0, pl_decay=decay),
        iteration_draws(phases, pl, 1, PAIRS, cutoff), real)
    # With pl_decay > 0 the rounds regularise against different means: Greg differs.
    assert_grads_scaled(acc_grads, plain[2], PAIRS, ("Gmain", "Dmain", "Dreg"))

    G = nets.G.clone(axis_name=None)
    init = step_lib.init_state(nets, step_config(0), seed=3)  # lr = 0: G never moves
    variables = {"params": init.G, "buffers": init.G_buffers}

    def mixed_ws(z, mix_z):
        ws, mixed = (np.array(G.apply(variables, v, np.zeros((len(v), 0)),
                                        method=G.mapping_fn)) for v in (z, mix_z))
        ws[:, cutoff:] = mixed[:, cutoff:]
        return ws

    b = MICRO // SHRINK
    zg, (zr, mr) = phases[0][0], phases[1]
    first = np.arange(BATCH).reshape(PAIRS, MICRO)[:, :b].ravel()  # Greg: first of each round
    ws = jnp.asarray(mixed_ws(zr[first], mr[first]))
    _, vjp = jax.vjp(lambda w: G.apply(variables, w, "const", method=G.synthesis_fn), ws)
    (g,) = vjp(jnp.asarray(pl))
    lengths = np.sqrt(np.mean(np.sum(np.square(np.asarray(g, np.float64)), axis=2), axis=1))
    pl_mean = 0.0
    for r in range(PAIRS):
        pl_mean += decay * (np.mean(lengths[r * b:(r + 1) * b]) - pl_mean)
    np.testing.assert_allclose(state.pl_mean, pl_mean, rtol=1e-4)

    w_avg = np.asarray(init.G_buffers["mapping"]["w_avg"], np.float64)
    for phase, z in (("Gmain", zg), ("Greg", zr), ("Dmain", phases[2][0])):
        w = np.asarray(G.apply(variables, z, np.zeros((BATCH, 0)), method=G.mapping_fn))[:, 0]
        for r in range(PAIRS):
            rows = w[r * MICRO:(r + 1) * MICRO][: b if phase == "Greg" else MICRO]
            w_avg = rows.mean(axis=0) + beta * (w_avg - rows.mean(axis=0))
    np.testing.assert_allclose(state.G_buffers["mapping"]["w_avg"], w_avg, rtol=1e-4,
                               atol=1e-6)


def test_draws_have_one_cutoff_per_round():
    nets = tiny_networks()
    cfg = step_config(MICRO, style_mixing_prob=1.0)
    rounds = PER_DEV // MICRO
    d = step_lib.draw_iteration(jax.random.PRNGKey(0), nets, cfg, PER_DEV, jnp.zeros((1, 0)))
    assert d.g_main.mix_cutoff.shape == (rounds,)
    assert d.pl_noise.shape == (rounds * (MICRO // SHRINK), RES, RES, CH)
    assert np.all((d.g_main.mix_cutoff >= 1) & (d.g_main.mix_cutoff < nets.G.num_ws))
    with pytest.raises(ValueError, match="batch_per_device=3 must divide the per-device"):
        step_config(3).rounds(PER_DEV)


@pytest.mark.parametrize("bad,match", [
    (dict(batch_per_device=5), r"train.batch_per_device=5: expected 0 .* batch 12"),
    (dict(mbstd_group_size=4), r"mbstd_group_size=4: must divide the micro-batch .*=6"),
    (dict(pl_batch_shrink=12), r"pl_batch_shrink=12: leaves no sample of the micro-batch"),
    (dict(num_bf16_res=-2), r"model.num_bf16_res=-2: expected an integer >= 0, or -1"),
    (dict(remat_resolution=48), r"model.remat_resolution=48: expected 0 .* power of two"),
])
def test_config_names_the_field(bad, match):
    c = config_lib.load_config("quickstart")  # 32x32
    c.train.batch_size = 96  # 12 per device on 8 devices ...
    c.train.batch_per_device = 6  # ... in two rounds of 6
    c.model.mbstd_group_size = 2
    config_lib.validate(c, num_devices=8)  # fits
    for key, value in bad.items():
        c["train" if key in c.train else "model"][key] = value
    with pytest.raises(config_lib.ConfigError, match=match):
        config_lib.validate(c, num_devices=8)
