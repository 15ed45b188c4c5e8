"""Checks of ProGAN / StyleGAN v1 networks against the official TF reference tensors.

Fixtures: tests/data/official_tf/*.npz (see the README there) and every file under
$SGJ_REFERENCE_DIR whose meta.family is `progan` or `stylegan`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from official_fixtures import DATA, assert_close, fixture_files, load, nchw_to_nhwc, subdict

from stylegan_jax.convert import tf_progressive

BUNDLED = DATA / "official_tf"
BUILD_FUNCS = {"progan": ("G_paper", "D_paper"), "stylegan": ("G_style", "D_basic")}


def files(family: str):
    return [p for p in fixture_files(family, BUNDLED)
            if _family(p) == family]


def _family(path) -> str:
    meta, _ = load(path)
    return meta.get("family")


def networks(meta: dict, arrays: dict):
    """(G, G variables, D, D variables) built from the meta's official kwargs."""
    g_func, d_func = BUILD_FUNCS[meta["family"]]
    G_cls, g_kwargs = tf_progressive.module_kwargs_from_tf(g_func, meta["G_kwargs"], "G")
    D_cls, d_kwargs = tf_progressive.module_kwargs_from_tf(d_func, meta["D_kwargs"], "D")
    G, D = G_cls(**g_kwargs), D_cls(**d_kwargs)
    g_vars = tf_progressive.variables_from_tf(subdict(arrays, "G/"), G, "G")
    d_vars = tf_progressive.variables_from_tf(subdict(arrays, "D/"), D, "D")
    return G, g_vars, D, d_vars


def generator_fn(G, meta: dict):
    """jit(variables, z, labels, lod) -> images, as the fixture's G was run (one compile)."""
    if meta["family"] == "progan":
        return jax.jit(lambda v, z, c, lod: G.apply(v, z, c, lod))
    psi, cutoff = meta.get("truncation_psi"), meta.get("truncation_cutoff")
    if psi is None or cutoff is None or cutoff <= 0:
        # G_style truncates only when both are given (our cutoff=None means all layers).
        psi, cutoff = 1.0, None
    return jax.jit(lambda v, z, c, lod: G.apply(v, z, c, lod, psi, cutoff, "const"))


def check_matches_official(path) -> None:
    """Images, D scores, R1 and WGAN-GP gradient norms at every lod of the file."""
    meta, arrays = load(path)
    G, g_vars, D, d_vars = networks(meta, arrays)
    io = subdict(arrays, "io/")
    z, labels = jnp.asarray(io["z"]), jnp.asarray(io["labels"])
    if meta["family"] == "stylegan":
        dlatents = G.apply(g_vars, z, labels, method=G.mapping_fn)
        assert_close("dlatents_notrunc", dlatents, io["dlatents_notrunc"], 1e-4)

    generate = generator_fn(G, meta)
    score = jax.jit(lambda v, x, c, lod: D.apply(v, x, c, lod))
    grad = jax.jit(jax.grad(lambda x, v, c, lod: jnp.sum(D.apply(v, x, c, lod))))

    def sq_norm(x, lod):
        return jnp.sum(jnp.square(grad(x, d_vars, labels, lod)), axis=(1, 2, 3))

    real = jnp.asarray(nchw_to_nhwc(io["real"]))
    mix = jnp.asarray(nchw_to_nhwc(io["mix"]))
    for i, lod in enumerate(np.asarray(io["lods"], np.float32)):
        at = f"lod {lod:g}"
        fake = jnp.asarray(nchw_to_nhwc(io[f"images_lod{i}"]))
        assert_close(f"images ({at})", generate(g_vars, z, labels, lod), fake, 1e-4)
        assert_close(f"scores_fake ({at})", score(d_vars, fake, labels, lod),
                     io[f"scores_fake_lod{i}"], 1e-4)
        assert_close(f"scores_real ({at})", score(d_vars, real, labels, lod),
                     io[f"scores_real_lod{i}"], 1e-4)
        assert_close(f"r1 ({at})", sq_norm(real, lod), io[f"r1_lod{i}"], 1e-3)
        mixed = real + (fake - real) * mix
        assert_close(f"gp_grad_sqnorm ({at})", sq_norm(mixed, lod),
                     io[f"gp_grad_sqnorm_lod{i}"], 1e-3)
