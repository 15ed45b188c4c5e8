"""Import of official pickles and state dicts, export back, and their bad inputs."""

from __future__ import annotations

import json
import pickle

import jax.numpy as jnp
import numpy as np
import official_pickle as op
import pytest
from official_fixtures import (
    DATA,
    assert_close,
    load,
    nchw_to_nhwc,
    official_init_kwargs,
    subdict,
)

from stylegan_jax import cli
from stylegan_jax.convert import torch_stylegan2
from stylegan_jax.convert.pickle_reader import UnsafePickleError, load_official_pickle
from stylegan_jax.models import stylegan2
from stylegan_jax.store.load import load_networks

REFERENCE = DATA / "official" / "stylegan2_ada_16_orig_orig_cond.npz"


@pytest.fixture(scope="module")
def reference():
    meta, arrays = load(REFERENCE)
    g_init, d_init = official_init_kwargs(meta)
    return meta, arrays, g_init, d_init


@pytest.fixture(scope="module")
def official_pkl(reference, tmp_path_factory):
    """The reference network written as an official network pickle."""
    meta, arrays, g_init, d_init = reference
    path = tmp_path_factory.mktemp("pkl") / "network-snapshot.pkl"
    G = op.records_from_state_dict("Generator", g_init, subdict(arrays, "G/"))
    D = op.records_from_state_dict("Discriminator", d_init, subdict(arrays, "D/"))
    op.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None,
                 training_set_kwargs={"resolution": meta["img_resolution"]}), path)
    return path


def test_reader_reads_real_torch_pickles():
    """tests/data/torch_pickle/tiny.pkl was written by real torch (see make_fixture.py)."""
    data = load_official_pickle(DATA / "torch_pickle" / "tiny.pkl")
    G = data["G"]
    assert G.class_name == "Generator"
    assert G.init_kwargs == {"z_dim": 3, "mapping_kwargs": {"num_layers": 2}}
    state = G.state_dict()
    with np.load(DATA / "torch_pickle" / "expected.npz") as expected:
        assert sorted(state) == sorted(expected.files)  # non-persistent buffer left out
        for k in expected.files:
            assert state[k].dtype == expected[k].dtype, k
            np.testing.assert_array_equal(state[k], expected[k], err_msg=k)


def test_convert_pickle_generates_official_images(reference, official_pkl, tmp_path):
    meta, arrays, _, _ = reference
    dest = tmp_path / "converted"
    assert cli.main(["convert", str(official_pkl), str(dest)]) == 0
    nets = load_networks(dest)
    assert sorted(nets) == ["D", "G", "G_ema"]
    io = subdict(arrays, "io/")
    G, g_vars = nets["G_ema"].module, nets["G_ema"].variables
    img = G.apply(g_vars, jnp.asarray(io["z"]), jnp.asarray(io["c"]), meta["truncation_psi"],
                  meta["truncation_cutoff"], "const")
    assert_close("img", img, nchw_to_nhwc(io["img"]), 1e-4)
    D = nets["D"]
    logits = D.module.apply(D.variables, jnp.asarray(nchw_to_nhwc(io["real"])),
                            jnp.asarray(io["c"]))
    assert_close("logits_real", logits, io["logits_real"], 1e-4)


def test_export_to_official_round_trips_exactly(reference, official_pkl, tmp_path):
    _, arrays, g_init, d_init = reference
    ours = tmp_path / "ours"
    assert cli.main(["convert", str(official_pkl), str(ours)]) == 0
    back = tmp_path / "official"
    assert cli.main(["convert", str(ours), str(back), "--to", "official"]) == 0
    for name, prefix in (("G", "G/"), ("G_ema", "G/"), ("D", "D/")):
        expected = subdict(arrays, prefix)
        with np.load(back / f"{name}.npz") as got:
            assert sorted(got.files) == sorted(expected), name
            for k in expected:
                assert got[k].shape == expected[k].shape, f"{name}.{k}"
                np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{name}.{k}")
    kwargs = json.loads((back / "init_kwargs.json").read_text())
    assert torch_stylegan2.generator_kwargs(kwargs["G"]) == torch_stylegan2.generator_kwargs(g_init)
    assert (torch_stylegan2.discriminator_kwargs(kwargs["D"])
            == torch_stylegan2.discriminator_kwargs(d_init))
    # ... and the exported layout imports again.
    again = tmp_path / "again"
    assert cli.main(["convert", str(back), str(again)]) == 0
    assert sorted(load_networks(again)) == ["D", "G", "G_ema"]


def test_generate_from_converted_model(official_pkl, tmp_path, capsys):
    dest = tmp_path / "net"
    cli.main(["convert", str(official_pkl), str(dest)])
    out = tmp_path / "images"
    assert cli.main(["generate", "--network", str(dest), "--seeds", "0-3", "--class", "1",
                     "--trunc", "0.7", "--outdir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png"]
    assert cli.main(["generate", "--network", str(dest), "--outdir", str(tmp_path / "x")]) == 2
    assert "needs --class" in capsys.readouterr().err


# --- bad input -------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator_state(reference):
    _, arrays, g_init, _ = reference
    G = stylegan2.Generator(**torch_stylegan2.generator_kwargs(g_init))
    return G, subdict(arrays, "G/")


def test_missing_tensor_is_named(generator_state):
    G, state = generator_state
    state = dict(state)
    del state["synthesis.b8.conv1.affine.bias"]
    with pytest.raises(torch_stylegan2.ConversionError,
                       match=r"missing tensor synthesis\.b8\.conv1"):
        torch_stylegan2.state_dict_to_variables(state, G)


def test_extra_and_misshaped_tensors_are_named(generator_state):
    G, state = generator_state
    state = dict(state)
    state["synthesis.b8.extra.weight"] = np.zeros(3, np.float32)
    state["mapping.fc1.weight"] = np.zeros((48, 47), np.float32)
    with pytest.raises(torch_stylegan2.ConversionError) as e:
        torch_stylegan2.state_dict_to_variables(state, G)
    assert "unexpected tensor synthesis.b8.extra.weight" in str(e.value)
    assert "mapping.fc1.weight has shape (48, 47)" in str(e.value)
    assert "(48, 48)" in str(e.value)


def test_failed_conversion_writes_nothing(reference, tmp_path, capsys):
    _, arrays, g_init, _ = reference
    state = subdict(arrays, "G/")
    del state["mapping.fc0.bias"]
    path = tmp_path / "broken.pkl"
    op.dump({"G": op.records_from_state_dict("Generator", g_init, state)}, path)
    assert cli.main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert "missing tensor mapping.fc0.bias" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pkl"]


def test_existing_destination_is_never_overwritten(official_pkl, tmp_path, capsys):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    assert cli.main(["convert", str(official_pkl), str(dest)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_pickle_importing_other_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    op.dump({"G": op.Call(op.Global("os", "system"), "touch pwned")}, path)
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_official_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_embedded_class_source_is_never_executed(reference, tmp_path):
    _, arrays, g_init, _ = reference
    marker = tmp_path / "executed"
    record = op.records_from_state_dict("Generator", g_init, subdict(arrays, "G/"))
    record.module_src = f"open({str(marker)!r}, 'w').write('x')\nclass Generator: pass\n"
    path = tmp_path / "net.pkl"
    op.dump({"G": record}, path)
    assert load_official_pickle(path)["G"].class_name == "Generator"
    assert not marker.exists()


def test_not_a_network_pickle(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ValueError, match="expected a dict with official networks"):
        load_official_pickle(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a readable network pickle"):
        load_official_pickle(path)


def test_unsupported_network_kwargs_are_named(reference, tmp_path):
    _, arrays, g_init, _ = reference
    bad = json.loads(json.dumps(g_init))
    bad["synthesis_kwargs"]["architecture"] = "fancy"
    path = tmp_path / "net.pkl"
    op.dump({"G": op.records_from_state_dict("Generator", bad, subdict(arrays, "G/"))}, path)
    with pytest.raises(torch_stylegan2.ConversionError, match="architecture must be one of"):
        torch_stylegan2.networks_from_pickle(path)
    bad["synthesis_kwargs"]["architecture"] = "skip"
    bad["synthesis_kwargs"]["magnitude_ema_beta"] = 0.999  # a StyleGAN3 network
    op.dump({"G": op.records_from_state_dict("Generator", bad, subdict(arrays, "G/"))}, path)
    with pytest.raises(torch_stylegan2.ConversionError, match="magnitude_ema_beta"):
        torch_stylegan2.networks_from_pickle(path)
