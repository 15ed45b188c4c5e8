"""ADA in the training step: the official p heuristic in closed form, and p on many devices.

The numbers of an ADA iteration against NVIDIA's are in test_train_step_official.py; here
the heuristic's bookkeeping (interval, clamp, reset, Dmain + Dreg counting) is checked
against hand-computed values, and a data-parallel run against its invariants.
"""

from __future__ import annotations

import functools
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_step import BATCH, N_DEV, real_batch, step_config, tiny_networks

from stylegan_jax.augment import named_pipe
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stylegan2 import config as stylegan2_config
from stylegan_jax.train.stylegan2 import step as step_lib


def ada_config(**kw):
    base = dict(augment=named_pipe("bgc"), ada_target=0.6, ada_interval=4, ada_kimg=0.5)
    return step_config(**{**base, **kw})


def state_at(step, p, total, count):
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return types.SimpleNamespace(step=jnp.int32(step), augment_p=f32(p),
                                 ada_sign_sum=f32(total), ada_sign_count=f32(count))


def update(cfg, state, total, count):
    return [float(x) for x in step_lib._ada_update(cfg, state, jnp.float32(total),
                                                   jnp.float32(count))]


RATE = BATCH * 4 / 500  # batch * ada_interval / (ada_kimg * 1000) for ada_config()


def test_ada_accumulates_between_adjustments():
    # Iteration 2 (batch_idx 3 after it): no adjustment at interval 4, the signs add up.
    assert update(ada_config(), state_at(2, 0.25, 10, 32), 6, 16) == [0.25, 16, 48]


@pytest.mark.parametrize("prior, new, p, want", [
    ((10, 16), (10, 16), 0.25, 0.25 + RATE),  # mean 20 / 32 = 0.625 > 0.6: stronger
    ((10, 16), (6, 16), 0.25, 0.25 - RATE),  # mean 0.5 < 0.6: weaker
    ((10, 16), (6, 16), 0.01, 0.0),  # clamped at 0
    ((3, 8), (3, 2), 0.25, 0.25),  # mean 6 / 10 is the target: sign 0, no change
])
def test_ada_adjusts_every_interval(prior, new, p, want):
    # Iteration 3: batch_idx 4 is a multiple of ada_interval = 4, so p moves and the sum resets.
    got = update(ada_config(), state_at(3, p, *prior), *new)
    assert got[1:] == [0.0, 0.0]
    assert got[0] == pytest.approx(want, abs=1e-7)


def test_fixed_p_and_no_augmentation_leave_p_alone():
    state = state_at(3, 0.3, 0, 0)
    assert update(ada_config(ada_target=None), state, 8, 16) == [float(np.float32(0.3)), 0, 0]
    assert update(step_config(), state, 8, 16)[1:] == [0, 0]


def test_bad_draws_are_named():
    nets, cfg = tiny_networks(), ada_config()
    draws = step_lib.draw_iteration(jax.random.PRNGKey(0), nets, step_config(), 2,
                                    jnp.zeros((1, 0)))
    assert draws.augment is None  # no augmentation: no pipe draws
    state = jax.eval_shape(functools.partial(step_lib.init_state, nets, cfg, 0))
    with pytest.raises(ValueError, match="augment draws"):
        jax.eval_shape(functools.partial(step_lib.iteration, nets=nets, cfg=cfg,
                                         do_greg=False, do_dreg=False),
                       state, jnp.zeros((2, 16, 16, 1), jnp.uint8), jnp.zeros((2, 0)), draws)


@pytest.fixture(scope="module")
def ada_run():
    """Two pmap iterations on 8 devices (one program: Gmain, Dmain, Dreg), ADA every 2."""
    nets = tiny_networks()
    cfg = ada_config(pl_weight=0.0, d_reg_interval=1, ada_interval=2, augment_p=0.5)
    assert cfg.phases(0) == cfg.phases(1) == (False, True)
    backend = Backend("pmap")
    state = backend.put_state(step_lib.init_state(nets, cfg, seed=3))
    labels = backend.put_replicated(jnp.zeros((1, 0)))
    fn = functools.partial(step_lib.iteration_from_key, nets=nets, cfg=cfg, do_greg=False,
                           do_dreg=True)
    program = backend.compile(fn, ("replicated", "sharded", "sharded", "replicated"),
                              ("replicated", "replicated"))
    states = []
    for i in range(2):
        batch = backend.put_batch((real_batch(i), np.zeros((BATCH, 0), np.float32)))
        state, stats = program(state, *batch, labels)
        states.append((np.asarray(state.augment_p), np.asarray(state.ada_sign_sum),
                       np.asarray(state.ada_sign_count), np.asarray(stats["augment"])))
    return cfg, states


def test_p_is_identical_on_every_device(ada_run):
    _, states = ada_run
    for values in states:
        for v in values:
            assert v.shape == (N_DEV,) and np.all(v == v[0])


def test_dmain_and_dreg_reals_both_count(ada_run):
    cfg, states = ada_run
    p, total, count, _ = (v[0] for v in states[0])
    assert p == np.float32(0.5)  # batch_idx 1: no adjustment at interval 2
    assert count == 2 * BATCH  # every device's reals, in Dmain and in Dreg
    assert total == np.round(total) and abs(total) <= count and (count - total) % 2 == 0


def test_p_moves_by_the_official_step(ada_run):
    cfg, states = ada_run
    p, total, count, shown = (v[0] for v in states[1])
    rate = np.float32(BATCH * 2 / 500)  # batch * ada_interval / (ada_kimg * 1000)
    assert total == 0 and count == 0  # reset after the adjustment
    assert p in (np.float32(0.5) + rate, np.float32(0.5) - rate, np.float32(0.5))
    assert shown == p


def test_the_loop_resumes_with_the_same_p(tmp_path):
    """2 + restart + 2 iterations == 4 straight, bitwise, with p adjusted every iteration;
    the tick line and stats.jsonl report p. Without regularisers: one cheap program (the
    Dreg reals' count is tested above)."""
    from test_train_loop import assert_trees_equal
    from train_fixtures import tiny_config

    from stylegan_jax.train import loop

    ada = dict(aug="ada", aug_p=0.3, ada_interval=1, ada_kimg=1.0,  # steps of 16 / 1000
               r1_gamma=0.0, pl_weight=0.0)
    lines = []
    straight = loop.train(tiny_config(**ada), tmp_path / "a", stop_at_step=4, log=lines.append)
    loop.train(tiny_config(**ada), tmp_path / "b", stop_at_step=2, log=lambda _: None)
    resumed = loop.train(tiny_config(**ada), tmp_path / "b", stop_at_step=4,
                         log=lambda _: None)
    assert_trees_equal(straight["state"], resumed["state"])
    p = float(straight["state"].augment_p)
    # Four adjustments of +-0.016 from 0.3 (never near the clamp at 0).
    assert min(abs(p - (0.3 + k * 0.016)) for k in (-4, -2, 0, 2, 4)) < 1e-6, p
    ticks = [x for x in lines if x.startswith("tick ")]
    assert ticks and all(" augment " in x for x in ticks)
    records = (tmp_path / "a" / "stats.jsonl").read_text().splitlines()
    assert abs(json.loads(records[-1])["Progress/augment"] - p) < 1e-6


@pytest.mark.parametrize("preset", ["paper256", "stylegan2", "auto", "cifar"])
def test_presets_train_with_the_official_ada(preset):
    from stylegan_jax.train import config as config_lib

    cfg = stylegan2_config.step_config(config_lib.load_config(preset))
    assert cfg.augment == named_pipe("bgc") and cfg.augment_p == 0.0
    assert (cfg.ada_target, cfg.ada_interval, cfg.ada_kimg) == (0.6, 4, 500.0)


@pytest.mark.parametrize("override, field", [
    ("train.aug=always", "train.aug"), ("train.augpipe=bgcx", "train.augpipe"),
    ("train.aug_p=-0.5", "train.aug_p"), ("train.ada_target=1.5", "train.ada_target"),
    ("train.ada_interval=0", "train.ada_interval"), ("train.ada_kimg=0", "train.ada_kimg"),
])
def test_bad_augment_settings_name_the_field(override, field):
    from stylegan_jax.train import config as config_lib

    config = config_lib.load_config("paper256", [override])
    with pytest.raises(config_lib.ConfigError, match=f"config.{field}="):
        config_lib.validate(config, num_devices=8)


def test_fixed_needs_a_strength_and_overrides_apply():
    from stylegan_jax.train import config as config_lib

    with pytest.raises(config_lib.ConfigError, match="config.train.aug_p=0.0"):
        config_lib.validate(config_lib.load_config("paper256", ["train.aug=fixed"]), 8)
    fixed = config_lib.load_config("paper256", ["train.aug=fixed", "train.aug_p=0.2",
                                                "train.augpipe=bgcfnc"])
    config_lib.validate(fixed, 8)
    cfg = stylegan2_config.step_config(fixed)
    assert (cfg.augment, cfg.augment_p, cfg.ada_target) == (named_pipe("bgcfnc"), 0.2, None)
    assert stylegan2_config.step_config(config_lib.load_config(
        "paper256", ["train.aug=noaug"])).augment is None
