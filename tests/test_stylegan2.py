"""StyleGAN2 network behaviours a user relies on (beyond equality with the official tensors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.models import stylegan2

SMALL = dict(z_dim=16, c_dim=0, w_dim=16, img_channels=3, mapping_layers=2,
             channel_base=256, channel_max=16, conv_clamp=256.0)
KEY = jax.random.PRNGKey(0)


def init(G, n=4):
    z = jax.random.normal(KEY, (n, G.z_dim))
    c = jnp.zeros((n, G.c_dim))
    variables = G.init({"params": KEY, "noise": KEY}, z, c)
    # Non-zero noise strengths and w_avg, so that the behaviours below are visible.
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.5 if "noise_strength" in jax.tree_util.keystr(p) else v,
        variables["params"])
    buffers = dict(variables["buffers"])
    buffers["mapping"] = {"w_avg": jax.random.normal(KEY, (G.w_dim,))}
    return {"params": params, "buffers": buffers}, z, c


@pytest.fixture(scope="module")
def generator():
    G = stylegan2.Generator(img_resolution=16, **SMALL)
    return (G, *init(G))


@pytest.mark.parametrize("arch", stylegan2.ARCHITECTURES)
@pytest.mark.parametrize("res,channels", [(4, 1), (8, 3)])
def test_generator_shapes(arch, res, channels):
    G = stylegan2.Generator(img_resolution=res, architecture=arch,
                            **{**SMALL, "img_channels": channels})
    v, z, c = init(G, n=2)
    img = G.apply(v, z, c, noise_mode="const")
    assert img.shape == (2, res, res, channels) and img.dtype == jnp.float32
    assert G.num_ws == 2 * int(np.log2(res)) - 2


@pytest.mark.parametrize("arch", stylegan2.ARCHITECTURES)
def test_discriminator_shapes(arch):
    D = stylegan2.Discriminator(c_dim=3, img_resolution=8, img_channels=1, architecture=arch,
                                channel_base=256, channel_max=16, mbstd_group_size=2)
    x = jnp.ones((4, 8, 8, 1))
    c = jax.nn.one_hot(jnp.arange(4) % 3, 3)
    v = D.init(KEY, x, c)
    assert D.apply(v, x, c).shape == (4, 1)


def test_noise_modes(generator):
    G, v, z, c = generator
    ws = G.apply(v, z, c, method=G.mapping_fn)
    synth = lambda mode, key=KEY: G.apply(v, ws, mode, method=G.synthesis_fn,  # noqa: E731
                                          rngs={"noise": key})
    const, none = synth("const"), synth("none")
    r1, r2, r1b = synth("random"), synth("random", jax.random.PRNGKey(1)), synth("random")
    assert not np.allclose(const, none)
    assert not np.allclose(r1, r2)
    np.testing.assert_array_equal(r1, r1b)  # reproducible from its key
    G0 = stylegan2.Generator(img_resolution=16, use_noise=False, **SMALL)
    v0 = G0.init({"params": KEY}, z, c)
    assert "buffers" not in v0 or "noise_const" not in str(v0["buffers"])


def test_truncation(generator):
    G, v, z, c = generator
    w_avg = v["buffers"]["mapping"]["w_avg"]
    ws = G.apply(v, z, c, method=G.mapping_fn)
    assert ws.shape == (4, G.num_ws, G.w_dim)
    np.testing.assert_allclose(ws, jnp.broadcast_to(ws[:, :1], ws.shape))  # broadcast
    ws0 = G.apply(v, z, c, 0.0, method=G.mapping_fn)
    np.testing.assert_allclose(ws0, jnp.broadcast_to(w_avg, ws.shape), rtol=1e-6)
    ws_cut = G.apply(v, z, c, 0.5, 2, method=G.mapping_fn)
    np.testing.assert_allclose(ws_cut[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg), rtol=1e-5)
    np.testing.assert_array_equal(ws_cut[:, 2:], ws[:, 2:])


def test_w_avg_tracking(generator):
    G, v, z, c = generator
    old = v["buffers"]["mapping"]["w_avg"]
    ws, updates = G.apply(v, z, c, update_w_avg=True, method=G.mapping_fn,
                          mutable=["buffers"])
    new = updates["buffers"]["mapping"]["w_avg"]
    expected = np.mean(ws[:, 0], axis=0) * (1 - 0.995) + 0.995 * old  # lerp(mean, old, beta)
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(updates["buffers"]["synthesis"]["b4"]["conv1"]["noise_const"],
                                  v["buffers"]["synthesis"]["b4"]["conv1"]["noise_const"])


def test_bfloat16_compute_stays_close(generator):
    G, v, z, c = generator
    G16 = stylegan2.Generator(img_resolution=16, num_bf16_res=2, **SMALL)
    a = G.apply(v, z, c, noise_mode="const")
    b = G16.apply(v, z, c, noise_mode="const")
    assert b.dtype == jnp.float32
    err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
    assert 0 < err < 0.05, err


def test_style_mixing_uses_per_layer_ws(generator):
    G, v, z, c = generator
    ws = G.apply(v, z, c, method=G.mapping_fn)
    mixed = ws.at[:, 3:].set(ws[::-1, 3:])  # coarse styles of i, fine styles of N-1-i
    a = G.apply(v, ws, "const", method=G.synthesis_fn)
    b = G.apply(v, mixed, "const", method=G.synthesis_fn)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("bad,match", [
    (dict(img_resolution=48), "power of two"),
    (dict(img_resolution=16, architecture="fancy"), "architecture must be one of"),
])
def test_bad_network_settings(bad, match):
    G = stylegan2.Generator(**{**SMALL, **bad})
    with pytest.raises(ValueError, match=match):
        G.init({"params": KEY}, jnp.zeros((1, 16)), jnp.zeros((1, 0)))
    with pytest.raises(ValueError, match="img_resolution must be >= 8"):
        D = stylegan2.Discriminator(c_dim=0, img_resolution=4, img_channels=3)
        D.init(KEY, jnp.zeros((4, 4, 4, 3)), None)
