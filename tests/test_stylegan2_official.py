"""StyleGAN2 networks against tensors from NVIDIA's official stylegan2-ada-pytorch.

One test case per fixture file: tests/data/official/*.npz (see the README there) and,
when $SGJ_REFERENCE_DIR is set, every file in it whose meta.family is stylegan2_ada.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from official_fixtures import (
    DATA,
    assert_close,
    fixture_files,
    load,
    nchw_to_nhwc,
    official_networks,
    subdict,
)

FILES = fixture_files("stylegan2_ada", DATA / "official")


def test_fixtures_present():
    """Every bundled reference is found (a missing one would drop its case silently)."""
    bundled = [f.name for f in FILES if f.parent == DATA / "official"]
    assert bundled == ["stylegan2_ada_16_orig_orig_cond.npz", "stylegan2_ada_32_skip_resnet.npz"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    meta, arrays = load(path)
    G, D, g_vars, d_vars = official_networks(arrays, meta)
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
