"""The progressive schedule against the official TrainingSchedule and training loop.

`official_schedule` and `official_loop` transcribe NVlabs/stylegan training/training_loop.py
(`training_schedule`, and the `while cur_nimg < total` loop that evaluates it once every
`minibatch_repeats * D_repeats` minibatches) in float arithmetic, as the official code runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.train import config as config_lib
from stylegan_jax.train.progressive.schedule import Schedule, device_lod, device_rampup
from stylegan_jax.train.progressive.trainer import ProgressiveTrainer


def official_schedule(cur_nimg, resolution_log2, lod_initial_resolution=4,
                      lod_training_kimg=600, lod_transition_kimg=600, minibatch_base=16,
                      minibatch_dict=None, G_lrate_base=0.001, G_lrate_dict=None,
                      D_lrate_base=0.001, D_lrate_dict=None, lrate_rampup_kimg=0):
    minibatch_dict, G_lrate_dict, D_lrate_dict = (minibatch_dict or {}, G_lrate_dict or {},
                                                  D_lrate_dict or {})
    kimg = cur_nimg / 1000.0
    phase_dur = lod_training_kimg + lod_transition_kimg
    phase_idx = int(np.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    phase_kimg = kimg - phase_idx * phase_dur
    lod = resolution_log2
    lod -= np.floor(np.log2(lod_initial_resolution))
    lod -= phase_idx
    if lod_transition_kimg > 0:
        lod -= max(phase_kimg - lod_training_kimg, 0.0) / lod_transition_kimg
    lod = max(lod, 0.0)
    resolution = 2 ** (resolution_log2 - int(np.floor(lod)))
    G_lrate = G_lrate_dict.get(resolution, G_lrate_base)
    D_lrate = D_lrate_dict.get(resolution, D_lrate_base)
    if lrate_rampup_kimg > 0:
        rampup = min(kimg / lrate_rampup_kimg, 1.0)
        G_lrate *= rampup
        D_lrate *= rampup
    return dict(lod=lod, resolution=resolution,
                minibatch=minibatch_dict.get(resolution, minibatch_base),
                G_lrate=G_lrate, D_lrate=D_lrate)


def official_loop(total_nimg, minibatch_repeats=4, D_repeats=1, **sched):
    """[(cur_nimg at the schedule evaluation, schedule)] for every group of minibatches."""
    groups, cur_nimg = [], 0
    while cur_nimg < total_nimg:
        s = official_schedule(cur_nimg, **sched)
        groups.append((cur_nimg, s))
        cur_nimg += minibatch_repeats * D_repeats * s["minibatch"]
    return groups


def schedule_from(res_log2, minibatch_repeats=4, D_repeats=1, **sched):
    """Our Schedule with the official argument names."""
    names = dict(lod_initial_resolution="initial_resolution",
                 lod_training_kimg="training_kimg", lod_transition_kimg="transition_kimg",
                 minibatch_base="minibatch_base", G_lrate_base="g_lrate_base",
                 D_lrate_base="d_lrate_base", lrate_rampup_kimg="lrate_rampup_kimg")
    kwargs = {names[k]: v for k, v in sched.items() if k in names}
    for k, ours in (("minibatch_dict", "minibatch_dict"), ("G_lrate_dict", "g_lrate_dict"),
                    ("D_lrate_dict", "d_lrate_dict")):
        kwargs[ours] = tuple(sorted(sched.get(k, {}).items()))
    return Schedule(resolution=2**res_log2, minibatch_repeats=minibatch_repeats,
                    d_repeats=D_repeats, **kwargs)


FFHQ_8GPU = dict(lod_initial_resolution=8, minibatch_base=32,
                 minibatch_dict={4: 512, 8: 256, 16: 128, 32: 64, 64: 32},
                 G_lrate_dict={128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
                 D_lrate_dict={128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003})


@pytest.mark.parametrize("sched", [
    FFHQ_8GPU,
    dict(minibatch_base=4, minibatch_dict={4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16,
                                           256: 8, 512: 4},
         G_lrate_dict={1024: 0.0015}, D_lrate_dict={1024: 0.0015}),
    dict(lod_training_kimg=800, lod_transition_kimg=0, lrate_rampup_kimg=150,
         G_lrate_base=0.002),
])
@pytest.mark.parametrize("kimg", [0, 0.5, 599.999, 600, 600.001, 900, 1199.999, 1200, 1800.25,
                                  4321.5, 6600, 9000, 12000, 25000])
def test_schedule_at_chosen_kimg_matches_the_official_formula(sched, kimg):
    nimg = round(kimg * 1000)
    want = official_schedule(nimg, 10, **sched)
    ours = schedule_from(10, **sched)
    assert ours.lod(nimg) == pytest.approx(want["lod"], abs=1e-9)
    assert ours.resolution_at(nimg) == want["resolution"]
    assert ours.minibatch(ours.resolution_at(nimg)) == want["minibatch"]
    g, d = ours.lrates(nimg)
    assert (g, d) == pytest.approx((want["G_lrate"], want["D_lrate"]), rel=1e-12)


def test_ffhq_examples_by_hand():
    """A few values worked out from the official formulas, as a reader would."""
    s = schedule_from(10, **FFHQ_8GPU)  # 8x8 (lod 7) first
    assert (s.lod(0), s.resolution_at(0), s.minibatch(8)) == (7.0, 8, 256)
    assert (s.lod(900_000), s.resolution_at(900_000)) == (6.5, 16)  # half-way into 16x16
    assert (s.lod(1_200_000), s.resolution_at(1_200_000)) == (6.0, 16)
    # 128x128 (4 doublings after 8x8) fades in after 3 * 1200 + 600 kimg.
    assert s.lrates(4_200_000) == (0.001, 0.001) and s.resolution_at(4_200_000) == 64
    assert s.lrates(4_200_016) == (0.0015, 0.0015) and s.resolution_at(4_200_016) == 128
    assert s.lod(25_000_000) == 0.0 and s.resolution_at(25_000_000) == 1024


@pytest.mark.parametrize("case", [
    # Minibatches that change per resolution, groups that straddle phase boundaries.
    dict(res_log2=5, minibatch_repeats=4, total=4000,
         sched=dict(lod_training_kimg=0.3, lod_transition_kimg=0.5,
                    minibatch_dict={4: 64, 8: 32, 16: 24, 32: 16}, minibatch_base=16)),
    # D_repeats = 2 and 3 repeats: 6 minibatches per evaluation.
    dict(res_log2=5, minibatch_repeats=3, D_repeats=2, total=3000,
         sched=dict(lod_initial_resolution=8, lod_training_kimg=0.2, lod_transition_kimg=0.2,
                    minibatch_base=24)),
    # Groups longer than a phase: some resolutions are never trained (skipped stages).
    dict(res_log2=6, minibatch_repeats=4, total=6000,
         sched=dict(lod_training_kimg=0.1, lod_transition_kimg=0.1, minibatch_base=128)),
    # No fades (transition 0): lod jumps by whole levels.
    dict(res_log2=4, minibatch_repeats=2, total=1500,
         sched=dict(lod_training_kimg=0.25, lod_transition_kimg=0, minibatch_base=40)),
])
def test_stages_and_device_lod_follow_the_official_loop(case):
    groups = official_loop(case["total"], case.get("minibatch_repeats", 4),
                           case.get("D_repeats", 1), resolution_log2=case["res_log2"],
                           **case["sched"])
    schedule = schedule_from(case["res_log2"], case.get("minibatch_repeats", 4),
                             case.get("D_repeats", 1), **case["sched"])
    config = _config_for(schedule)
    trainer = ProgressiveTrainer(config, 0)
    per_group = case.get("minibatch_repeats", 4) * case.get("D_repeats", 1)
    seen = []
    lods = jax.jit(lambda plan_index, n: device_lod(schedule, trainer.plans[plan_index], n),
                   static_argnums=0)
    for start, want in groups:
        stage = trainer.stage_at(start)
        plan = trainer.plans[stage.index]
        assert (stage.resolution, stage.batch_size) == (want["resolution"], want["minibatch"])
        assert plan.level == int(np.floor(want["lod"]))
        assert plan.lrates == (want["G_lrate"], want["D_lrate"])
        # Every minibatch of the group trains at the lod of its first image.
        nimgs = start + np.arange(per_group) * want["minibatch"]
        for n in nimgs:
            assert trainer.stage_at(int(n)) == stage
        got = np.asarray(lods(stage.index, jnp.asarray(nimgs, jnp.int32)))
        np.testing.assert_allclose(got, want["lod"], atol=1e-6)
        if not seen or seen[-1] != stage:
            seen.append(stage)
    # Stages are the runs of one resolution, and each ends where the next begins.
    assert [s.resolution for s in seen] == sorted({s.resolution for s in seen})
    for a, b in zip(seen, seen[1:], strict=False):
        assert a.end_nimg == trainer.plans[b.index].start_nimg
    assert seen[-1].end_nimg is None or seen[-1].end_nimg > groups[-1][0]


def test_rampup_on_the_device_matches_the_official_formula():
    schedule = schedule_from(4, lod_training_kimg=0.25, lod_transition_kimg=0.25,
                             lrate_rampup_kimg=0.5, minibatch_base=16)
    plans = schedule.stages()
    for nimg in (0, 16, 64, 240, 496, 1024):
        plan = [p for p in plans if p.start_nimg <= nimg][-1]
        start = schedule.group_start(plan, nimg)
        want = official_schedule(start, 4, lod_training_kimg=0.25, lod_transition_kimg=0.25,
                                 lrate_rampup_kimg=0.5)["G_lrate"] / 0.001
        got = float(device_rampup(schedule, plan, jnp.int32(nimg)))
        assert got == pytest.approx(want, rel=1e-6)


def _config_for(schedule: Schedule):
    c = config_lib.load_config("progan_quick")
    c.data.resolution = schedule.resolution
    t = c.train
    t.lod_initial_resolution = schedule.initial_resolution
    t.lod_training_kimg, t.lod_transition_kimg = schedule.training_kimg, schedule.transition_kimg
    t.batch_size = schedule.minibatch_base
    t.minibatch_dict = schedule.minibatch_dict
    t.g_lr, t.d_lr = schedule.g_lrate_base, schedule.d_lrate_base
    t.g_lrate_dict, t.d_lrate_dict = schedule.g_lrate_dict, schedule.d_lrate_dict
    t.lrate_rampup_kimg = schedule.lrate_rampup_kimg
    t.minibatch_repeats, t.d_repeats = schedule.minibatch_repeats, schedule.d_repeats
    return c


# -- the configs ---------------------------------------------------------------------------
def test_celebahq_preset_v2_minibatches_and_learning_rates():
    c = config_lib.load_config("progan_celebahq")
    s = Schedule.from_config(c)
    assert [s.minibatch(r) for r in s.resolutions()] == [128, 128, 128, 64, 32, 16, 8, 4, 4]
    assert s.base_lrates(512) == (0.001, 0.001) and s.base_lrates(1024) == (0.0015, 0.0015)
    assert (c.train.total_kimg, c.train.ema_beta, c.train.loss) == (12000, 0.999, "wgan_gp")
    c8 = config_lib.load_config("progan_celebahq:gpus=8")
    assert Schedule.from_config(c8).minibatch(1024) == 32


def test_stylegan_ffhq_variants():
    c = config_lib.load_config("stylegan_ffhq")
    s = Schedule.from_config(c)
    assert (s.resolutions()[0], s.resolutions()[-1], c.train.total_kimg) == (8, 1024, 25000)
    assert (c.train.loss, c.train.r1_gamma, c.train.ema_kimg) == ("logistic_r1", 10, 10)
    c256 = config_lib.load_config("stylegan_ffhq:res=256")
    assert Schedule.from_config(c256).resolutions() == [8, 16, 32, 64, 128, 256]
    with pytest.raises(ValueError, match="unknown option"):
        config_lib.load_config("stylegan_ffhq:resolution=256")


@pytest.mark.parametrize("name", ["progan_celebahq", "progan_quick", "stylegan_ffhq",
                                  "stylegan_quick", "stylegan_ffhq:res=64"])
def test_configs_validate(name):
    """The preset passes validation, and what validation vouches for holds by the official
    formula: at every quarter of each phase (stable, then fade) up to total_kimg,
    our schedule equals NVIDIA's `training_schedule` with the preset's settings, and each
    minibatch splits evenly over the devices and into minibatch-stddev groups."""
    devices = 1 if name == "progan_celebahq" else 8
    c = config_lib.load_config(name)
    config_lib.validate(c, num_devices=devices)
    t = c.train
    sched = dict(lod_initial_resolution=t.lod_initial_resolution,
                 lod_training_kimg=t.lod_training_kimg,
                 lod_transition_kimg=t.lod_transition_kimg, minibatch_base=t.batch_size,
                 minibatch_dict=dict(t.minibatch_dict), G_lrate_base=t.g_lr,
                 G_lrate_dict=dict(t.g_lrate_dict), D_lrate_base=t.d_lr,
                 D_lrate_dict=dict(t.d_lrate_dict), lrate_rampup_kimg=t.lrate_rampup_kimg)
    ours = Schedule.from_config(c)
    phase = t.lod_training_kimg + t.lod_transition_kimg
    kimgs = sorted({0.0, t.total_kimg, *(k * phase / 4 for k in range(
        int(t.total_kimg // (phase / 4)) + 1))})
    resolutions = set()
    for kimg in kimgs:
        nimg = round(kimg * 1000)
        want = official_schedule(nimg, int(np.log2(c.data.resolution)), **sched)
        assert ours.lod(nimg) == pytest.approx(want["lod"], abs=1e-9), kimg
        res = ours.resolution_at(nimg)
        assert (res, ours.minibatch(res)) == (want["resolution"], want["minibatch"]), kimg
        assert ours.lrates(nimg) == pytest.approx((want["G_lrate"], want["D_lrate"]),
                                                  rel=1e-12), kimg
        per_device, rest = divmod(want["minibatch"], devices)
        assert rest == 0 and per_device % min(c.model.mbstd_group_size, per_device) == 0
        resolutions.add(want["resolution"])
    # Every resolution from the initial one to the final one is trained.
    first = 2 ** int(np.log2(t.lod_initial_resolution))
    assert sorted(resolutions) == [2**k for k in range(int(np.log2(first)),
                                                       int(np.log2(c.data.resolution)) + 1)]


@pytest.mark.parametrize("family,field,value,match", [
    ("progan", "train.minibatch_dict", ((8, 12),), "multiple of the 8 devices"),
    ("progan", "train.batch_size", 4, "multiple of the 8 devices"),
    ("progan", "train.lod_initial_resolution", 12, "power of two"),
    ("progan", "train.lod_initial_resolution", 64, "power of two in"),
    ("progan", "train.lod_training_kimg", -1.0, ">= 0"),
    ("progan", "train.g_lrate_dict", ((8,),), "pairs"),
    ("progan", "train.d_lrate_dict", ((8, -0.1),), "not positive"),
    ("progan", "train.loss", "hinge", "expected one of"),
    ("progan", "train.ema_kimg", 10.0, "both ema_beta"),
    ("progan", "train.minibatch_repeats", 0, ">= 1"),
    ("progan", "model.mbstd_group_size", 3, "per-device minibatch"),
    ("stylegan", "model.fused_scale", "sometimes", "expected one of"),
    ("stylegan", "model.nonlinearity", "tanh", "expected one of"),
    ("stylegan", "train.style_mixing_prob", 1.5, "probability"),
    ("stylegan", "model.blur_filter", (0.0, 0.0), "non-zero sum"),
])
def test_bad_configs_name_the_field(family, field, value, match):
    config = config_lib.load_config(f"{family}_quick")
    config.train.minibatch_dict = ((8, 32),)
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(config_lib.ConfigError, match=match) as e:
        config_lib.validate(config, num_devices=8)
    assert field in str(e.value)
