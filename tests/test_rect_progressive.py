"""ProGAN and StyleGAN v1 beyond the square: W x H networks, their progressive training,
storage and the refusal of the official formats.

References: NVIDIA's own TF networks (NVlabs/stylegan `G_paper`/`D_paper`, `G_mapping`/
`G_synthesis`/`D_basic`) run on a 4*ah x 4*aw start by tests/record_progressive_rect.py
(tests/data/progressive_rect/README.md says what was changed: the start's shapes only);
NumPy for the reals' fade; a run without interruption for the resumed one.

Tolerance against TF: max |ours - TF| <= 2e-5 * max |TF| for every output (images, scores,
dlatents, R1 and WGAN-GP gradient norms); measured: median 2.8e-7, max 3.3e-6 over the 41
(XLA vs TF oneDNN summation orders; `pytest -s` prints each). A swapped axis in the
start's layout, the constant or the noise inputs changes them by O(1).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from official_fixtures import DATA, load, nchw_to_nhwc, subdict
from PIL import Image
from progressive_fixtures import tiny_config

from stylegan_jax import cli
from stylegan_jax.convert import tf_progressive
from stylegan_jax.models import progan, registry, stylegan
from stylegan_jax.store.load import load_networks
from stylegan_jax.store.networks import save_networks
from stylegan_jax.train import loop
from stylegan_jax.train.config import apply_override
from stylegan_jax.train.progressive.step import fade_reals

TOL = 2e-5
RECT = DATA / "progressive_rect"
FILES = sorted(RECT.glob("*.npz"))
BUILD_FUNCS = {"progan": ("G_paper", "D_paper"), "stylegan": ("G_style", "D_basic")}


def close(name: str, ours, ref) -> None:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    err, bound = np.max(np.abs(ours - ref)), TOL * np.max(np.abs(ref))
    print(f"{name}: max|ours - TF| / max|TF| = {err / np.max(np.abs(ref)):.2e}")
    assert err <= bound, f"{name}: max|ours - TF| = {err:.3e} > {bound:.3e}"


def test_fixtures_present():
    assert [f.name for f in FILES] == ["progan_32x16.npz", "stylegan_16x32.npz"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_rectangles_equal_nvidia_tf(path):
    """G's images, D's scores and gradient norms at every lod of the file, the networks
    built from the official kwargs plus img_aspect and NVIDIA's layout of their variables."""
    meta, arrays = load(path)
    aspect = tuple(meta["img_aspect"])
    g_func, d_func = BUILD_FUNCS[meta["family"]]
    G_cls, g_kw = tf_progressive.module_kwargs_from_tf(g_func, meta["G_kwargs"])
    D_cls, d_kw = tf_progressive.module_kwargs_from_tf(d_func, meta["D_kwargs"])
    G, D = G_cls(**g_kw, img_aspect=aspect), D_cls(**d_kw, img_aspect=aspect)
    g_vars = tf_progressive.variables_from_tf(subdict(arrays, "G/"), G, "G")
    d_vars = tf_progressive.variables_from_tf(subdict(arrays, "D/"), D, "D")
    io = subdict(arrays, "io/")
    z, c = jnp.asarray(io["z"]), jnp.asarray(io["labels"])
    if meta["family"] == "progan":
        generate = jax.jit(lambda lod: G.apply(g_vars, z, c, lod))
    else:
        close("dlatents", G.apply(g_vars, z, c, method=G.mapping_fn), io["dlatents_notrunc"])
        psi, cutoff = meta["truncation_psi"], meta["truncation_cutoff"]
        generate = jax.jit(lambda lod: G.apply(g_vars, z, c, lod, psi, cutoff, "const"))
    score = jax.jit(lambda x, lod: D.apply(d_vars, x, c, lod))
    grad = jax.jit(jax.grad(lambda x, lod: jnp.sum(D.apply(d_vars, x, c, lod))))

    def sq_norm(x, lod):
        return jnp.sum(jnp.square(grad(x, lod)), axis=(1, 2, 3))

    real, mix = nchw_to_nhwc(io["real"]), nchw_to_nhwc(io["mix"])
    for i, lod in enumerate(np.asarray(io["lods"], np.float32)):
        fake = nchw_to_nhwc(io[f"images_lod{i}"])
        close(f"images (lod {lod:g})", generate(lod), fake)
        close(f"scores_fake (lod {lod:g})", score(fake, lod), io[f"scores_fake_lod{i}"])
        close(f"scores_real (lod {lod:g})", score(real, lod), io[f"scores_real_lod{i}"])
        close(f"r1 (lod {lod:g})", sq_norm(real, lod), io[f"r1_lod{i}"])
        close(f"gp (lod {lod:g})", sq_norm(real + (fake - real) * mix, lod),
              io[f"gp_grad_sqnorm_lod{i}"])


SQUARE = {
    "progan": (dict(num_channels=3, resolution=32), "progan_32.npz", ("G_paper", "D_paper")),
    "stylegan": (dict(num_channels=3, resolution=32), "stylegan_32_fused.npz",
                 ("G_style", "D_basic")),
}


@pytest.mark.parametrize("family", ["progan", "stylegan"])
def test_the_square_aspect_is_the_official_network(family, tmp_path):
    """img_aspect (1, 1) keeps NVIDIA's variable tree (the official square fixtures convert
    into it), and the registry's record of a square network has no img_aspect."""
    meta, arrays = load(DATA / "official_tf" / SQUARE[family][1])
    for func, part in zip(SQUARE[family][2], ("G", "D"), strict=True):
        cls, kw = tf_progressive.module_kwargs_from_tf(func, meta[f"{part}_kwargs"])
        square = cls(**kw, img_aspect=(1, 1))
        assert tf_progressive.expected_shapes(square) == tf_progressive.expected_shapes(cls(**kw))
        tf_progressive.variables_from_tf(subdict(arrays, f"{part}/"), square, part)  # no error
    config = tiny_config(family)
    G, D = registry.progressive_networks(config, 0)
    assert G.img_aspect == D.img_aspect == (1, 1)
    assert "img_aspect" not in registry.module_kwargs(G)
    net = registry.Network(G, jax.eval_shape(lambda: G.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)},
        jnp.zeros((1, G.z_dim)), jnp.zeros((1, 0)))))
    net.variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), net.variables)
    save_networks(tmp_path / "sq", {"G": net})
    assert "img_aspect" not in (tmp_path / "sq" / "networks.json").read_text()


@pytest.mark.parametrize("cls", [progan.Generator, progan.Discriminator, stylegan.Generator,
                                 stylegan.Discriminator])
def test_a_bad_aspect_is_named(cls):
    module = cls(num_channels=3, resolution=8, img_aspect=(2, 2))
    with pytest.raises(ValueError, match=r"img_aspect must be \(height, width\) multiples "
                                         r".*got \(2, 2\)"):
        tf_progressive.expected_shapes(module)


def test_reals_fade_in_both_axes():
    """A tall (16x32, W x H) batch at level 1 of a 32-high network: the official
    process_reals in NumPy (2x2 box average, nearest upscale, lerp by lod - level, nearest
    upscale to the full size) on both axes."""
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 16, 8, 1), dtype=np.uint8)  # level 1 of 32x16 (H x W)
    x = u8.astype(np.float64) / 127.5 - 1
    box = x.reshape(2, 8, 2, 4, 2, 1).mean(axis=(2, 4)).repeat(2, 1).repeat(2, 2)
    want = (x + (box - x) * 0.25).repeat(2, 1).repeat(2, 2)
    got = fade_reals(jnp.asarray(u8), jnp.float32(1.25), 1, 16)  # shorter side 16
    assert got.shape == (2, 32, 16, 1)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


# -- a tiny ProGAN run at 32x16 ------------------------------------------------------
STEPS, SPLIT = 10, 9  # 8x16 stable to 128 images, then 16x32 fading in (lod 0.5 at 128)


def _config(dataset: str):
    config = tiny_config("progan")
    config.data.source, config.data.path, config.data.channels = "tfrecord", dataset, 3
    apply_override(config, "data.resolution=32x16")
    config.train.lod_initial_resolution = 8
    config.log.grid_seeds = 4
    return config


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A straight run of 10 iterations (one lod transition) and one stopped at 9 and
    resumed to 10, on 8 random 32x16 RGB images."""
    tmp = tmp_path_factory.mktemp("progressive_rect")
    src = tmp / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(src / f"{i}.png")
    assert cli.main(["dataset", "--source", str(src), "--dest", str(tmp / "ds"),
                     "--resolution", "32x16", "--no-progress"]) == 0
    config = _config(str(tmp / "ds"))
    lines: list[str] = []
    loop.train(config, tmp / "straight", stop_at_step=STEPS, log=lines.append)
    loop.train(config, tmp / "resumed", stop_at_step=SPLIT, log=lambda _: None)
    loop.train(config, tmp / "resumed", stop_at_step=STEPS, log=lambda _: None)
    return tmp, lines


@pytest.mark.slow  # two stage programs to compile (~1 min on 2 cores)
def test_a_rectangular_progan_run_grows_and_resumes_exactly(wide):
    tmp, lines = wide
    lods = [json.loads(x)["Loss/lod"] for x in
            (tmp / "straight" / "stats.jsonl").read_text().splitlines()]
    assert lods[0] == 1.0 and 0 < lods[-1] < 1  # 8x16, then 16x32 fading in
    a, b = load_networks(tmp / "straight"), load_networks(tmp / "resumed")
    for name in ("G", "G_ema", "D"):
        assert registry.image_shape(a[name].module).aspect == (1, 2)
        for x, y in zip(jax.tree_util.tree_leaves(a[name].variables),
                        jax.tree_util.tree_leaves(b[name].variables), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    grid = np.asarray(Image.open(tmp / "straight" / "samples" / "fakes000000.png"))
    assert grid.shape == (2 * 16, 2 * 32, 3)


@pytest.mark.slow  # two stage programs to compile (~1 min on 2 cores)
def test_it_generates_stores_and_refuses_the_official_formats(wide, tmp_path):
    tmp, _ = wide
    assert cli.main(["generate", "--network", str(tmp / "straight"), "--seeds", "0-1",
                     "--outdir", str(tmp_path / "img")]) == 0
    assert Image.open(tmp_path / "img" / "seed0001.png").size == (32, 16)
    assert cli.main(["convert", str(tmp / "straight"), str(tmp_path / "nets")]) == 0
    record = json.loads((tmp_path / "nets" / "networks.json").read_text())
    assert record["networks"]["G_ema"]["kwargs"]["img_aspect"] == [1, 2]
    nets = load_networks(tmp_path / "nets")
    for name in ("G_ema", "D"):
        with pytest.raises(ValueError, match=r"D is a 32x16 \(W x H\) network .*official "
                                             r"ProGAN / StyleGAN TF pickles hold square"
                           if name == "D" else r"G_ema is a 32x16 \(W x H\)"):
            tf_progressive.variables_to_tf(nets[name].variables, nets[name].module, name)
    assert cli.main(["convert", str(tmp_path / "nets"), str(tmp_path / "off"), "--to",
                     "official"]) == 2
    assert not (tmp_path / "off").exists()
    with pytest.raises(tf_progressive.ConversionError, match="unexpected G_paper kwarg "
                                                              "img_aspect"):
        tf_progressive.module_kwargs_from_tf("G_paper", {"img_aspect": [1, 2]})
