"""Accelerator options of the StyleGAN2 networks: rematerialisation and all-bfloat16.

`remat_resolution` must not change a number (outputs, first and second-order
gradients) and must shrink what the forward pass keeps for the backward pass (the
residuals of `jax.vjp`, a backend-independent measure; XLA:CPU drops jax.checkpoint's
optimization barriers and CSEs the recomputation away, so the compiled temp memory only
drops on GPU/TPU, where its test runs);
`num_bf16_res=-1` must put every convolution of G and D in bfloat16 and stay within a
stated distance of float32 on NVIDIA's reference networks (tests/data/official).
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from official_fixtures import (
    DATA,
    fixture_files,
    load,
    nchw_to_nhwc,
    official_networks,
    subdict,
)

from stylegan_jax.models import stylegan2
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stylegan2 import step as step_lib

SMALL = dict(z_dim=8, c_dim=0, w_dim=8, img_channels=3, channel_base=64, channel_max=8,
             mapping_layers=1, conv_clamp=256.0)


@pytest.mark.slow  # eager (see its docstring): ~30 s
def test_remat_changes_no_number():
    """Same outputs, parameter gradients, R1 and path-length gradients (second order)."""
    G = stylegan2.Generator(img_resolution=8, **SMALL)
    D = stylegan2.Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=64,
                                channel_max=8, mbstd_group_size=2)
    Gr, Dr = G.clone(remat_resolution=8), D.clone(remat_resolution=4)  # D: epilogue too
    key = jax.random.PRNGKey(0)
    z, c = jax.random.normal(key, (4, 8)), jnp.zeros((4, 0))
    gv = G.init({"params": key, "noise": key}, z, c)
    dv = D.init(key, jnp.zeros((4, 8, 8, 3)), c)
    assert jax.tree_util.tree_structure(Gr.init({"params": key, "noise": key}, z, c)) == \
        jax.tree_util.tree_structure(gv)
    noise = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))

    def losses_of(G, D):
        def run(gp, dp):
            img = G.apply({"params": gp, "buffers": gv["buffers"]}, z, c, noise_mode="random",
                          rngs={"noise": jax.random.PRNGKey(2)})
            logits = D.apply({"params": dp}, img, c)
            r1 = jax.grad(lambda x: jnp.sum(D.apply({"params": dp}, x, c)))(img)
            ws = G.apply({"params": gp, "buffers": gv["buffers"]}, z, c, method=G.mapping_fn)
            pl = jax.grad(lambda w: jnp.sum(G.apply({"params": gp, "buffers": gv["buffers"]},
                                                    w, "const", method=G.synthesis_fn)
                                            * noise))(ws)
            return jnp.sum(jax.nn.softplus(-logits)) + jnp.sum(r1**2) + jnp.sum(pl**2), img
        return jax.value_and_grad(run, argnums=(0, 1), has_aux=True)(
            gv["params"], dv["params"])

    (loss, img), grads = losses_of(G, D)
    (loss_r, img_r), grads_r = losses_of(Gr, Dr)
    np.testing.assert_allclose(img_r, img, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads_r),
                            jax.tree_util.tree_leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(b))),
                                   err_msg=jax.tree_util.keystr(path))


def train_networks(res=32, **model):
    base = dict(z_dim=16, w_dim=16, mapping_layers=1, channel_base=256, channel_max=16,
                g_architecture="skip", d_architecture="resnet", conv_clamp=256.0,
                num_bf16_res=0, mbstd_group_size=4, mbstd_num_channels=1, remat_resolution=0)
    return step_lib.build_networks(ml_collections.ConfigDict({**base, **model}), res, 3, 0)


def lowered_step(nets, batch, flags=(True, True)):
    """The training iteration for one device, lowered (and compiled by the caller)."""
    cfg = step_lib.StepConfig(batch_size=batch, g_reg_interval=2, d_reg_interval=2)
    backend = Backend("shard_map", devices=jax.devices()[:1])
    state = backend.put_state(step_lib.init_state(nets, cfg, seed=0))
    fn = functools.partial(step_lib.iteration_from_key, nets=nets, cfg=cfg, do_greg=flags[0],
                           do_dreg=flags[1])
    program = backend.compile(fn, ("replicated", "sharded", "sharded", "replicated"),
                              ("replicated", "replicated"), donate_state=False)
    res = nets.G.img_resolution
    real = backend.put_batch((np.zeros((batch, res, res, 3), np.uint8),
                              np.zeros((batch, 0), np.float32)))
    return program.lower(state, *real, backend.put_replicated(jnp.zeros((1, 0))))


def residual_bytes(remat: int) -> int:
    """Bytes the forward pass of a Gmain-like loss (G then D, 32x32, batch 8) keeps for
    the backward pass: the leaves of jax.vjp's pullback, by shape only (nothing runs)."""
    nets = train_networks(remat_resolution=remat)
    G, D = nets.G.clone(axis_name=None), nets.D
    key = jax.random.PRNGKey(0)
    z, c = jax.random.normal(key, (8, 16)), jnp.zeros((8, 0))
    gv = jax.eval_shape(lambda: G.init({"params": key, "noise": key}, z, c))
    dv = jax.eval_shape(lambda: D.init(key, jnp.zeros((8, 32, 32, 3)), c))

    def pullback(gv, dv):
        def loss(gp, dp):
            img = G.apply({"params": gp, "buffers": gv["buffers"]}, z, c, noise_mode="random",
                          rngs={"noise": key})
            return jnp.sum(jax.nn.softplus(-D.apply({"params": dp}, img, c)))
        return jax.vjp(loss, gv["params"], dv["params"])[1]

    pullback = jax.eval_shape(pullback, gv, dv)
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(pullback))


def test_remat_keeps_fewer_residuals():
    """Measured: 6.6 MB plain, 2.7 MB with the 32x32 blocks rematerialised, 1.1 MB from
    16x16 up (-83 %); everything at and above 8x8: 0.7 MB."""
    plain, top, two = residual_bytes(0), residual_bytes(32), residual_bytes(16)
    assert two < top < 0.5 * plain and two < 0.25 * plain, (plain, top, two)


@pytest.mark.skipif(jax.default_backend() == "cpu",
                    reason="XLA:CPU removes jax.checkpoint's optimization barriers and "
                           "CSEs the recomputation away: its compiled memory is unchanged")
def test_remat_lowers_the_compiled_training_steps_temporary_memory():
    """Gmain + Dmain at 32x32, batch 16, blocks >= 16 rematerialised (GPU/TPU)."""
    temp = {}
    for remat in (0, 16):
        compiled = lowered_step(train_networks(remat_resolution=remat), 16,
                                flags=(False, False)).compile()
        temp[remat] = compiled.memory_analysis().temp_size_in_bytes
    assert temp[16] < 0.8 * temp[0], temp


def conv_dtypes(hlo: str) -> list[str]:
    """Result element type of every convolution in HLO text."""
    return re.findall(r"= (\w+)\[[^\]]*\][^ ]* convolution\(", hlo)


@pytest.mark.parametrize("num_bf16_res", [1, -1])
def test_every_convolution_is_bfloat16_only_with_all_bf16(num_bf16_res):
    """The whole lowered training step (all four phases: first and second-order convs)."""
    nets = train_networks(res=16, num_bf16_res=num_bf16_res)
    hlo = lowered_step(nets, 4).as_text(dialect="hlo")
    dtypes = conv_dtypes(hlo)
    assert len(dtypes) > 50, len(dtypes)
    if num_bf16_res == -1:
        assert set(dtypes) == {"bf16"}, sorted(set(dtypes))
    else:  # the official rule keeps the low resolutions (at least 4x4) in float32
        assert {"f32", "bf16"} <= set(dtypes), sorted(set(dtypes))


# Measured (CPU) on the two fixtures, relative to the largest float32 value: image 0.85 %
# and 1.65 %, logits 0.66 % and 0.24 % (the official-style num_bf16_res=4: 1.05 / 1.30 %
# and 0.80 / 0.36 %). The bounds leave ~2-3x headroom for other backends' roundings.
IMG_BOUND, LOGIT_BOUND = 0.04, 0.02


@pytest.mark.parametrize("path", fixture_files("stylegan2_ada", DATA / "official"),
                         ids=lambda p: p.stem)
def test_all_bf16_stays_close_to_float32_on_the_reference_networks(path):
    meta, arrays = load(path)
    G, D, g_vars, d_vars = official_networks(arrays, meta)
    io = subdict(arrays, "io/")
    ws, c = jnp.asarray(io["ws"]), jnp.asarray(io["c"])
    real = jnp.asarray(nchw_to_nhwc(io["real"]))

    def run(G, D):
        img = G.apply(g_vars, ws, "const", method=G.synthesis_fn)
        return img, D.apply(d_vars, real, c)

    img32, logits32 = run(G, D)
    img16, logits16 = run(G.clone(num_bf16_res=-1), D.clone(num_bf16_res=-1))
    np.testing.assert_allclose(img32, nchw_to_nhwc(io["img"]), rtol=1e-3, atol=1e-3)
    assert img16.dtype == logits16.dtype == jnp.float32
    img_err = float(jnp.max(jnp.abs(img16 - img32)) / jnp.max(jnp.abs(img32)))
    logit_err = float(jnp.max(jnp.abs(logits16 - logits32)) / jnp.max(jnp.abs(logits32)))
    assert 0 < img_err < IMG_BOUND, img_err  # > 0: bfloat16 did run
    assert 0 < logit_err < LOGIT_BOUND, logit_err
