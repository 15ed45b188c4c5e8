"""StyleGAN3 generator against tensors from NVIDIA's official networks_stylegan3.py.

One test case per fixture file: tests/data/reference/stylegan3/*.npz (see the README
there) and, when $SGJ_REFERENCE_DIR is set, every file in it whose meta.family is
stylegan3. The references are the official float64 results; 1e-4 * max|ref| holds for
everything (the filtered non-linearity included), see the README for the official
float32 run's own distance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from official_fixtures import DATA, assert_close, fixture_files, load, nchw_to_nhwc, subdict

from stylegan_jax.convert import torch_stylegan3 as convert
from stylegan_jax.convert.torch_kwargs import ConversionError
from stylegan_jax.models import stylegan3

FILES = fixture_files("stylegan3", DATA / "reference" / "stylegan3")
REL = 1e-4


def test_fixtures_present():
    """Every bundled reference is found (a missing one would drop its case silently)."""
    bundled = [f.name for f in FILES if f.parent == DATA / "reference" / "stylegan3"]
    assert bundled == ["stylegan3_r_32_cond.npz", "stylegan3_t_32.npz"]


def _meta(meta: dict, *names, default=None):
    """The first of `names` present in meta (fixture writers spell some fields two ways)."""
    for n in names:
        if n in meta:
            return meta[n]
    if default is not None:
        return default
    raise KeyError(f"fixture meta lacks {names}")


def official_kwargs(meta: dict) -> dict:
    """The official `Generator(...)` kwargs the fixture's meta describes."""
    kw = dict(
        z_dim=meta["z_dim"], c_dim=meta["c_dim"], w_dim=meta["w_dim"],
        img_resolution=_meta(meta, "img_resolution", "res"),
        img_channels=_meta(meta, "img_channels", "channels"),
        mapping_kwargs=dict(num_layers=_meta(meta, "mapping_layers", default=2)),
        channel_base=_meta(meta, "channel_base", "cbase"),
        channel_max=_meta(meta, "channel_max", "cmax"),
        num_fp16_res=meta.get("num_fp16_res", 0), conv_clamp=meta.get("conv_clamp", 256),
        conv_kernel=meta["conv_kernel"], use_radial_filters=meta["use_radial_filters"],
        magnitude_ema_beta=meta.get("magnitude_ema_beta", 0.999),
    )
    for k in ("num_layers", "num_critical", "margin_size", "output_scale"):
        if k in meta:
            kw[k] = meta[k]
    return kw


def official_generator(path):
    meta, arrays = load(path)
    G = stylegan3.Generator(**convert.generator_kwargs(official_kwargs(meta)))
    variables = convert.state_dict_to_variables(subdict(arrays, "G/"), G, path.name)
    return meta, arrays, G, variables


def _run_all(G):
    """Synthesis (truncated and not), the noise-weighted gradient wrt ws and the
    buffers after one update_emas pass: one compiled program per network."""

    def synth(v, ws, update_emas=False):
        return G.apply(v, ws, "const", update_emas, method=G.synthesis_fn,
                       mutable=["buffers"] if update_emas else False)

    @jax.jit
    def run(v, ws, ws_nt, noise):
        img_nt, pullback = jax.vjp(lambda w: synth(v, w), ws_nt)
        (grad,) = pullback(noise)
        _, updated = synth(v, ws_nt, update_emas=True)
        return synth(v, ws), img_nt, grad, updated["buffers"]

    return run


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    meta, arrays, G, v = official_generator(path)
    assert [s.name for s in convert.layer_specs_of(G)[1]] == meta["layer_names"]
    io = subdict(arrays, "io/")
    ws = G.apply(v, jnp.asarray(io["z"]), jnp.asarray(io["c"]), meta["psi"], meta["cutoff"],
                 method=G.mapping_fn)
    assert_close("ws", ws, io["ws"], REL)

    noise = jnp.asarray(nchw_to_nhwc(io["noise"]))
    img, img_nt, grad, buffers = _run_all(G)(v, jnp.asarray(io["ws"]),
                                             jnp.asarray(io["ws_notrunc"]), noise)
    assert_close("img", img, nchw_to_nhwc(io["img"]), REL)
    assert_close("img_notrunc", img_nt, nchw_to_nhwc(io["img_notrunc"]), REL)
    assert_close("grad_ws", grad, io["grad_ws"], REL)
    after = subdict(arrays, "after_update_emas/G/synthesis.")
    assert after, f"{path.name}: no after_update_emas buffers"
    for key, ref in after.items():
        layer = key.rsplit(".", 1)[0]
        ours = buffers["synthesis"][layer]["magnitude_ema"]
        assert_close(f"{layer}.magnitude_ema", ours, ref, REL)
    # w_avg is not touched by a synthesis pass.
    np.testing.assert_array_equal(buffers["mapping"]["w_avg"], arrays["G/mapping.w_avg"])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_state_dict_round_trip(path):
    """Export gives back the official state dict: every tensor bitwise, the designed
    filters within float32 rounding of the official design."""
    _, arrays, G, v = official_generator(path)
    official = subdict(arrays, "G/")
    back = convert.variables_to_state_dict(v, G)
    assert sorted(back) == sorted(official)
    for name, ref in official.items():
        if name.endswith("_filter"):
            np.testing.assert_allclose(back[name], ref, rtol=0, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(back[name], ref, err_msg=name)


def test_conversion_refuses_other_filters_and_names_the_tensor():
    path = FILES[0]
    meta, arrays = load(path)
    G = stylegan3.Generator(**convert.generator_kwargs(official_kwargs(meta)))
    state = subdict(arrays, "G/")
    name = next(k for k in state if k.endswith("down_filter"))
    bad = dict(state, **{name: state[name] * 1.01})
    with pytest.raises(ConversionError, match=name.replace(".", r"\.") + ".*differs"):
        convert.state_dict_to_variables(bad, G)
    layer = meta["layer_names"][0]
    missing = {k: v for k, v in state.items() if k != f"synthesis.{layer}.bias"}
    with pytest.raises(ConversionError, match=f"missing tensor synthesis.{layer}.bias"):
        convert.state_dict_to_variables(missing, G)


def test_unsupported_official_kwargs_are_named():
    kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)
    with pytest.raises(ConversionError, match="filter_size=4"):
        convert.generator_kwargs(dict(kw, filter_size=4))
    with pytest.raises(ConversionError, match="unexpected StyleGAN3 Generator kwargs"):
        convert.generator_kwargs(dict(kw, architecture="skip"))


def test_official_pickle_converts(tmp_path):
    """A pickle in the official layout (G and G_ema records of networks_stylegan3's
    Generator) is recognised and gives the variables of the reference state dict."""
    from official_pickle import Record, dump, records_from_state_dict

    from stylegan_jax.convert.pickle_reader import load_official_pickle

    path = FILES[0]
    meta, arrays, G, variables = official_generator(path)
    state = subdict(arrays, "G/")
    rec = records_from_state_dict("Generator", official_kwargs(meta), state)
    rec.module_src = "class SynthesisInput(torch.nn.Module): pass\n"
    dump({"G": rec, "G_ema": rec, "D": None, "training_set_kwargs": {}}, tmp_path / "n.pkl")
    assert isinstance(rec, Record)
    data = load_official_pickle(tmp_path / "n.pkl")
    assert convert.is_alias_free(data["G_ema"])
    net = convert.network_from_record(data["G_ema"], "n.pkl:G_ema")
    assert net.module == G
    flat = lambda v: jax.tree_util.tree_leaves_with_path(v)  # noqa: E731
    for (ka, a), (kb, b) in zip(flat(net.variables), flat(variables), strict=True):
        assert ka == kb
        np.testing.assert_array_equal(a, b, err_msg=str(ka))


def test_fresh_generator_starts_as_the_official_one():
    """Initial values the official constructor gives (identity input transform, unit
    magnitude EMAs, frequencies inside the first layer's band), and update_emas moves
    both w_avg and every magnitude_ema."""
    G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                            channel_base=64, channel_max=8, num_layers=4, num_critical=1)
    z = jax.random.normal(jax.random.key(1), (2, 8))
    v = jax.jit(G.init)(jax.random.key(0), z, None)
    inp = v["params"]["synthesis"]["input"]
    np.testing.assert_array_equal(inp["affine"]["weight"], 0)
    np.testing.assert_array_equal(inp["affine"]["bias"], [1, 0, 0, 0])
    buf = v["buffers"]["synthesis"]
    np.testing.assert_array_equal(buf["input"]["transform"], np.eye(3))
    assert np.all(np.linalg.norm(buf["input"]["freqs"], axis=1) <= 2)  # first_cutoff
    assert np.all(np.abs(buf["input"]["phases"]) <= 0.5)
    layers = [k for k in buf if k != "input"]
    assert len(layers) == 5 and all(float(buf[k]["magnitude_ema"]) == 1 for k in layers)

    _, new = jax.jit(lambda v, z: G.apply(v, z, None, update_emas=True, mutable=["buffers"]))(
        v, z)
    assert all(float(new["buffers"]["synthesis"][k]["magnitude_ema"]) != 1 for k in layers)
    assert not np.allclose(new["buffers"]["mapping"]["w_avg"], 0)
    with pytest.raises(ValueError, match=r"ws must have shape \(N, 6, 8\)"):
        G.apply(v, jnp.zeros((1, 5, 8)), method=G.synthesis_fn)


def test_bfloat16_convolutions_stay_near_the_official_image():
    """num_bf16_res=-1: every modulated conv runs in bfloat16 (the filters stay float32);
    the image stays within a few percent of the official float64 one."""
    meta, arrays, G, v = official_generator(FILES[0])
    G16 = G.clone(num_bf16_res=-1)
    ws = jnp.asarray(arrays["io/ws"])
    fn = jax.jit(lambda v, w: G16.apply(v, w, method=G16.synthesis_fn))
    hlo = fn.lower(v, ws).as_text()
    convs = [line for line in hlo.splitlines() if "convolution" in line]
    f32 = [line for line in convs if "bf16" not in line]
    # The one float32 convolution is the input layer's 1x1 (Fourier features times a
    # matrix), float32 in the official code too.
    assert len(convs) > 1 and len(f32) == 1 and "tensor<1x1x" in f32[0], f32
    img = fn(v, ws)
    assert img.dtype == jnp.float32
    assert_close("img (bf16 convs)", img, nchw_to_nhwc(arrays["io/img"]), 0.04)


def test_alias_free_kwargs_are_told_from_stylegan2_ones():
    sg2 = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
               mapping_kwargs={}, channel_base=64, channel_max=8, conv_clamp=256,
               num_fp16_res=0)
    assert not convert.has_alias_free_kwargs(sg2)
    assert convert.has_alias_free_kwargs(dict(sg2, conv_kernel=1, use_radial_filters=True))
