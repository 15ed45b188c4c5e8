"""W x H StyleGAN3 generators: NVIDIA's layers at rectangular sizes, the square network kept,
the registry, the official writers' refusal and a tiny training run at 32x16.

References: tests/data/stylegan3_rect/*.npz, NVIDIA's own SynthesisInput / SynthesisLayer
(NVlabs/stylegan3 c233a91) built at the W x H sizes and run in float64 by
tests/record_stylegan3_rect.py (its README says how); 1e-4 * max|ref| as for the square
references (the official float32 run is within 2e-6 of max|ref|). For training: a run
without interruption, and the dataset the test writes.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from official_fixtures import DATA, assert_close, load, nchw_to_nhwc, subdict
from PIL import Image
from test_stylegan3_official import _run_all

from stylegan_jax import cli
from stylegan_jax.convert import torch_stylegan2
from stylegan_jax.convert import torch_stylegan3 as convert
from stylegan_jax.models import registry, stylegan3
from stylegan_jax.models.registry import Network, module_kwargs
from stylegan_jax.shapes import ImageShape
from stylegan_jax.store.load import load_networks
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import loop

FILES = sorted((DATA / "stylegan3_rect").glob("*.npz"))
REL = 1e-4


def test_fixtures_present():
    assert [f.name for f in FILES] == ["stylegan3_r_32_tall_cond_gray.npz",
                                       "stylegan3_t_16_wide.npz"]


def rect_generator(path):
    """The fixture's W x H generator, through the official-state-dict converter."""
    meta, arrays = load(path)
    G = stylegan3.Generator(**convert.generator_kwargs(meta["kwargs"]),
                            img_aspect=tuple(meta["aspect"]))
    return meta, arrays, G, convert.state_dict_to_variables(subdict(arrays, "G/"), G)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_nvidia_layers_at_w_x_h(path):
    """Mapping, synthesis (truncated and not, a rotated and shifted input in the
    conditional file), d sum(img * noise) / d ws and the magnitude EMAs after an
    update_emas pass (mean over the whole rectangle) equal NVIDIA's."""
    meta, arrays, G, v = rect_generator(path)
    _, specs = convert.layer_specs_of(G)
    assert [s.name for s in specs] == meta["layer_names"]
    assert [[s.out_hw[1], s.out_hw[0]] for s in specs] == meta["layer_sizes"]  # [W, H]
    io = subdict(arrays, "io/")
    ws = G.apply(v, jnp.asarray(io["z"]), jnp.asarray(io["c"]), meta["psi"], meta["cutoff"],
                 method=G.mapping_fn)
    assert_close("ws", ws, io["ws"], REL)

    noise = jnp.asarray(nchw_to_nhwc(io["noise"]))
    img, img_nt, grad, buffers = _run_all(G)(v, jnp.asarray(io["ws"]),
                                             jnp.asarray(io["ws_notrunc"]), noise)
    ah, aw = meta["aspect"]
    r = meta["kwargs"]["img_resolution"]
    assert img.shape[1:3] == (r * ah, r * aw) != (r, r)
    assert_close("img", img, nchw_to_nhwc(io["img"]), REL)
    assert_close("img_notrunc", img_nt, nchw_to_nhwc(io["img_notrunc"]), REL)
    assert_close("grad_ws", grad, io["grad_ws"], REL)
    after = subdict(arrays, "after_update_emas/G/synthesis.")
    assert len(after) == len(specs)
    for key, ref in after.items():
        layer = key.rsplit(".", 1)[0]
        assert_close(f"{layer}.magnitude_ema", buffers["synthesis"][layer]["magnitude_ema"],
                     ref, REL)


KW = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64,
          channel_max=8, num_layers=3)


def zeros_like_init(G):
    """G's variables as zeros (their shapes, without running the network)."""
    shapes = jax.eval_shape(G.init, jax.random.key(0), jnp.zeros((1, G.z_dim)), None)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def test_square_aspect_is_the_square_network():
    """img_aspect (1, 1) is the network without the field, and its networks.json record has
    no img_aspect; a W x H network has the square one's variables (names and shapes), so
    square weights load into it as they are, and draws H x W."""
    G, G11, G21 = (stylegan3.Generator(**KW), stylegan3.Generator(**KW, img_aspect=(1, 1)),
                   stylegan3.Generator(**KW, img_aspect=(2, 1)))
    assert [tuple(s) for s in convert.layer_specs_of(G11)[1]] == [
        tuple(s) for s in convert.layer_specs_of(G)[1]]
    assert "img_aspect" not in module_kwargs(G11)
    assert json.loads(json.dumps(module_kwargs(G21)))["img_aspect"] == [2, 1]
    z = jax.random.normal(jax.random.key(3), (2, 8))
    v = jax.jit(G.init)(jax.random.key(0), z, None)
    shapes = lambda t: jax.tree_util.tree_map(jnp.shape, t)  # noqa: E731
    assert shapes(jax.eval_shape(G11.init, jax.random.key(0), z, None)) == shapes(v)
    assert shapes(jax.eval_shape(G21.init, jax.random.key(0), z, None)) == shapes(v)
    img = jax.jit(G21.apply)(v, z, None)
    assert img.shape == (2, 32, 16, 3) and bool(jnp.all(jnp.isfinite(img)))


@pytest.mark.parametrize("aspect", [(2, 2), (1, 3), (1,), "12", (1.0, 2.0)])
def test_bad_aspect_is_one_clear_error(aspect):
    G = stylegan3.Generator(**KW, img_aspect=aspect)
    with pytest.raises(ValueError, match=r"img_aspect must be \(height, width\) multiples"):
        G.init(jax.random.key(0), jnp.zeros((1, 8)), None)


def test_networks_from_config_builds_w_x_h_pairs():
    config = config_lib.load_config("stylegan3_quick")
    config_lib.apply_override(config, "--config.data.resolution=32x16")
    G, D = registry.networks_from_config(config, 0)
    assert isinstance(G, stylegan3.Generator)
    assert (G.img_resolution, G.img_aspect, D.img_resolution, D.img_aspect) == (16, (1, 2),
                                                                                16, (1, 2))
    assert registry.image_shape(G) == registry.image_shape(D) == ImageShape(16, 32)


def test_official_writer_refuses_w_x_h(tmp_path):
    """No official format holds a W x H StyleGAN3 generator: one ValueError, nothing
    written; its square counterpart is written."""
    G = stylegan3.Generator(**KW, img_aspect=(1, 2))
    v = zeros_like_init(G)
    dest = tmp_path / "official"
    with pytest.raises(ValueError, match=r"'G_ema' is a 32x16 \(W x H\) network .*official "
                                         r"StyleGAN3 formats hold square networks only"):
        torch_stylegan2.export_official({"G_ema": Network(G, v)}, dest)
    assert not dest.exists()
    torch_stylegan2.export_official({"G_ema": Network(G.clone(img_aspect=(1, 1)), v)},
                                    tmp_path / "square")
    assert (tmp_path / "square" / "G_ema.npz").is_file()


# --- a tiny training run at 32x16 ------------------------------------------------------


def _dataset(tmp) -> str:
    """Random grayscale images of mixed aspects, as a 32x16 tfrecord dataset."""
    rng = np.random.default_rng(4)
    src = tmp / "src"
    src.mkdir()
    for i, (h, w) in enumerate([(40, 40), (30, 90), (20, 40), (16, 32)]):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(src / f"{i}.png")
    dest = tmp / "ds"
    assert cli.main(["dataset", "--source", str(src), "--dest", str(dest), "--resolution",
                     "32x16", "--channels", "1", "--transform", "pad-to-ratio", "--labels",
                     "none", "--no-progress"]) == 0
    return str(dest)


def tiny_config(dataset: str):
    """stylegan3_quick shrunk (as tests/test_stylegan3_train.py shrinks it) at 32x16."""
    c = config_lib.load_config("stylegan3_quick")
    c.data.source, c.data.path = "tfrecord", dataset
    config_lib.apply_override(c, "--config.data.resolution=32x16")
    c.model.z_dim = c.model.w_dim = 16
    c.model.channel_base, c.model.channel_max = 128, 8
    c.model.num_layers = 3
    c.model.mbstd_group_size = 2
    c.train.batch_size = 16
    c.train.d_reg_interval = 1
    c.log.tick_kimg = c.log.snapshot_kimg = c.log.checkpoint_kimg = 0.016
    c.log.keep_last = 5
    c.log.grid_seeds = 4
    c.log.tensorboard = False
    return c


@pytest.mark.slow  # three short runs of one compiled program
def test_a_w_x_h_stylegan3_run_trains_resumes_and_generates(tmp_path):
    config = tiny_config(_dataset(tmp_path))
    lines = []
    loop.train(config, tmp_path / "a", stop_at_step=2, log=lines.append)
    assert any("Training stylegan3 32x16x1" in line for line in lines), lines[:5]
    loop.train(config, tmp_path / "b", stop_at_step=1, log=lambda _: None)
    loop.train(config, tmp_path / "b", stop_at_step=2, log=lambda _: None)
    a, b = load_networks(tmp_path / "a"), load_networks(tmp_path / "b")
    assert registry.image_shape(a["G_ema"].module) == ImageShape(16, 32)
    for name in ("G", "G_ema", "D"):
        for x, y in zip(jax.tree_util.tree_leaves(a[name].variables),
                        jax.tree_util.tree_leaves(b[name].variables), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)
    emas = [float(x) for p, x in jax.tree_util.tree_leaves_with_path(a["G"].variables)
            if "magnitude_ema" in jax.tree_util.keystr(p)]
    assert len(emas) == 4 and all(e != 1.0 for e in emas)  # trained on the rectangle
    assert cli.main(["generate", "--network", str(tmp_path / "a"), "--seeds", "0-1",
                     "--outdir", str(tmp_path / "img")]) == 0
    for seed in (0, 1):
        img = Image.open(tmp_path / "img" / f"seed000{seed}.png")
        assert (img.mode, img.size) == ("L", (32, 16))
