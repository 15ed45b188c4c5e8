"""Import of NVIDIA's TensorFlow pickles (ProGAN, StyleGAN v1), generation, and bad input.

The pickles are written by tests/tf_pickle.py in the official layout from the bundled
reference networks, so a converted network must reproduce the reference tensors.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import tf_pickle as tp
from official_fixtures import DATA, assert_close, load, nchw_to_nhwc, subdict
from official_tf_checks import BUILD_FUNCS, generator_fn

from stylegan_jax import cli
from stylegan_jax.convert import pickles, tf_progressive
from stylegan_jax.convert.pickle_reader import (
    UnsafePickleError,
    is_tf_pickle,
    load_tf_pickle,
)
from stylegan_jax.models import progan, stylegan
from stylegan_jax.store.load import load_networks

REFERENCES = {"progan": DATA / "official_tf" / "progan_32.npz",
              "stylegan": DATA / "official_tf" / "stylegan_32_fused.npz"}


@pytest.fixture(scope="module")
def references():
    return {family: load(path) for family, path in REFERENCES.items()}


def _split(reference, legacy=False):
    meta, arrays = reference
    return meta, subdict(arrays, "G/"), subdict(arrays, "D/"), legacy


def write_pickle(references, family, path, legacy=False, protocol=4, **changes):
    G, D, Gs = tp.networks_for(*_split(references[family], legacy))
    for key, value in changes.items():  # e.g. D_build_func_name="D_main"
        net, field = key.split("_", 1)
        {"G": G, "D": D, "Gs": Gs}[net].state[field] = value
    tp.dump((G, D, Gs), path, protocol)
    return path


@pytest.mark.parametrize("family,legacy,protocol", [
    ("stylegan", False, 4), ("progan", False, 4), ("progan", True, 2), ("stylegan", False, 1),
], ids=["stylegan", "progan", "progan-tfutil-legacy", "stylegan-protocol1"])
def test_converted_pickle_reproduces_official_tensors(references, tmp_path, family, legacy,
                                                      protocol):
    meta, arrays = references[family]
    pkl = write_pickle(references, family, tmp_path / "net.pkl", legacy, protocol)
    assert is_tf_pickle(pkl)
    dest = tmp_path / "converted"
    assert cli.main(["convert", str(pkl), str(dest)]) == 0
    nets = load_networks(dest)
    assert sorted(nets) == ["D", "G", "G_ema"]
    info = json.loads((dest / "networks.json").read_text())["info"]
    assert info["official_names"] == {"G": "G", "D": "D", "G_ema": "Gs"}
    cls = {"progan": progan, "stylegan": stylegan}[family]
    assert type(nets["G_ema"].module) is cls.Generator
    assert type(nets["D"].module) is cls.Discriminator

    io = subdict(arrays, "io/")
    z, labels = jnp.asarray(io["z"]), jnp.asarray(io["labels"])
    G = nets["G_ema"]
    generate = generator_fn(G.module, meta)
    D = nets["D"]
    real = jnp.asarray(nchw_to_nhwc(io["real"]))
    for i, lod in enumerate(np.asarray(io["lods"], np.float32)):
        assert_close(f"images lod {lod:g}", generate(G.variables, z, labels, lod),
                     nchw_to_nhwc(io[f"images_lod{i}"]), 1e-4)
    lod = np.float32(io["lods"][1])
    assert_close("scores_real", D.module.apply(D.variables, real, labels, lod),
                 io["scores_real_lod1"], 1e-4)


def test_variables_convert_back_to_the_official_layout(references):
    for meta, arrays in references.values():
        for prefix, func in zip(("G/", "D/"), BUILD_FUNCS[meta["family"]],
                                strict=True):
            named = subdict(arrays, prefix)
            kwargs_key = "G_kwargs" if prefix == "G/" else "D_kwargs"
            cls, kwargs = tf_progressive.module_kwargs_from_tf(func, meta[kwargs_key])
            module = cls(**kwargs)
            back = tf_progressive.variables_to_tf(
                tf_progressive.variables_from_tf(named, module), module)
            assert sorted(back) == sorted(named)
            for k, v in named.items():
                np.testing.assert_array_equal(back[k], v, err_msg=k)


@pytest.mark.parametrize("family", ["stylegan", "progan"])
def test_generate_from_converted_tf_model(references, tmp_path, family):
    pkl = write_pickle(references, family, tmp_path / "net.pkl")
    dest = tmp_path / "net"
    assert cli.main(["convert", str(pkl), str(dest)]) == 0
    trunc = ["--trunc", "0.7", "--trunc-cutoff", "4"] if family == "stylegan" else []
    for lod in ("0", "1"):
        out = tmp_path / f"images_lod{lod}"
        assert cli.main(["generate", "--network", str(dest), "--seeds", "0-2", "--lod", lod,
                         "--outdir", str(out), *trunc]) == 0
        assert sorted(p.name for p in out.iterdir()) == [
            "grid.png", "seed0000.png", "seed0001.png", "seed0002.png"]
    from stylegan_jax.generate import generate_images

    net = load_networks(dest)["G_ema"]
    sharp = generate_images(net, [0, 1], lod=0.0)
    coarse = generate_images(net, [0, 1], lod=1.0)
    assert sharp.shape == coarse.shape == (2, 32, 32, 3)
    # lod 1 is the 16x16 output, nearest-upscaled: constant 2x2 blocks.
    np.testing.assert_array_equal(coarse[:, ::2, ::2], coarse[:, 1::2, 1::2])
    assert not np.array_equal(sharp[:, ::2, ::2], sharp[:, 1::2, 1::2])

    # A snapshot pickled mid-growth (Gs lod 1) keeps its lod: generate renders it so.
    G, D, Gs = tp.networks_for(*_split(references[family]))
    Gs.state["variables"] = [("lod", np.float32(1.0)), *Gs.state["variables"][1:]]
    tp.dump((G, D, Gs), tmp_path / "grown.pkl", 4)
    assert cli.main(["convert", str(tmp_path / "grown.pkl"), str(tmp_path / "grown")]) == 0
    grown = load_networks(tmp_path / "grown")
    assert grown["G_ema"].lod == 1.0 and grown["G"].lod == 0.0
    np.testing.assert_array_equal(generate_images(grown["G_ema"], [0, 1]), coarse)


# --- bad input -------------------------------------------------------------------


def test_pickle_importing_other_code_is_refused(references, tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(references, "progan", tmp_path / "evil.pkl", G_static_kwargs={
        "resolution": tp.Call(tp.Global("os", "system"), f"touch {marker}")})
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_tf_pickle(path)
    assert cli.main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_build_source_is_never_executed(references, tmp_path):
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'w').write('x')\ndef G_paper(*a, **k): pass\n"
    path = write_pickle(references, "progan", tmp_path / "net.pkl", G_build_module_src=source)
    nets = pickles.networks_from_tf_pickle(path)
    assert sorted(nets) == ["D", "G", "G_ema"]
    assert not marker.exists()


@pytest.mark.parametrize("changes,message", [
    ({"D_build_func_name": "D_stylegan2"}, r"build function 'D_stylegan2' is not supported"),
    ({"D_version": 7}, r"D: state version 7, expected one of \(2, 3, 4, 5\)"),
    ({"G_variables": {"4x4/Dense/weight": 1}}, r"G: state field 'variables' is dict"),
    ({"Gs_static_kwargs": {"resolution": 32, "num_channels": 3, "use_wscale": False}},
     r"Gs: G_paper kwarg use_wscale=False is not supported"),
    ({"D_static_kwargs": {"resolution": 32, "num_channels": 3, "mbstd_groups": 4}},
     r"unexpected D_paper kwarg mbstd_groups=4"),
    ({"G_build_func_name": "G_style"}, r"expected \(G, D, Gs\) of one family"),
])
def test_unexpected_structure_is_refused(references, tmp_path, changes, message):
    path = write_pickle(references, "progan", tmp_path / "net.pkl", **changes)
    with pytest.raises(ValueError, match=message):
        pickles.networks_from_tf_pickle(path)


def test_mixed_families_and_wrong_component_are_refused(references, tmp_path):
    meta, arrays = references["stylegan"]
    G, _, Gs = tp.networks_for(meta, subdict(arrays, "G/"), subdict(arrays, "D/"))
    pro_meta, pro_arrays = references["progan"]
    _, D, _ = tp.networks_for(pro_meta, subdict(pro_arrays, "G/"), subdict(pro_arrays, "D/"))
    path = tmp_path / "mixed.pkl"
    tp.dump((G, D, Gs), path)
    with pytest.raises(tf_progressive.ConversionError, match="of one family"):
        pickles.networks_from_tf_pickle(path)
    G.state["components"]["mapping"] = {"weights": np.zeros(3)}
    tp.dump((G, D, Gs), path)
    with pytest.raises(ValueError, match=r"component 'mapping' is a dict, expected a Network"):
        load_tf_pickle(path)


def test_not_the_official_tuple(references, tmp_path):
    meta, arrays = references["progan"]
    G, D, Gs = tp.networks_for(meta, subdict(arrays, "G/"), subdict(arrays, "D/"))
    path = tmp_path / "net.pkl"
    tp.dump({"G": G, "D": D, "Gs": Gs}, path)
    with pytest.raises(ValueError, match=r"expected the official \(G, D, Gs\) tuple"):
        load_tf_pickle(path)
    tp.dump((G, D), path)
    with pytest.raises(ValueError, match="a tuple of 2"):
        load_tf_pickle(path)


def test_missing_and_misshaped_variables_are_named(references, tmp_path):
    meta, arrays = references["stylegan"]
    G_vars = subdict(arrays, "G/")
    del G_vars["G_synthesis/8x8/Conv1/Noise/weight"]
    G_vars["G_mapping/Dense1/weight"] = np.zeros((64, 63), np.float32)
    G_vars["G_synthesis/64x64/Conv1/weight"] = np.zeros((3, 3, 8, 8), np.float32)
    G, D, Gs = tp.networks_for(meta, G_vars, subdict(arrays, "D/"))
    path = tmp_path / "net.pkl"
    tp.dump((G, D, Gs), path)
    with pytest.raises(tf_progressive.ConversionError) as e:
        pickles.networks_from_tf_pickle(path)
    text = str(e.value)
    assert "missing variable G_synthesis/8x8/Conv1/Noise/weight (64,)" in text
    assert "G_mapping/Dense1/weight has shape (64, 63), expected (64, 64)" in text
    assert "unexpected variable G_synthesis/64x64/Conv1/weight" in text


def test_torch_pickles_are_not_taken_for_tf(tmp_path):
    assert not is_tf_pickle(DATA / "torch_pickle" / "tiny.pkl")
    path = tmp_path / "plain.pkl"
    path.write_bytes(b"not a pickle")
    assert not is_tf_pickle(path)


def test_export_to_the_official_pytorch_format_is_refused(references, tmp_path, capsys):
    pkl = write_pickle(references, "progan", tmp_path / "net.pkl")
    ours = tmp_path / "ours"
    assert cli.main(["convert", str(pkl), str(ours)]) == 0
    assert cli.main(["convert", str(ours), str(tmp_path / "back"), "--to", "official"]) == 2
    assert "writes StyleGAN2 networks only" in capsys.readouterr().err
    assert not (tmp_path / "back").exists()
