"""An independent anchor for the TF StyleGAN2 import: TensorFlow runs NVIDIA's maths.

test_tf_stylegan2_import.py writes its pickles with a helper that re-creates TF's layout
and checks the up-sampling kernel flip against a NumPy transcription of TF's code: a
shared misreading of that code would pass both. Here tests/tf_stylegan2_ops.py re-expresses
NVIDIA's TF networks (NVlabs/stylegan2 `G_mapping`, `G_synthesis_stylegan2`, `D_stylegan2`
with `modulated_conv2d_layer`, `upsample_conv_2d`, `conv_downsample_2d`, `_upfirdn_2d_ref`)
op for op with TensorFlow 2; running them creates the variables (names and shapes as
NVIDIA's code creates them, random values), which are pickled as NVIDIA's pickles hold them
and imported by the project's own path (`pickles.networks_from_tf_pickle`). The imported
networks must compute what TensorFlow computed.

Tolerance: max |ours - TF| <= 1e-5 * max |TF| for each output. Both sides compute in
float32 with different convolution algorithms and summation orders (TF's oneDNN / Eigen
kernels vs XLA), which leaves at most ~3.5e-7 of max |TF| here (`pytest -s` prints each
error), ~30x below the bound; each mistake this anchors (a kernel flip, the style bias's
+ 1, a noise buffer in the wrong layer, a swapped axis) changes the outputs by O(1).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tf_pickle as tp

tf = pytest.importorskip("tensorflow")
import tf_stylegan2_ops as tfo  # noqa: E402 (after TensorFlow's import check)

from stylegan_jax.convert import pickles  # noqa: E402
from stylegan_jax.models import stylegan2  # noqa: E402

TOL = 1e-5
N = 2  # minibatch: the fused modulated conv then has 2 groups
PSI, CUTOFF = 0.6, 3
# A tiny network: channels 8 at 4x4 and 4 at 8x8 (the up-sampling conv maps 8 -> 4, so
# its in / out axes cannot be confused), w_dim 6, z 5.
G_KW = dict(latent_size=5, label_size=0, dlatent_size=6, num_channels=3, resolution=8,
            mapping_layers=2, mapping_fmaps=6, fmap_base=16, fmap_max=8, architecture="skip")
D_KW = dict(num_channels=3, resolution=8, label_size=0, fmap_base=16, fmap_max=8,
            architecture="resnet", mbstd_group_size=4)
NUM_WS = 2 * 3 - 2
# NVIDIA's scope of each noise layer -> our layer (the structure both networks share).
OUR_LAYER = {"4x4/Conv": ("b4", "conv1"), "8x8/Conv0_up": ("b8", "conv0"),
             "8x8/Conv1": ("b8", "conv1")}


def _synthesis(values, ws, fused_modconv):
    v = tfo.Vars(values, seed=2)
    img, layers = tfo.G_synthesis_stylegan2(
        v, tf.constant(ws), G_KW["dlatent_size"], G_KW["num_channels"], G_KW["resolution"],
        G_KW["fmap_base"], G_KW["fmap_max"], G_KW["architecture"], fused_modconv=fused_modconv)
    return v, img.numpy(), {k: (name, x.numpy()) for k, (name, x) in layers.items()}


@pytest.fixture(scope="module")
def anchor(tmp_path_factory):
    """TF's outputs, its variables, and the networks the project imports from them."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((N, G_KW["latent_size"])).astype(np.float32)
    images = rng.standard_normal((N, 3, 8, 8)).astype(np.float32)

    vm = tfo.Vars(seed=1)
    dlatents = tfo.G_mapping(vm, tf.constant(z), G_KW["dlatent_size"], G_KW["mapping_layers"],
                             G_KW["mapping_fmaps"], NUM_WS)
    dlatent_avg = rng.standard_normal(G_KW["dlatent_size"]).astype(np.float32)
    ws = tfo.truncation(dlatents, tf.constant(dlatent_avg), PSI, CUTOFF).numpy()

    # Create the synthesis variables (one run), then give each noise buffer its own
    # offset so that a buffer read by the wrong layer shows in that layer's output, and
    # each noise layer a strength that shows it.
    v, _, _ = _synthesis(None, ws, True)
    synthesis_vars = dict(v.values)
    strengths = sorted(k for k in synthesis_vars if k.endswith("/noise_strength"))
    for i, name in enumerate(strengths):
        synthesis_vars[name] = np.float32((-1) ** i * (0.5 + 0.25 * i))
    for name in synthesis_vars:
        m = re.fullmatch(r"noise(\d+)", name)
        if m:
            synthesis_vars[name] = synthesis_vars[name] * 0.5 + (int(m[1]) + 1)
    runs = {fused: _synthesis(synthesis_vars, ws, fused) for fused in (True, False)}
    assert set(runs[True][0].values) == set(synthesis_vars)  # nothing created on re-run

    vd = tfo.Vars(seed=3)
    scores = tfo.D_stylegan2(vd, tf.constant(images), **{k: D_KW[k] for k in (
        "resolution", "fmap_base", "fmap_max", "architecture", "mbstd_group_size")}).numpy()

    # The pickle: NVlabs/stylegan2's (state version 4) G_main with its components, D.
    def make_g(name):
        synthesis = tp.network("G_synthesis", "G_synthesis_stylegan2", G_KW, synthesis_vars,
                               version=4, lod=False)
        mapping = tp.network("G_mapping", "G_mapping", dict(G_KW, dlatent_broadcast=NUM_WS),
                             vm.values, version=4, lod=False)
        return tp.network(name, "G_main", dict(G_KW, truncation_psi=0.5, fused_modconv=True),
                          {"dlatent_avg": dlatent_avg}, version=4, lod=True,
                          components={"synthesis": synthesis, "mapping": mapping})

    D = tp.network("D", "D_stylegan2", D_KW, vd.values, version=4, lod=False)
    path = tmp_path_factory.mktemp("tf_anchor") / "net.pkl"
    tp.dump((make_g("G"), D, make_g("Gs")), path)
    nets = pickles.networks_from_tf_pickle(path)
    return dict(z=z, images=images, ws=ws, runs=runs, synthesis_vars=synthesis_vars,
                scores=scores, G=nets["G_ema"], D=nets["D"])


def _close(name, ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    err, scale = np.max(np.abs(ours - ref)), np.max(np.abs(ref))
    print(f"{name}: max|ours - TF| = {err:.2e} (max|TF| = {scale:.2e})")
    assert err <= TOL * scale, f"{name}: max|ours - TF| = {err:.3e} > {TOL * scale:.3e}"


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def test_mapping_and_truncation_match_tf(anchor):
    G = anchor["G"]
    ws = G.module.apply(G.variables, jnp.asarray(anchor["z"]), jnp.zeros((N, 0)), PSI, CUTOFF,
                        method=G.module.mapping_fn)
    _close("ws", ws, anchor["ws"])


def test_synthesis_matches_tf_layer_by_layer(anchor):
    """Up-sampling conv (TF flips its kernel), style bias + 1, demodulation, noise, bias +
    lrelu, ToRGB and the skip image's FIR upsampling; against both TF forms of the
    modulated conv (fused: the minibatch as groups of one conv; not fused)."""
    G = anchor["G"]
    is_layer = lambda mdl, method: (isinstance(mdl, stylegan2.SynthesisLayer)  # noqa: E731
                                    and method == "__call__")
    img, state = jax.jit(lambda v, ws: G.module.apply(
        v, ws, "const", method=G.module.synthesis_fn, capture_intermediates=is_layer,
        mutable=["intermediates"]))(G.variables, jnp.asarray(anchor["ws"]))
    ours = state["intermediates"]["synthesis"]
    for fused, (_, tf_img, tf_layers) in anchor["runs"].items():
        assert sorted(tf_layers) == sorted(OUR_LAYER)
        for scope, (_, x) in tf_layers.items():
            b, layer = OUR_LAYER[scope]
            _close(f"{scope} (fused_modconv={fused})", ours[b][layer]["__call__"][0], _nhwc(x))
        _close(f"img (fused_modconv={fused})", img, _nhwc(tf_img))


def test_each_layer_reads_the_noise_buffer_tf_reads(anchor):
    """TF's layer i adds `noise<i>`: each imported layer holds that buffer (each buffer has
    its own offset, so the per-layer comparison above sees a wrong one)."""
    G, tf_vars = anchor["G"], anchor["synthesis_vars"]
    buffers = G.variables["buffers"]["synthesis"]
    noise = {name: value for name, value in tf_vars.items() if name.startswith("noise")}
    assert sorted(noise) == ["noise0", "noise1", "noise2"]
    _, _, tf_layers = anchor["runs"][False]
    read = {}
    for scope, (noise_name, _) in tf_layers.items():
        b, layer = OUR_LAYER[scope]
        held = np.asarray(buffers[b][layer]["noise_const"])
        same = [name for name, value in noise.items()
                if value.shape[2:] == held.shape and np.array_equal(value[0, 0], held)]
        read[scope] = (noise_name, same)
    assert read == {"4x4/Conv": ("noise0", ["noise0"]), "8x8/Conv0_up": ("noise1", ["noise1"]),
                    "8x8/Conv1": ("noise2", ["noise2"])}


def test_discriminator_matches_tf(anchor):
    """conv_downsample_2d (FIR then strided conv, no kernel flip) for the 3x3 and the 1x1
    skip, minibatch stddev, the NCHW flatten before Dense0."""
    D = anchor["D"]
    logits = jax.jit(D.module.apply)(D.variables, jnp.asarray(_nhwc(anchor["images"])), None)
    _close("scores", logits, anchor["scores"])
