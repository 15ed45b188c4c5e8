"""Import of NVIDIA's TensorFlow StyleGAN2 pickles (NVlabs/stylegan2, NVlabs/stylegan2-ada).

The pickles are written by tests/tf_stylegan2_pickle.py from the official PyTorch
reference networks (tests/data/official), rewritten into the official TF names and
layouts, so the imported networks must reproduce the reference tensors. The kernel
flip of TF's up-sampling convolution is checked against a NumPy transcription of TF's
`upsample_conv_2d`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tf_pickle as tp
import tf_stylegan2_pickle as t2
from flax.traverse_util import unflatten_dict
from official_fixtures import DATA, assert_close, load, nchw_to_nhwc, subdict

from stylegan_jax import cli
from stylegan_jax.convert import pickles, tf_stylegan2, torch_stylegan2
from stylegan_jax.convert.pickle_reader import load_tf_pickle
from stylegan_jax.models import stylegan, stylegan2
from stylegan_jax.nn import ops
from stylegan_jax.store.load import load_networks

UNCOND = DATA / "official" / "stylegan2_ada_32_skip_resnet.npz"
COND = DATA / "official" / "stylegan2_ada_16_orig_orig_cond.npz"


@pytest.fixture(scope="module")
def references():
    return {path.stem: load(path) for path in (UNCOND, COND)}


def write(references, stem, code_base, path, g_kwargs=None, d_kwargs=None, edit=None):
    meta, arrays = references[stem]
    G_state, D_state = subdict(arrays, "G/"), subdict(arrays, "D/")
    if edit:
        edit(G_state, D_state)
    tp.dump(t2.networks(meta, G_state, D_state, code_base, g_kwargs, d_kwargs), path)
    return path


@pytest.mark.parametrize("stem,code_base", [
    (UNCOND.stem, t2.ORIGINAL), (UNCOND.stem, t2.ADA), (COND.stem, t2.ADA),
], ids=["stylegan2-Gskip-Dresnet", "stylegan2ada-Gskip-Dresnet", "stylegan2ada-Gorig-Dorig-labels"])
def test_converted_pickle_reproduces_official_tensors(references, tmp_path, stem, code_base):
    meta, arrays = references[stem]
    pkl = write(references, stem, code_base, tmp_path / "net.pkl")
    dest = tmp_path / "converted"
    assert cli.main(["convert", str(pkl), str(dest)]) == 0
    nets = load_networks(dest)
    assert sorted(nets) == ["D", "G", "G_ema"]
    G, D = nets["G_ema"], nets["D"]
    assert type(G.module) is stylegan2.Generator and type(D.module) is stylegan2.Discriminator
    assert (G.module.architecture, D.module.architecture) == (
        meta["g_architecture"], meta["d_architecture"])
    assert G.module.c_dim == D.module.c_dim == meta["c_dim"]

    io = subdict(arrays, "io/")
    z, c = jnp.asarray(io["z"]), jnp.asarray(io["c"])
    g = G.module
    ws = g.apply(G.variables, z, c, meta["truncation_psi"], meta["truncation_cutoff"],
                 method=g.mapping_fn)
    assert_close("ws", ws, io["ws"], 1e-4)
    synthesis = jax.jit(lambda v, w, mode: g.apply(v, w, mode, method=g.synthesis_fn),
                        static_argnums=2)
    assert_close("img", synthesis(G.variables, jnp.asarray(io["ws"]), "const"),
                 nchw_to_nhwc(io["img"]), 1e-4)
    assert_close("img_notrunc_nonoise", synthesis(G.variables, jnp.asarray(io["ws_notrunc"]),
                 "none"), nchw_to_nhwc(io["img_notrunc_nonoise"]), 1e-4)
    logits = jax.jit(D.module.apply)
    for kind in ("real", "fake"):
        x = io["real"] if kind == "real" else io["img"]
        assert_close(f"logits_{kind}", logits(D.variables, jnp.asarray(nchw_to_nhwc(x)), c),
                     io[f"logits_{kind}"], 1e-4)
    # G (the trained copy) holds the same weights here, under its own name.
    for a, b in zip(jax.tree.leaves(nets["G"].variables), jax.tree.leaves(G.variables),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def tf_upsample_conv_2d(x: np.ndarray, w: np.ndarray, taps=(1, 3, 3, 1)) -> np.ndarray:
    """NumPy transcription of TF StyleGAN2's `upsample_conv_2d` (NCHW, w HWIO, factor 2):
    the kernel flipped, a stride-2 transposed conv, then the FIR filter (gain 4)."""
    kh = w.shape[0]
    k = np.outer(taps, taps).astype(np.float64)
    k = k / k.sum() * 4
    p = (k.shape[0] - 2) - (kh - 1)
    pad0, pad1 = (p + 1) // 2 + 1, p // 2 + 1
    n, _, h, wd = x.shape
    flipped = w[::-1, ::-1]
    y = np.zeros((n, w.shape[3], (h - 1) * 2 + kh, (wd - 1) * 2 + kh))
    for i in range(h):
        for j in range(wd):
            y[:, :, 2 * i:2 * i + kh, 2 * j:2 * j + kh] += np.einsum(
                "nq,abqc->ncab", x[:, :, i, j], flipped)
    y = np.pad(y, ((0, 0), (0, 0), (pad0, pad1), (pad0, pad1)))
    out = np.zeros((n, y.shape[1], y.shape[2] - 3, y.shape[3] - 3))
    for a in range(4):  # convolution with k (symmetric, so a correlation)
        for b in range(4):
            out += k[a, b] * y[:, :, a:a + out.shape[2], b:b + out.shape[3]]
    return out


@pytest.mark.parametrize("tf_name,kernel", [
    ("G_synthesis/8x8/Conv0_up/weight", 3), ("G_synthesis/8x8/Skip/weight", 1)])
def test_upsampling_convs_compute_as_tf_upsample_conv_2d(tf_name, kernel):
    """The 3x3 kernel must be flipped (for the 1x1 Skip the flip is the identity, and
    this checks the padding of a 1x1 up-sampling conv)."""
    G = stylegan2.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=3,
                            channel_base=32, channel_max=4, architecture="resnet")
    name, layout, shape = tf_stylegan2.tf_names(G)[tf_name]
    assert shape == (4, 4, kernel, kernel)
    rng = np.random.default_rng(0)
    w_tf = rng.standard_normal((kernel, kernel, 4, 4)).astype(np.float32)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    w_official = tf_stylegan2.tf_to_official(w_tf, layout)  # OIHW, as PyTorch's
    ours = ops.conv2d_resample(jnp.asarray(nchw_to_nhwc(x)),
                               jnp.asarray(w_official.transpose(2, 3, 1, 0)),
                               ops.setup_filter(), up=2, padding=kernel // 2)
    assert_close(name, ours, nchw_to_nhwc(tf_upsample_conv_2d(x, w_tf)), 1e-5)


def _random_state(module, seed):
    """Random variables of `module` (NumPy: nothing to compile) and their state dict."""
    shapes = torch_stylegan2.expected_shapes(module, torch_stylegan2.sample_inputs(module))
    rng = np.random.default_rng(seed)
    flat = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in shapes.items()}
    variables = unflatten_dict(flat)
    return variables, torch_stylegan2.variables_to_state_dict(variables, module)


def test_resnet_generator_and_skip_discriminator_import_exactly(tmp_path):
    """The layouts without reference tensors: G resnet (its flipped Skip), D skip (FromRGB
    at every resolution), with labels; the TF pickle imports to the very same weights."""
    meta = dict(z_dim=8, w_dim=8, c_dim=2, img_resolution=16, img_channels=3,
                mapping_layers=2, channel_base=64, channel_max=8, conv_clamp=None,
                g_architecture="resnet", d_architecture="skip", mbstd_group_size=2)
    G = stylegan2.Generator(z_dim=8, c_dim=2, w_dim=8, img_resolution=16, img_channels=3,
                            mapping_layers=2, channel_base=64, channel_max=8,
                            architecture="resnet")
    D = stylegan2.Discriminator(c_dim=2, img_resolution=16, img_channels=3, channel_base=64,
                                channel_max=8, architecture="skip", mbstd_group_size=2,
                                cmap_dim=8)
    g_vars, g_state = _random_state(G, 1)
    d_vars, d_state = _random_state(D, 2)
    path = tmp_path / "net.pkl"
    tp.dump(t2.networks(meta, g_state, d_state, t2.ADA), path)
    nets = pickles.networks_from_tf_pickle(path)
    for ours, module, variables in (("G_ema", G, g_vars), ("D", D, d_vars)):
        assert nets[ours].module == module
        got = jax.tree_util.tree_leaves_with_path(nets[ours].variables)
        want = dict(jax.tree_util.tree_leaves_with_path(variables))
        assert len(got) == len(want)
        for key, value in got:
            np.testing.assert_allclose(value, want[key], rtol=1e-6, atol=1e-6,
                                       err_msg=jax.tree_util.keystr(key))


# --- kwargs ----------------------------------------------------------------------


def test_official_defaults_and_kwargs_map_onto_the_networks(references, tmp_path):
    """fmap_base doubling, dlatent_avg_beta None, mbstd off, fused_modconv ignored."""
    path = write(references, UNCOND.stem, t2.ORIGINAL, tmp_path / "net.pkl",
                 g_kwargs=dict(dlatent_avg_beta=None, fused_modconv=False,
                               randomize_noise=False, mapping_lrmul=0.02))
    G, D, _ = load_tf_pickle(path)
    base = tf_stylegan2.code_base_of(G, D, "net")
    assert base is tf_stylegan2.STYLEGAN2
    g = tf_stylegan2.generator_kwargs(G, base)
    assert (g["channel_base"], g["channel_max"]) == (2048, 64)
    assert (g["w_avg_beta"], g["mapping_lr_multiplier"], g["conv_clamp"]) == (1.0, 0.02, None)
    # D_stylegan2 appends no minibatch-stddev channel for groups <= 1.
    D.state["static_kwargs"]["mbstd_group_size"] = 1
    assert tf_stylegan2.discriminator_kwargs(D, base)["mbstd_num_channels"] == 0
    # Defaults of the code base: NVlabs/stylegan2's config-f networks state only a few.
    D.state["static_kwargs"] = {"num_channels": 3, "resolution": 1024, "label_size": 0}
    d = tf_stylegan2.discriminator_kwargs(D, base)
    assert (d["channel_base"], d["channel_max"], d["architecture"], d["mbstd_group_size"],
            d["mbstd_num_channels"]) == (32768, 512, "resnet", 4, 1)


@pytest.mark.parametrize("code_base,g_kwargs,d_kwargs,message", [
    (t2.ORIGINAL, {"conv_clamp": 256}, {}, r"G: unexpected G_main kwarg conv_clamp=256"),
    (t2.ADA, {"mapping_nonlinearity": "relu"}, {},
     r"G_main kwarg mapping_nonlinearity='relu' is not supported \(only 'lrelu'\)"),
    (t2.ADA, {"resample_kernel": [1, 1]}, {}, r"resample_kernel=\[1, 1\] is not supported"),
    (t2.ADA, {"fmap_decay": 2.0}, {}, r"fmap_decay=2.0, .* has \[.*\] feature maps"),
    (t2.ADA, {}, {"use_spectral_norm": True}, r"D_main kwarg use_spectral_norm=True"),
    (t2.ADA, {}, {"fmap_max": 1024}, r"D_main with fmap_base=1024.* a StyleGAN2 network has"),
    (t2.ADA, {"mapping_fmaps": 32}, {}, r"mapping_fmaps=32 differs from dlatent_size=64"),
    (t2.ADA, {"synthesis_func": "G_synthesis_stylegan2"}, {},
     r"synthesis_func='G_synthesis_stylegan2' names another network"),
], ids=["original-has-no-conv_clamp", "activation", "resample_kernel", "fmap_decay",
        "spectral-norm", "D-dense-features", "mapping_fmaps", "synthesis_func"])
def test_unsupported_kwargs_are_named(references, tmp_path, code_base, g_kwargs, d_kwargs,
                                      message):
    path = write(references, UNCOND.stem, code_base, tmp_path / "net.pkl", g_kwargs, d_kwargs)
    with pytest.raises(tf_stylegan2.ConversionError, match=message):
        pickles.networks_from_tf_pickle(path)


def test_labels_of_the_original_code_and_progressive_configs_are_refused(references,
                                                                        tmp_path):
    path = write(references, UNCOND.stem, t2.ORIGINAL, tmp_path / "net.pkl")
    G, D, Gs = load_tf_pickle(path)
    for net in (G, *G.components.values(), D):
        net.state["static_kwargs"]["label_size"] = 3
    with pytest.raises(tf_stylegan2.ConversionError, match=r"LabelConcat"):
        tf_stylegan2.generator_kwargs(G, tf_stylegan2.STYLEGAN2)
    with pytest.raises(tf_stylegan2.ConversionError, match=r"D_stylegan2 projects scores"):
        tf_stylegan2.discriminator_kwargs(D, tf_stylegan2.STYLEGAN2)
    G, D, Gs = t2.networks(references[UNCOND.stem][0], {}, {}, t2.ORIGINAL)
    G.state["components"]["synthesis"].state["build_func_name"] = "G_synthesis_stylegan_revised"
    D.state["build_func_name"] = "D_stylegan"
    tp.dump((G, D, Gs), path)
    with pytest.raises(tf_stylegan2.ConversionError, match=r"progressively grown .* B-D"):
        pickles.networks_from_tf_pickle(path)


def test_missing_unexpected_and_misshaped_variables_are_named(references, tmp_path):
    meta, arrays = references[UNCOND.stem]
    G_state, D_state = subdict(arrays, "G/"), subdict(arrays, "D/")
    del G_state["synthesis.b8.conv1.noise_strength"]
    G_state["mapping.fc1.weight"] = np.zeros((64, 63), np.float32)
    G, D, Gs = t2.networks(meta, G_state, D_state, t2.ADA)
    D.state["variables"].append(("16x16/Conv0/weight_sn", np.zeros((1, 64), np.float32)))
    path = tmp_path / "net.pkl"
    tp.dump((G, D, Gs), path)
    with pytest.raises(tf_stylegan2.ConversionError) as e:
        pickles.networks_from_tf_pickle(path)
    text = str(e.value)
    assert "G: missing variable G_synthesis/8x8/Conv1/noise_strength ()" in text
    assert "G: G_mapping/Dense1/weight has shape (63, 64), expected (64, 64)" in text
    del G_state["mapping.fc1.weight"], G_state["mapping.fc1.bias"]
    tp.dump(t2.networks(meta, subdict(arrays, "G/"), D_state, t2.ADA), path)
    G, D, Gs = t2.networks(meta, subdict(arrays, "G/"), D_state, t2.ADA)
    D.state["variables"].append(("16x16/Conv0/weight_sn", np.zeros((1, 64), np.float32)))
    tp.dump((G, D, Gs), path)
    with pytest.raises(tf_stylegan2.ConversionError,
                       match=r"D: unexpected variable 16x16/Conv0/weight_sn \(1, 64\)"):
        pickles.networks_from_tf_pickle(path)


def test_config_a_of_the_stylegan2_code_imports_as_stylegan_v1(tmp_path):
    """NVlabs/stylegan2's config A is StyleGAN v1's G_style / D_basic (the same source),
    pickled with state version 4."""
    meta, arrays = load(DATA / "official_tf" / "stylegan_32_fused.npz")
    nets = tp.networks_for(meta, subdict(arrays, "G/"), subdict(arrays, "D/"))
    for net in (*nets, *nets[0].state["components"].values(),
                *nets[2].state["components"].values()):
        net.state["version"] = 4
    tp.dump(nets, tmp_path / "config-a.pkl")
    out = pickles.networks_from_tf_pickle(tmp_path / "config-a.pkl")
    assert type(out["G_ema"].module) is stylegan.Generator
    assert type(out["D"].module) is stylegan.Discriminator
