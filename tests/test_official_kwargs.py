"""StyleGAN2 pickles of the stylegan3 code base (NVIDIA's current stylegan2-*.pkl downloads).

Its `networks_stylegan2.Generator` takes the synthesis arguments at the top level and
has other defaults (conv_clamp 256, w_avg_beta 0.998); a pickle in that layout must
import to the network the stylegan2-ada-pytorch layout describes.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import official_pickle as op
import pytest
from official_fixtures import DATA, load, official_init_kwargs, subdict

from stylegan_jax import cli
from stylegan_jax.convert import torch_stylegan2
from stylegan_jax.convert.torch_kwargs import STYLEGAN3, generator_kwargs
from stylegan_jax.store.load import load_networks

REFERENCE = DATA / "official" / "stylegan2_ada_16_orig_orig_cond.npz"
# What the stylegan3 code base embeds: its networks_stylegan2.py source (an excerpt).
SG3_SOURCE = "class SynthesisBlock:\n    fused_modconv_default = True\n"


@pytest.fixture(scope="module")
def reference():
    meta, arrays = load(REFERENCE)
    assert meta["conv_clamp"] == 256  # = the stylegan3 code base's default
    return meta, arrays


def _sg3_kwargs(meta):
    """Generator / Discriminator kwargs as the stylegan3 code base's train.py writes them."""
    g = dict(z_dim=meta["z_dim"], w_dim=meta["w_dim"], c_dim=meta["c_dim"],
             img_resolution=meta["img_resolution"], img_channels=meta["img_channels"],
             mapping_kwargs=dict(num_layers=meta["mapping_layers"]),
             channel_base=meta["channel_base"], channel_max=meta["channel_max"],
             architecture=meta["g_architecture"], fused_modconv_default="inference_only")
    d = dict(c_dim=meta["c_dim"], img_resolution=meta["img_resolution"],
             img_channels=meta["img_channels"], architecture=meta["d_architecture"],
             channel_base=meta["channel_base"], channel_max=meta["channel_max"],
             block_kwargs=dict(freeze_layers=0), mapping_kwargs={},
             epilogue_kwargs=dict(mbstd_group_size=meta["mbstd_group_size"]))
    return g, d


def _pickle(path, arrays, g_init, d_init, source=""):
    G = op.records_from_state_dict("Generator", g_init, subdict(arrays, "G/"))
    D = op.records_from_state_dict("Discriminator", d_init, subdict(arrays, "D/"))
    G.module_src = D.module_src = source or "class Network: pass\n"
    op.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None), path)
    return path


def test_stylegan3_layout_imports_as_the_ada_layout(reference, tmp_path):
    meta, arrays = reference
    ada = _pickle(tmp_path / "ada.pkl", arrays, *official_init_kwargs(meta))
    sg3 = _pickle(tmp_path / "sg3.pkl", arrays, *_sg3_kwargs(meta), source=SG3_SOURCE)
    for pkl in (ada, sg3):
        assert cli.main(["convert", str(pkl), str(tmp_path / pkl.stem)]) == 0
    want, got = load_networks(tmp_path / "ada"), load_networks(tmp_path / "sg3")
    for name in ("G", "D", "G_ema"):
        a, b = want[name].module, got[name].module
        if name != "D":  # only the training-time w_avg decay differs: 0.998 there
            assert (a.w_avg_beta, b.w_avg_beta) == (0.995, 0.998)
            b = dataclasses.replace(b, w_avg_beta=a.w_avg_beta)
        assert a == b, name
        assert b.conv_clamp == 256.0
        for x, y in zip(jax.tree.leaves(want[name].variables),
                        jax.tree.leaves(got[name].variables), strict=True):
            np.testing.assert_array_equal(x, y)


def test_code_base_is_told_by_the_source_when_kwargs_do_not(reference, tmp_path):
    """A lone D has one layout in both code bases; its conv_clamp default is not."""
    meta, arrays = reference
    _, d_init = _sg3_kwargs(meta)
    for source, clamp in ((SG3_SOURCE, 256.0), ("class Discriminator: pass\n", None)):
        D = op.records_from_state_dict("Discriminator", d_init, subdict(arrays, "D/"))
        D.module_src = source
        op.dump({"D": D}, tmp_path / "d.pkl")
        D = torch_stylegan2.networks_from_pickle(tmp_path / "d.pkl")["D"]
        assert D.module.conv_clamp == clamp


@pytest.mark.parametrize("change,message", [
    ({"magnitude_ema_beta": 0.999, "conv_kernel": 1}, r"\['conv_kernel', "
     r"'magnitude_ema_beta'\] belong to StyleGAN3's alias-free generator"),
    ({"fused_modconv_default": "sometimes"}, r"fused_modconv_default='sometimes' is not one"),
    ({"use_noise": False}, r"Generator.use_noise=False is not supported \(only True\)"),
    ({"stem": 3}, r"unexpected Generator.stem=3"),
    ({"synthesis_kwargs": {}}, r"hold synthesis_kwargs, but the stylegan3 code base"),
])
def test_stylegan3_layout_kwargs_are_checked(reference, change, message):
    g_init, _ = _sg3_kwargs(reference[0])
    with pytest.raises(torch_stylegan2.ConversionError, match=message):
        generator_kwargs(dict(g_init, **change), STYLEGAN3)
    # ... and told apart from the ADA layout by the top-level arguments alone.
    with pytest.raises(torch_stylegan2.ConversionError, match=message):
        generator_kwargs(dict(g_init, **change))
