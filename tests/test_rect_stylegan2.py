"""W x H StyleGAN2 networks (`img_aspect`): shapes, independent references, gradients,
storage, the refused official export, and square networks unchanged.

References: a hand-written numpy b4 (modulated conv, demodulation, bias, lrelu, ToRGB) on
the 4x8 constant; the official NCHW flattening of the discriminator's last map written
out; the exact transposition symmetry between aspects (1, 2) and (2, 1); finite
differences; numbers recorded from the square code before `img_aspect` existed.
"""

from __future__ import annotations

import json
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from stylegan_jax import cli
from stylegan_jax.convert import torch_stylegan2
from stylegan_jax.generate import generate_images
from stylegan_jax.models import progan, registry, stylegan, stylegan2, stylegan3
from stylegan_jax.models.registry import Network, module_kwargs
from stylegan_jax.shapes import ImageShape, parse_size
from stylegan_jax.store.networks import load_network_dir, save_networks
from stylegan_jax.train import config as config_lib

Z = 8


def filled(module, *inputs):
    """The module's variables, each set to a fixed pattern (sin of its index, phase from
    its path): outputs depend on the forward computation only, not on an initialiser (and
    nothing runs to initialise)."""
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(lambda: module.init({"params": key, "noise": key}, *inputs))

    def leaf(path, a):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        phase = zlib.crc32(name.encode()) % 1000 / 100.0
        values = np.sin(np.arange(math.prod(a.shape)) * 0.7 + phase)
        return jnp.asarray(values.reshape(a.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def g_vars(G):
    return filled(G, jnp.zeros((1, G.z_dim)), jnp.zeros((1, G.c_dim)))


def d_vars(D):
    h, w = ImageShape.of(D.img_resolution, D.img_aspect).at(D.img_resolution)
    return filled(D, jnp.zeros((2, h, w, D.img_channels)), None)


def tiny_pair(resolution, aspect, channels=3, g_arch="skip", d_arch="resnet", conv_clamp=256.0):
    G = stylegan2.Generator(z_dim=Z, c_dim=0, w_dim=Z, img_resolution=resolution,
                            img_channels=channels, mapping_layers=1, channel_base=64,
                            channel_max=8, architecture=g_arch, conv_clamp=conv_clamp,
                            img_aspect=aspect)
    D = stylegan2.Discriminator(c_dim=0, img_resolution=resolution, img_channels=channels,
                                architecture=d_arch, channel_base=64, channel_max=8,
                                mbstd_group_size=2, img_aspect=aspect)
    return G, D, g_vars(G), d_vars(D)


def latents(n=2):
    return jnp.asarray(np.cos(np.arange(n * Z) * 0.37).reshape(n, Z), jnp.float32)


def generate(G, gv, z, noise_mode="const"):
    return jax.jit(lambda v, z: G.apply(v, z, jnp.zeros((z.shape[0], 0)),
                                        noise_mode=noise_mode))(gv, z)


def judge(D, dv, img):
    return jax.jit(lambda v, x: D.apply(v, x, None))(dv, img)


# (W x H, channels, G architecture, D architecture): every architecture of both nets once.
CASES = {"32x16": (3, "skip", "resnet"), "16x32": (1, "orig", "skip"),
         "16x32-rgba": (4, "resnet", "orig")}


@pytest.fixture(scope="module", params=list(CASES))
def rect(request):
    channels, g_arch, d_arch = CASES[request.param]
    shape = parse_size(request.param.split("-")[0])
    return (shape, channels, *tiny_pair(shape.resolution, shape.aspect, channels, g_arch, d_arch))


def test_generator_and_discriminator_shapes(rect):
    """G makes [N, H, W, C]; D judges it to [N, 1]; the constant, every noise buffer and the
    epilogue's dense layer have the stretched shapes."""
    shape, channels, G, D, gv, dv = rect
    ah, aw = shape.aspect
    img = generate(G, gv, latents(4))
    assert img.shape == (4, shape.height, shape.width, channels)
    assert bool(jnp.all(jnp.isfinite(img)))
    logits = judge(D, dv, img)
    assert logits.shape == (4, 1) and bool(jnp.all(jnp.isfinite(logits)))
    assert gv["params"]["synthesis"]["b4"]["const"].shape == (4 * ah, 4 * aw, 8)
    flat = traverse_util.flatten_dict(gv["buffers"]["synthesis"])  # (bRES, convK, name)
    noise = {k[0]: v.shape for k, v in flat.items() if k[-1] == "noise_const"}
    assert noise and all(s == (int(b[1:]) * ah, int(b[1:]) * aw) for b, s in noise.items())
    assert dv["params"]["b4"]["fc"]["weight"].shape == (8 * 4 * ah * 4 * aw, 8)
    with pytest.raises(ValueError, match=rf"img must have shape \(None, {shape.height}, "
                                         rf"{shape.width}, {channels}\)"):
        D.apply(dv, jnp.zeros((2, shape.width, shape.height, channels)), None)


def test_generator_b4_equals_hand_computation():
    """A 4x8 generator (R = 4, aspect (1, 2)), noise off: its image is the first block
    computed by hand in numpy on the 4x8 constant."""
    G = tiny_pair(8, (1, 2), channels=3, conv_clamp=None)[0].clone(img_resolution=4)
    gv = g_vars(G)
    ws = jnp.asarray(np.sin(np.arange(2 * 2 * Z) * 0.53).reshape(2, 2, Z), jnp.float32)
    got = G.apply(gv, ws, "none", method=G.synthesis_fn)

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), gv["params"]["synthesis"]["b4"])
    w = np.asarray(ws, np.float64)

    def affine(q, v):
        return v @ q["weight"] / math.sqrt(v.shape[1]) + q["bias"]

    const = p["const"]
    assert const.shape == (4, 8, 8)
    s = affine(p["conv1"]["affine"], w[:, 0])  # [N, C]
    k = p["conv1"]["weight"]  # [3, 3, C, O]
    xp = np.pad(const[None] * s[:, None, None, :], ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = sum(xp[:, i:i + 4, j:j + 8, :] @ k[i, j] for i in range(3) for j in range(3))
    demod = 1 / np.sqrt(np.einsum("ijco,nc->no", k ** 2, s ** 2) + 1e-8)
    y = y * demod[:, None, None, :] + p["conv1"]["bias"]
    y = np.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    s_rgb = affine(p["torgb"]["affine"], w[:, 1]) / math.sqrt(y.shape[-1])
    want = (y * s_rgb[:, None, None, :]) @ p["torgb"]["weight"][0, 0] + p["torgb"]["bias"]
    assert got.shape == (2, 4, 8, 3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_epilogue_dense_reads_the_official_nchw_flattening():
    """The dense layer of a 4x8 epilogue, written officially (weight [out, C*H*W] over the
    NCHW-flattened map), equals ours: our weight rows are the (h, w, c) permutation."""
    _, D, _, dv = tiny_pair(8, (1, 2))
    img = jnp.asarray(np.sin(np.arange(2 * 8 * 16 * 3) * 0.11).reshape(2, 8, 16, 3), jnp.float32)
    _, state = D.apply(dv, img, None, capture_intermediates=True, mutable=["intermediates"])
    x = np.asarray(state["intermediates"]["b4"]["conv"]["__call__"][0], np.float64)
    fc = np.asarray(state["intermediates"]["b4"]["fc"]["__call__"][0], np.float64)
    n, h, w, c = x.shape
    assert (h, w) == (4, 8)
    ours = np.asarray(dv["params"]["b4"]["fc"]["weight"], np.float64)  # [h*w*c, out]
    official = np.empty((ours.shape[1], c * h * w))  # [out, c*h*w], NCHW flattening
    for ci in range(c):
        for hi in range(h):
            for wi in range(w):
                official[:, (ci * h + hi) * w + wi] = ours[(hi * w + wi) * c + ci]
    flat = x.transpose(0, 3, 1, 2).reshape(n, -1)
    y = flat @ official.T / math.sqrt(c * h * w) + np.asarray(dv["params"]["b4"]["fc"]["bias"])
    want = np.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    np.testing.assert_allclose(fc, want, rtol=1e-5, atol=1e-5)


def transposed(variables, d_fc_hw=None):
    """Variables of the transposed network: kernels and maps with H and W swapped; the
    discriminator's dense rows permuted from (h, w, c) to (w, h, c) of an (h, w) map."""
    def leaf(path, a):
        names = [getattr(k, "key", None) for k in path]
        if names[-1] == "weight" and a.ndim == 4:
            return jnp.transpose(a, (1, 0, 2, 3))
        if names[-1] in ("const", "noise_const"):
            return jnp.swapaxes(a, 0, 1)
        if d_fc_hw is not None and names[-3:] == ["b4", "fc", "weight"]:
            h, w = d_fc_hw
            return a.reshape(h, w, -1, a.shape[-1]).transpose(1, 0, 2, 3).reshape(a.shape)
        return a

    return jax.tree_util.tree_map_with_path(leaf, variables)


def test_aspects_1_2_and_2_1_are_transposes():
    """Swapping H and W of every kernel, constant and noise map turns the 16x8 (W x H)
    networks into the 8x16 ones exactly: the image transposes, D's logits stay."""
    G12, D12, gv, dv = tiny_pair(8, (1, 2))
    G21, D21, _, _ = tiny_pair(8, (2, 1))
    z = latents(4)
    img = generate(G12, gv, z)
    img21 = generate(G21, transposed(gv), z)
    assert img.shape == (4, 8, 16, 3) and img21.shape == (4, 16, 8, 3)
    np.testing.assert_allclose(np.asarray(img21), np.asarray(img).transpose(0, 2, 1, 3),
                               rtol=1e-5, atol=1e-5)
    logits = judge(D12, dv, img)
    logits21 = judge(D21, transposed(dv, d_fc_hw=(4, 8)), jnp.swapaxes(img, 1, 2))
    np.testing.assert_allclose(np.asarray(logits21), np.asarray(logits), rtol=1e-5, atol=1e-5)


def _unit(tree):
    norm = math.sqrt(sum(float(jnp.sum(a * a)) for a in jax.tree_util.tree_leaves(tree)))
    return jax.tree_util.tree_map(lambda a: a / norm, tree)


def _dot(a, b):
    return sum(float(jnp.sum(x * y)) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _check_directional(f, x, grad, seed, eps=1e-2):
    """Central differences of f at x along (grad's direction + a random unit direction),
    against the gradient's inner product with it (a random direction alone moves f too
    little for float32 differences)."""
    rng = np.random.default_rng(seed)
    noise = _unit(jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), x))
    v = _unit(jax.tree_util.tree_map(lambda a, b: a + b, _unit(grad), noise))
    plus = f(jax.tree_util.tree_map(lambda p, d: p + eps * d, x, v))
    minus = f(jax.tree_util.tree_map(lambda p, d: p - eps * d, x, v))
    np.testing.assert_allclose(float(plus - minus) / (2 * eps), _dot(grad, v), rtol=5e-3)


def test_gradients_flow_and_match_finite_differences():
    """d D(G(z)) / d(G, D params) is finite everywhere and matches central differences;
    so does R1's gradient of D with respect to the images."""
    G, D, gv, dv = tiny_pair(8, (1, 2), conv_clamp=None)
    z = latents(2)
    buffers = gv["buffers"]

    def score(gp, dp):
        img = G.apply({"params": gp, "buffers": buffers}, z, jnp.zeros((2, 0)),
                      noise_mode="const")
        return jnp.sum(D.apply({"params": dp}, img, None))

    _, (g_grad, d_grad) = jax.jit(jax.value_and_grad(score, argnums=(0, 1)))(
        gv["params"], dv["params"])
    for grads in (g_grad, d_grad):
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    assert float(jnp.abs(g_grad["synthesis"]["b4"]["const"]).sum()) > 0
    f = jax.jit(score)
    _check_directional(lambda gp: f(gp, dv["params"]), gv["params"], g_grad, seed=0)
    _check_directional(lambda dp: f(gv["params"], dp), dv["params"], d_grad, seed=1)

    img = generate(G, gv, z)
    d_sum = jax.jit(lambda x: jnp.sum(D.apply(dv, x, None)))
    _check_directional(d_sum, img, jax.jit(jax.grad(d_sum))(img), seed=2)


def test_network_dir_round_trip(tmp_path):
    """networks.json keeps img_aspect (as a hashable tuple) and the outputs; a record
    written before the field existed loads as a square network."""
    G, D, gv, dv = tiny_pair(8, (1, 2))
    dest = save_networks(tmp_path / "nets", {"G": Network(G, gv), "D": Network(D, dv)})
    manifest = json.loads((dest / "networks.json").read_text())
    assert manifest["networks"]["G"]["kwargs"]["img_aspect"] == [1, 2]
    assert manifest["networks"]["D"]["kwargs"]["img_aspect"] == [1, 2]
    loaded = load_network_dir(dest)
    G2, D2 = loaded["G"].module, loaded["D"].module
    assert G2.img_aspect == (1, 2) and D2.img_aspect == (1, 2)
    assert hash(G2) == hash(G) and G2 == G and D2 == D
    z = latents(2)
    img = generate(G, gv, z)
    np.testing.assert_array_equal(np.asarray(generate(G2, loaded["G"].variables, z)),
                                  np.asarray(img))
    np.testing.assert_array_equal(np.asarray(judge(D2, loaded["D"].variables, img)),
                                  np.asarray(judge(D, dv, img)))
    assert registry.image_shape(G2) == ImageShape(8, 16)

    old = json.loads(json.dumps(module_kwargs(G.clone(img_aspect=(1, 1)))))
    assert "img_aspect" not in old
    assert registry.build_module("stylegan2.Generator", old).img_aspect == (1, 1)


def test_official_export_refuses_rectangles(tmp_path):
    """No official format holds a W x H network: one ValueError, nothing written."""
    G, D, gv, dv = tiny_pair(8, (2, 1))
    dest = tmp_path / "official"
    with pytest.raises(ValueError, match=r"'G_ema' is a 8x16 \(W x H\) network .*square "
                                         r"networks only"):
        torch_stylegan2.export_official({"G_ema": Network(G, gv), "D": Network(D, dv)}, dest)
    assert not dest.exists()
    Gs, _, gvs, _ = tiny_pair(8, (1, 1))
    torch_stylegan2.export_official({"G_ema": Network(Gs, gvs)}, tmp_path / "square")
    assert (tmp_path / "square" / "G_ema.npz").is_file()


# Recorded with the code before img_aspect existed (the same `filled` networks, R = 8,
# one channel, noise_mode 'const'): the first image, the second's sum, D's logits of
# [image 0, pattern, image 1, -pattern].
SQUARE_IMAGE_0 = [
    [1.02671, 1.72534, 1.97868, 1.83505, 1.37768, 0.90001, 0.59753, 0.24871],
    [0.84542, 1.76049, 2.40774, 2.67565, 2.46925, 1.89248, 1.26535, 0.62920],
    [0.40450, 0.98079, 1.34819, 1.80399, 1.97133, 1.75545, 1.25284, 0.60162],
    [0.27319, 0.46442, 0.62693, 0.96600, 1.45493, 1.71703, 1.54733, 0.88106],
    [0.49787, 0.51133, 0.57581, 0.92789, 1.55833, 2.12984, 2.38256, 1.84806],
    [1.00435, 0.83539, 0.80586, 1.01269, 1.37035, 1.90110, 2.32424, 2.06259],
    [1.56733, 1.41277, 0.96933, 0.67020, 0.58444, 0.74307, 1.09249, 1.37170],
    [1.51919, 1.41892, 0.79164, 0.28119, 0.06497, 0.03007, 0.23701, 0.58987],
]
SQUARE_IMAGE_1_SUM = 76.7761
SQUARE_LOGITS = [0.632676, 0.165985, 0.632683, 0.149221]
SQUARE_G_KWARGS = {
    "z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 1,
    "mapping_layers": 2, "mapping_lr_multiplier": 0.01, "w_avg_beta": 0.995,
    "channel_base": 64, "channel_max": 8, "architecture": "skip", "conv_clamp": 256.0,
    "num_bf16_res": 0, "use_noise": True, "fused_modconv": False, "axis_name": None,
    "remat_resolution": 0}
SQUARE_D_KWARGS = {
    "c_dim": 0, "img_resolution": 8, "img_channels": 1, "architecture": "resnet",
    "channel_base": 64, "channel_max": 8, "num_bf16_res": 0, "conv_clamp": None,
    "cmap_dim": None, "mbstd_group_size": 2, "mbstd_num_channels": 1, "mapping_layers": 8,
    "remat_resolution": 0}


def test_square_networks_unchanged():
    """Aspect (1, 1): the kwargs record and the outputs are those of the code before
    img_aspect (a square record stays readable by earlier versions)."""
    G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=1,
                            mapping_layers=2, channel_base=64, channel_max=8, conv_clamp=256.0)
    D = stylegan2.Discriminator(c_dim=0, img_resolution=8, img_channels=1, channel_base=64,
                                channel_max=8, mbstd_group_size=2)
    assert json.loads(json.dumps(module_kwargs(G))) == SQUARE_G_KWARGS
    assert json.loads(json.dumps(module_kwargs(D))) == SQUARE_D_KWARGS
    img = generate(G, g_vars(G), latents(2))
    np.testing.assert_allclose(np.asarray(img[0, :, :, 0]), SQUARE_IMAGE_0, atol=1e-4)
    np.testing.assert_allclose(float(jnp.sum(img[1])), SQUARE_IMAGE_1_SUM, rtol=1e-5)
    pattern = jnp.asarray(np.sin(np.arange(64) * 1.9).reshape(1, 8, 8, 1), jnp.float32)
    logits = judge(D, d_vars(D), jnp.concatenate([img[:1], pattern, img[1:], -pattern]))
    np.testing.assert_allclose(np.asarray(logits[:, 0]), SQUARE_LOGITS, atol=1e-5)


def _config(family, resolution, raw=False):
    """A family's quick config at `resolution`: as --config.data.resolution sets it
    (resolution and aspect), or with `raw` the 'WxH' text itself in data.resolution."""
    c = config_lib.load_config({"stylegan2": "quickstart", "stylegan3": "stylegan3_quick",
                                "progan": "progan_quick", "stylegan": "stylegan_quick"}[family])
    if raw:
        with c.ignore_type():
            c.data.resolution = resolution
    else:
        config_lib.apply_override(c, f"--config.data.resolution={resolution}")
    return c


@pytest.mark.parametrize("raw", [False, True], ids=["aspect", "text"])
def test_networks_from_config_sizes(raw):
    """W x H builds the stretched StyleGAN2 pair; an int still builds the square one; the
    other families build their W x H pairs from the same config fields."""
    G, D = registry.networks_from_config(_config("stylegan2", "64x16", raw), 0)
    assert (G.img_resolution, G.img_aspect, D.img_resolution, D.img_aspect) == (16, (1, 4),
                                                                                16, (1, 4))
    assert registry.image_shape(G) == registry.image_shape(D) == ImageShape(16, 64)
    assert registry.family_of(G).resolution(G) == 16
    G, D = registry.networks_from_config(_config("stylegan2", 32, raw), 0)
    assert (G.img_resolution, G.img_aspect, D.img_aspect) == (32, (1, 1), (1, 1))
    for family in ("stylegan3", "progan", "stylegan"):
        G, D = registry.networks_from_config(_config(family, "32x16", raw), 0)
        assert registry.image_shape(G) == registry.image_shape(D) == ImageShape(16, 32)
    if raw:
        with pytest.raises(ValueError, match=r"config.data.resolution: got '48x16'"):
            registry.networks_from_config(_config("stylegan2", "48x16", raw), 0)


def test_image_shape_of_every_family():
    """Every family's networks are square at their default img_aspect (1, 1); a random
    StyleGAN2 stretched by (2, 1) is 4 wide and 8 high."""
    square = [progan.Generator(num_channels=3, resolution=16),
              progan.Discriminator(num_channels=3, resolution=16),
              stylegan.Generator(num_channels=3, resolution=32),
              stylegan.Discriminator(num_channels=3, resolution=32),
              stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3)]
    for module in square:
        r = module.img_resolution
        assert registry.image_shape(module) == ImageShape(r, r)
    assert registry.family_of(square[-1]).image_shape(square[-1]) == ImageShape(64, 64)
    with pytest.raises(TypeError, match="no image shape for MappingNetwork"):
        registry.image_shape(stylegan2.MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=None))
    net = registry.random_generator(4, channels=4, aspect=(2, 1))
    assert registry.family_of(net.module).image_shape(net.module) == ImageShape(8, 4)
    img = generate(net.module, net.variables, jnp.zeros((1, net.module.z_dim)))
    assert img.shape == (1, 8, 4, 4)


@pytest.mark.parametrize("aspect", [(2, 2), (1, 3), (1,), (0, 1), "12", (1.0, 2.0)])
def test_bad_aspect(aspect):
    G = stylegan2.Generator(z_dim=Z, c_dim=0, w_dim=Z, img_resolution=8, img_channels=3,
                            img_aspect=aspect)
    with pytest.raises(ValueError, match=r"img_aspect must be \(height, width\) multiples"):
        G.init(jax.random.PRNGKey(0), jnp.zeros((1, Z)), jnp.zeros((1, 0)))
    D = stylegan2.Discriminator(c_dim=0, img_resolution=8, img_channels=3, img_aspect=aspect)
    with pytest.raises(ValueError, match=r"img_aspect must be \(height, width\) multiples"):
        D.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 3)), None)


def test_a_rectangular_rgba_generator_exports_as_it_generates(tmp_path):
    """`export --format stablehlo` of a 32x16 RGBA generator: images [N, 16, 32, 4] equal to
    `generate`'s for the same seed."""
    net = registry.random_generator(16, 4, seed=1, aspect=(1, 2))
    path = save_networks(tmp_path / "G", {"G_ema": net})
    assert cli.main(["export", "--network", str(path), "--format", "stablehlo", "--out",
                     str(tmp_path / "x")]) == 0
    exported = jax.export.deserialize((tmp_path / "x" / "generator.stablehlo").read_bytes())
    z = np.random.RandomState(7).randn(1, net.module.z_dim).astype(np.float32)
    out = np.asarray(exported.call(jnp.asarray(z), jnp.float32(1)))
    assert out.shape == (1, 16, 32, 4)
    np.testing.assert_array_equal(out[0], generate_images(net, [7])[0])
