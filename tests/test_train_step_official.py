"""The training step against NVIDIA's recorded StyleGAN2-ADA iterations (tests/data/train_step).

One test case per file of family 'stylegan2_ada_train_step' (no augmentation),
'stylegan2_ada_train_step_ada' (the ADA pipe before every D evaluation and the ADA
heuristic) or 'stylegan3_train_step' (NVIDIA's stylegan3 loop with the alias-free
generator, set up from our `stylegan3_base` config so that the family's step settings are
what is tested): the bundled ones and those under $SGJ_REFERENCE_DIR. The recorded draws
(latents, path-length noise, and the pipe's draws per D evaluation) are replayed through
the project's per-device iteration (one device) and each phase's gradients, the
parameters, buffers and G_ema after each iteration, pl_mean, the EMA beta and the
augmentation strength p are compared with the tolerances stated in the fixture README.
A file recorded with style mixing (`meta.style_mixing_prob` > 0, written by
tests/record_train_step_mixing.py: `stylegan2_ada_train_step_mix_16`) also carries each
generator call's mixing draws (`it{i}/mix_z`, `mix_cutoff`, and the raw cutoff and
probability draws), replayed as PhaseDraws.mix_z / mix_cutoff; the file must contain a call
that mixes and one that does not. The float64-truth references (ADA, StyleGAN3: files with
`f32err/<key>`) take the reference README's rule: each tensor's bound grows by four times
the official float32 code's own error on it plus 1e-6 of the largest tensor of its phase
(or network).
"""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from official_fixtures import DATA, fixture_files, load, nchw_to_nhwc, read_meta, subdict

from stylegan_jax import augment as augment_lib
from stylegan_jax.configs import stylegan3_base
from stylegan_jax.convert import torch_stylegan2
from stylegan_jax.convert import torch_stylegan3 as sg3_convert
from stylegan_jax.models import stylegan3
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stylegan2 import config as stylegan2_config
from stylegan_jax.train.stylegan2 import step as step_lib
from stylegan_jax.train.stylegan2.losses import PhaseDraws

pytestmark = pytest.mark.slow  # every phase of each iteration compiled apart: 13-24 s a case

PLAIN, ADA, SG3 = "stylegan2_ada_train_step", "stylegan2_ada_train_step_ada", "stylegan3_train_step"


def files_of(family):
    return [f for f in fixture_files(family, DATA / "train_step")
            if read_meta(f).get("family") == family]


FILES = files_of(PLAIN) + files_of(ADA) + files_of(SG3)
# D evaluations in official call order -> the AugmentDraws field that replays them.
AUG_SLOTS = {("Gmain", 0): "g_main", ("Dmain", 0): "d_fake", ("Dmain", 1): "d_real",
             ("Dreg", 0): "d_reg"}


def test_fixtures_present():
    bundled = [f.name for f in FILES if f.parent == DATA / "train_step"]
    assert bundled == ["stylegan2_ada_train_step_16.npz", "stylegan2_ada_train_step_mix_16.npz",
                       "stylegan2_ada_train_step_ada_32.npz",
                       "stylegan3_r_train_step_16_cond.npz", "stylegan3_t_train_step_16.npz"]


def setup_stylegan3(meta):
    """Networks and step settings as our `stylegan3-t|r` config makes them for the file."""
    c = stylegan3_base.base(meta["cfg"].removeprefix("stylegan3-"), batch=meta["batch"])
    m, t = c.model, c.train
    m.z_dim, m.w_dim, m.mapping_layers = meta["z_dim"], meta["w_dim"], meta["mapping_layers"]
    m.channel_base, m.channel_max = meta["d_channel_base"], meta["d_channel_max"]
    assert meta["g_channel_base"] == m.g_channel_multiplier * meta["d_channel_base"]
    assert (meta["conv_kernel"], meta["use_radial_filters"]) == (m.conv_kernel,
                                                                  m.use_radial_filters)
    m.num_layers, m.conv_clamp, m.num_bf16_res = meta["num_layers"], meta["conv_clamp"], 0
    m.d_architecture, m.mbstd_group_size = meta["d_arch"], meta["mbstd_group"]
    assert (t.g_lr, t.d_lr, tuple(t.betas)) == (meta["glr"], meta["dlr"], tuple(meta["betas"]))
    assert (t.ema_kimg, t.blur_init_sigma, t.blur_fade_kimg) == (
        meta["ema_kimg"], meta["blur_init_sigma"], meta["blur_fade_kimg"])
    t.r1_gamma, t.aug = meta["r1_gamma"], "noaug"
    nets = step_lib.build_networks(m, meta["res"], meta["img_channels"], meta["c_dim"],
                                   c.family, meta["batch"])
    assert nets.G.magnitude_ema_beta == pytest.approx(meta["magnitude_ema_beta"], rel=1e-12)
    return nets, stylegan2_config.step_config(c)


def to_variables(state_dict, module, what):
    if isinstance(module, stylegan3.Generator):
        return sg3_convert.state_dict_to_variables(state_dict, module, what)
    return torch_stylegan2.state_dict_to_variables(state_dict, module, what)


def setup(meta):
    if meta["family"] == SG3:
        return setup_stylegan3(meta)
    model = ml_collections.ConfigDict(dict(
        z_dim=meta["z_dim"], w_dim=meta["w_dim"], mapping_layers=meta["mapping_layers"],
        channel_base=meta["cbase"], channel_max=meta["cmax"], g_architecture=meta["g_arch"],
        d_architecture=meta["d_arch"], conv_clamp=meta.get("conv_clamp", 256.0),
        num_bf16_res=0, mbstd_group_size=meta["mbstd_group"],
        mbstd_num_channels=meta.get("mbstd_num_channels", 1)))
    nets = step_lib.build_networks(model, meta["res"], meta["img_channels"], meta["c_dim"])
    cfg = step_lib.StepConfig(
        batch_size=meta["batch"], g_lr=meta.get("G_lr", meta["lr"]),
        d_lr=meta.get("D_lr", meta["lr"]), betas=tuple(meta["betas"]), eps=meta["eps"],
        r1_gamma=meta["r1_gamma"], pl_weight=meta["pl_weight"], pl_decay=meta["pl_decay"],
        pl_batch_shrink=meta["pl_batch_shrink"], style_mixing_prob=meta["style_mixing_prob"],
        g_reg_interval=meta["G_reg_interval"], d_reg_interval=meta["D_reg_interval"],
        ema_kimg=meta["ema_kimg"], ema_rampup=meta["ema_rampup"],
        noise_mode=meta["noise_mode_in_training"])
    if meta["family"] == ADA:
        cfg = dataclasses.replace(
            cfg, augment=augment_lib.make_config(meta["augment_kwargs"]),
            augment_p=meta["augment_p"], ada_target=meta["ada_target"],
            ada_interval=meta["ada_interval"], ada_kimg=meta["ada_kimg"])
    return nets, cfg


def initial_state(nets, cfg, meta, arrays):
    g = to_variables(subdict(arrays, "init/G/"), nets.G, "init/G")
    d = to_variables(subdict(arrays, "init/D/"), nets.D, "init/D")
    g_opt, d_opt = step_lib.optimizers(cfg)
    return step_lib.TrainState(
        G=g["params"], G_buffers=g["buffers"], D=d["params"], G_ema=g["params"],
        G_ema_buffers=g["buffers"], G_opt=g_opt.init(g["params"]),
        D_opt=d_opt.init(d["params"]), pl_mean=jnp.zeros((), jnp.float32),
        augment_p=jnp.asarray(meta.get("augment_p", 0.0), jnp.float32),
        ada_sign_sum=jnp.zeros((), jnp.float32), ada_sign_count=jnp.zeros((), jnp.float32),
        step=jnp.zeros((), jnp.int32), nimg=jnp.asarray(meta["start_nimg"], jnp.int32),
        rng=jax.random.PRNGKey(0))


RUNS_G = ("Gmain", "Greg", "Dmain")  # the phases whose loss calls the official run_G


def mixing_draws(arrays, it, num_ws, meta):
    """(mix_z [4, batch, z], cutoff [4]) of iteration `it`, rows as gen_z; none recorded
    (style mixing off): zeros and num_ws. Checks the recorded cutoffs against the raw draws
    as the official run_G turns them into one (float32 comparison, as torch's)."""
    z = arrays[f"it{it}/gen_z"]
    assert meta.get("num_ws", num_ws) == num_ws, "the file's generator has other ws"
    if f"it{it}/mix_z" not in arrays:
        assert meta["style_mixing_prob"] == 0, "style mixing on, but no mixing draws recorded"
        return np.zeros_like(z), np.full((z.shape[0],), num_ws, np.int32)
    cutoff = arrays[f"it{it}/mix_cutoff"].astype(np.int32)
    draw, prob = arrays[f"it{it}/mix_cutoff_draw"], arrays[f"it{it}/mix_prob_draw"]
    for phase in json.loads(str(arrays[f"it{it}/phases"])):
        if phase in RUNS_G:
            row = meta["phases_order"].index(phase)
            assert 1 <= draw[row] < num_ws, f"it{it} {phase}: cutoff draw {draw[row]}"
            mixes = np.float32(prob[row]) < np.float32(meta["style_mixing_prob"])
            assert cutoff[row] == (draw[row] if mixes else num_ws), f"it{it} {phase}: cutoff"
    return arrays[f"it{it}/mix_z"], cutoff


def test_mixing_file_mixes_and_does_not():
    """The mixing reference holds calls that mix and calls that do not, so a step that
    always or never mixes cannot replay it."""
    files = [f for f in FILES if read_meta(f).get("style_mixing_prob", 0) > 0]
    assert files, "no training-step reference with style mixing"
    for path in files:
        meta, arrays = load(path)
        mixed = []
        for it in range(meta["iterations"]):
            _, cutoff = mixing_draws(arrays, it, meta["num_ws"], meta)
            mixed += [bool(cutoff[meta["phases_order"].index(p)] < meta["num_ws"])
                      for p in json.loads(str(arrays[f"it{it}/phases"])) if p in RUNS_G]
        assert any(mixed) and not all(mixed), f"{path.name}: mixing {mixed}"


def test_step_draws_mix_as_officially():
    """What the replay cannot see: the project's own draws (step.draw_iteration) mix as the
    official run_G does, with probability style_mixing_prob at a cutoff uniform on
    1 .. num_ws - 1 (else num_ws), drawn afresh per phase, with latents of their own."""
    meta = next(m for m in map(read_meta, FILES) if m.get("style_mixing_prob", 0) > 0)
    nets, cfg = setup(meta)
    n, num_ws, prob = 4000, nets.G.num_ws, meta["style_mixing_prob"]
    table = jnp.zeros((1, meta["c_dim"]), jnp.float32)
    draws = jax.jit(jax.vmap(lambda k: step_lib.draw_iteration(k, nets, cfg, meta["batch"],
                                                               table)))(
        jax.random.split(jax.random.PRNGKey(29), n))
    cutoffs = []
    for name in ("g_main", "g_reg", "d_main"):
        d = getattr(draws, name)
        assert d.mix_z is not None and d.mix_z.shape == d.z.shape, name
        assert not np.allclose(d.mix_z, d.z), f"{name}: the mixing latents are z itself"
        cut = np.asarray(d.mix_cutoff).reshape(n)
        assert cut.min() >= 1 and cut.max() <= num_ws, f"{name}: cutoffs {np.unique(cut)}"
        mixes = cut < num_ws
        assert abs(mixes.mean() - prob) <= 5 * np.sqrt(prob * (1 - prob) / n), (
            f"{name}: mixes in {mixes.mean():.3f} of iterations, not {prob}")
        counts, expect = np.bincount(cut[mixes], minlength=num_ws)[1:], mixes.sum() / (num_ws - 1)
        assert np.all(np.abs(counts - expect) <= 5 * np.sqrt(expect)), f"{name}: {counts}"
        cutoffs.append(cut)
    assert np.mean(cutoffs[0] == cutoffs[1]) < 0.5, "the phases share one cutoff"


def draws_for(arrays, it, nets, meta):
    gen_z, gen_c = arrays[f"it{it}/gen_z"], arrays[f"it{it}/gen_c"]
    mix_z, mix_cutoff = mixing_draws(arrays, it, nets.G.num_ws, meta)
    res = meta["res"]

    def phase(row):
        return PhaseDraws(z=gen_z[row].astype(np.float32), c=gen_c[row].astype(np.float32),
                          mix_z=mix_z[row].astype(np.float32),
                          mix_cutoff=np.array([mix_cutoff[row]], np.int32),
                          noise_key=np.zeros((2,), np.uint32))

    if f"it{it}/pl_randn" in arrays:
        pl = nchw_to_nhwc(arrays[f"it{it}/pl_randn"]).astype(np.float32) / np.sqrt(res * res)
    else:  # no path length in this loop
        pl = np.zeros((meta["batch"] // 2, res, res, meta["img_channels"]), np.float32)
    return step_lib.IterationDraws(phase(0), phase(1), phase(2), pl,
                                   augment_draws(arrays, it))


def augment_draws(arrays, it):
    """The recorded pipe draws of iteration `it` by D evaluation (None: no ADA in the file)."""
    if f"it{it}/aug_calls" not in arrays:
        return None
    calls = json.loads(str(arrays[f"it{it}/aug_calls"]))
    slots = dict.fromkeys(step_lib.AugmentDraws._fields, np.zeros((2,), np.uint32))  # unused
    seen = {}
    for cc, call in enumerate(calls):
        n = seen[call["phase"]] = seen.get(call["phase"], -1) + 1
        draws = tuple(arrays[f"it{it}/aug/{cc:02d}/{i:03d}"].astype(np.float32)
                      for i in range(len(call["kinds"])))
        assert [list(x.shape) for x in draws] == call["shapes"], f"it{it} call {cc}"
        slots[AUG_SLOTS[call["phase"], n]] = draws
    return step_lib.AugmentDraws(**slots)


def check_plan(arrays, it, cfg, shape):
    """The pipe asks for exactly the draws the official code made, kind and shape."""
    plan = augment_lib.draw_plan(cfg.augment, shape)
    for cc, call in enumerate(json.loads(str(arrays[f"it{it}/aug_calls"]))):
        assert [k for k, _ in plan] == call["kinds"], f"it{it} call {cc}: kinds"
        assert [list(s) for _, s in plan] == call["shapes"], f"it{it} call {cc}: shapes"


CONSTANT_FILTERS = ("resample_filter", "up_filter", "down_filter")  # designs, not state


def state_dict(variables, module):
    if isinstance(module, stylegan3.Generator):
        return sg3_convert.variables_to_state_dict(variables, module)
    return torch_stylegan2.variables_to_state_dict(variables, module)


def to_official(tree, module):
    state = state_dict({"params": tree}, module)
    return {k: v for k, v in state.items() if not k.endswith(CONSTANT_FILTERS)}


def f32err(arrays, key):
    """The official float32 code's own error on a reference tensor (0: none recorded)."""
    return float(arrays.get(f"f32err/{key}", 0.0))


def float64_floor(arrays, refs) -> float:
    """The rule for float64-truth references (shared/reference/README.md): 1e-6 of the
    largest tensor of the phase (or network), since a near-cancelling sum's rounding scales
    with its summands; 0 for files compared with the official float32 run itself."""
    if not any(k.startswith("f32err/") for k in arrays):
        return 0.0
    return 1e-6 * max(float(np.max(np.abs(r))) for r in refs.values())


def check_grads(name, ours, ref_prefix, arrays):
    ref = subdict(arrays, ref_prefix)
    assert sorted(ours) == sorted(ref), f"{name}: tensors differ"
    floor = float64_floor(arrays, ref)
    for k, r in ref.items():
        err = np.max(np.abs(ours[k] - r))
        bound = 1e-3 * np.max(np.abs(r)) + 4 * f32err(arrays, ref_prefix + k) + floor + 1e-12
        assert err <= bound, f"{name} {k}: {err:.3e} > {bound:.3e}"


def check_after(name, ours, ref_prefix, arrays, init, lr):
    refs = subdict(arrays, ref_prefix)
    floor = float64_floor(arrays, refs)
    for k, r in refs.items():
        if k.endswith(CONSTANT_FILTERS):
            continue
        o, i = np.asarray(ours[k], np.float64), np.asarray(init[k], np.float64)
        r = np.asarray(r, np.float64)
        bound = (1e-2 * np.max(np.abs(r - i)) + 1e-6 * np.max(np.abs(r))
                 + 4 * f32err(arrays, ref_prefix + k) + floor)
        bad = np.abs(o - r) > bound
        # An Adam step turns a gradient that is zero up to rounding into a full step of
        # either sign: up to 0.1 % of a tensor may differ by up to two learning rates.
        assert bad.mean() <= 1e-3 and np.all(np.abs(o - r)[bad] <= 2 * lr + bound), (
            f"{name} {k}: {bad.sum()} of {bad.size} elements off, "
            f"max {np.max(np.abs(o - r)):.3e} > {bound:.3e}")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official_training_step(path):
    meta, arrays = load(path)
    nets, cfg = setup(meta)
    backend = Backend("shard_map", devices=jax.devices()[:1])
    state = backend.put_state(initial_state(nets, cfg, meta, arrays))
    init_g = state_dict(
        {"params": backend.host_state(state).G, "buffers": backend.host_state(state).G_buffers},
        nets.G)
    init_d = to_official(backend.host_state(state).D, nets.D)
    lr = max(cfg.g_lr, cfg.d_lr)
    programs = {}  # one compiled program per combination of lazy phases
    for it in range(meta["iterations"]):
        phases = json.loads(str(arrays[f"it{it}/phases"]))
        flags = ("Greg" in phases, "Dreg" in phases)
        assert flags == cfg.phases(it), f"iteration {it}: phases {phases}"
        nimg = meta["start_nimg"] + it * cfg.batch_size
        # -r: the blur acts (radius >= 1) exactly while the trainer's first stage lasts.
        blur = int(arrays.get(f"it{it}/blur_radius", 0)) > 0
        assert blur == (cfg.blur_end_nimg is not None and nimg < cfg.blur_end_nimg)
        if blur:
            assert float(cfg.blur_sigma(nimg)) == pytest.approx(
                float(arrays[f"it{it}/blur_sigma"]), rel=1e-12)
        flags = (*flags, blur)
        real = np.rint((nchw_to_nhwc(arrays[f"it{it}/real"]) + 1) * 127.5).astype(np.uint8)
        real_c = arrays[f"it{it}/real_c"].astype(np.float32)
        if cfg.augment is not None:
            check_plan(arrays, it, cfg, real.shape)
        batch = backend.put_batch((real, real_c, draws_for(arrays, it, nets, meta)))
        if flags not in programs:
            fn = functools.partial(step_lib.iteration, nets=nets, cfg=cfg, do_greg=flags[0],
                                   do_dreg=flags[1], blur=flags[2], return_grads=True)
            programs[flags] = backend.compile(
                fn, ("replicated", "sharded", "sharded", "sharded"),
                ("replicated", "replicated", "replicated"))
        state, stats, grads = programs[flags](state, *batch)
        for phase in phases:
            module = nets.G if phase.startswith("G") else nets.D
            check_grads(f"it{it} {phase}", to_official(grads[phase], module),
                        f"it{it}/grads/{phase}/{'G' if phase.startswith('G') else 'D'}/",
                        arrays)
        host = backend.host_state(state)
        ours_g = state_dict({"params": host.G, "buffers": host.G_buffers}, nets.G)
        ours_ema = state_dict({"params": host.G_ema, "buffers": host.G_ema_buffers}, nets.G)
        check_after(f"it{it} G", ours_g, f"it{it}/after/G/", arrays, init_g, lr)
        check_after(f"it{it} G_ema", ours_ema, f"it{it}/after/G_ema/", arrays, init_g, lr)
        check_after(f"it{it} D", to_official(host.D, nets.D), f"it{it}/after/D/", arrays,
                    init_d, lr)
        ref_pl = float(arrays.get(f"it{it}/after/pl_mean", 0.0))
        bound = 1e-3 * abs(ref_pl) + 1e-7 + 2 * f32err(arrays, f"it{it}/after/pl_mean")
        assert abs(float(host.pl_mean) - ref_pl) <= bound, "pl_mean"
        ref_beta = float(arrays[f"it{it}/ema_beta"])
        assert abs(float(stats["ema_beta"]) - ref_beta) <= 1e-6 * ref_beta, "ema_beta"
        if blur:
            assert float(stats["blur_sigma"]) == pytest.approx(
                float(arrays[f"it{it}/blur_sigma"]), rel=1e-6)
        ref_p = float(arrays.get(f"it{it}/after/augment_p", 0.0))
        bound = 1e-6 + 2 * f32err(arrays, f"it{it}/after/augment_p")
        assert abs(float(host.augment_p) - ref_p) <= bound, f"it{it}: p {host.augment_p}"
        if cfg.augment is not None:
            assert float(stats["augment"]) == float(host.augment_p)
