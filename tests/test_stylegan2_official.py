"""StyleGAN2 networks against tensors from NVIDIA's official stylegan2-ada-pytorch.

One test case per fixture file: tests/data/official/*.npz (see the README there) and,
when $SGJ_REFERENCE_DIR is set, every file in it whose meta.family is stylegan2_ada.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from official_fixtures import DATA, fixture_files, load, nchw_to_nhwc, subdict

from stylegan_jax.convert import official
from stylegan_jax.models import stylegan2

FILES = fixture_files("stylegan2_ada", DATA / "official")


def official_init_kwargs(meta: dict) -> tuple[dict, dict]:
    """The official constructor kwargs the fixture's meta describes."""
    g = dict(
        z_dim=meta["z_dim"], c_dim=meta["c_dim"], w_dim=meta["w_dim"],
        img_resolution=meta["img_resolution"], img_channels=meta["img_channels"],
        mapping_kwargs=dict(num_layers=meta["mapping_layers"]),
        synthesis_kwargs=dict(
            channel_base=meta["channel_base"], channel_max=meta["channel_max"],
            num_fp16_res=0, conv_clamp=meta["conv_clamp"],
            architecture=meta["g_architecture"],
        ),
    )
    d = dict(
        c_dim=meta["c_dim"], img_resolution=meta["img_resolution"],
        img_channels=meta["img_channels"], architecture=meta["d_architecture"],
        channel_base=meta["channel_base"], channel_max=meta["channel_max"],
        num_fp16_res=0, conv_clamp=meta["conv_clamp"],
        epilogue_kwargs=dict(
            mbstd_group_size=meta["mbstd_group_size"],
            mbstd_num_channels=meta.get("mbstd_num_channels", 1),
        ),
    )
    return g, d


def assert_close(name, ours, ref, rel):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    err = np.max(np.abs(ours - ref))
    bound = rel * np.max(np.abs(ref))
    assert err <= bound, f"{name}: max|ours-ref| = {err:.3e} > {bound:.3e}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    meta, arrays = load(path)
    g_init, d_init = official_init_kwargs(meta)
    G = stylegan2.Generator(**official.generator_kwargs(g_init))
    D = stylegan2.Discriminator(**official.discriminator_kwargs(d_init))
    g_vars = official.state_dict_to_variables(subdict(arrays, "G/"), G, "G")
    d_vars = official.state_dict_to_variables(subdict(arrays, "D/"), D, "D")
    io = subdict(arrays, "io/")
    z, c = jnp.asarray(io["z"]), jnp.asarray(io["c"])
    psi, cutoff = meta["truncation_psi"], meta["truncation_cutoff"]

    ws = G.apply(g_vars, z, c, psi, cutoff, method=G.mapping_fn)
    assert_close("ws", ws, io["ws"], 1e-4)
    img = G.apply(g_vars, jnp.asarray(io["ws"]), "const", method=G.synthesis_fn)
    assert_close("img", img, nchw_to_nhwc(io["img"]), 1e-4)
    ws_nt = jnp.asarray(io["ws_notrunc"])
    img_nn = G.apply(g_vars, ws_nt, "none", method=G.synthesis_fn)
    assert_close("img_notrunc_nonoise", img_nn, nchw_to_nhwc(io["img_notrunc_nonoise"]), 1e-4)

    real = jnp.asarray(nchw_to_nhwc(io["real"]))
    fake = jnp.asarray(nchw_to_nhwc(io["img"]))
    assert_close("logits_fake", D.apply(d_vars, fake, c), io["logits_fake"], 1e-4)
    assert_close("logits_real", D.apply(d_vars, real, c), io["logits_real"], 1e-4)

    r1_grad = jax.grad(lambda x: jnp.sum(D.apply(d_vars, x, c)))(real)
    r1 = jnp.sum(jnp.square(r1_grad), axis=(1, 2, 3))
    assert_close("r1_penalty", r1, io["r1_penalty"], 1e-3)

    noise = jnp.asarray(nchw_to_nhwc(io["pl_noise"]))
    pl_grad = jax.grad(
        lambda w: jnp.sum(G.apply(g_vars, w, "const", method=G.synthesis_fn) * noise)
    )(ws_nt)
    pl = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(pl_grad), axis=2), axis=1))
    assert_close("pl_lengths", pl, io["pl_lengths"], 1e-4)
