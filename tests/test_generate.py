"""`generate`: projected ws (official projected_w.npz), official .pkl networks, grid switch,
and the mapping/synthesis split the tools share, against the generators' own forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import official_pickle as op
import pytest
from official_fixtures import DATA, load, official_init_kwargs, subdict
from PIL import Image

from stylegan_jax import cli, generate
from stylegan_jax.models import progan, sampling, stylegan, stylegan2
from stylegan_jax.models.registry import Network
from stylegan_jax.store.networks import save_networks

SEEDS = [3, 8]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    net = generate.random_generator(16, seed=1)
    path = save_networks(tmp_path_factory.mktemp("net") / "G", {"G_ema": net})
    return net, path


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_projected_w_renders_one_image_per_row(saved, tmp_path, capsys):
    """proj00.png, proj01.png hold the generator's images of the ws in the file: the ws of
    seeds (mapped here through the module directly) render as those seeds do."""
    net, path = saved
    G = net.module
    z = jnp.asarray(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in SEEDS]))
    ws = G.apply(net.variables, z, jnp.zeros((2, 0)), 0.7, method=stylegan2.Generator.mapping_fn)
    assert ws.shape == (2, G.num_ws, G.w_dim)
    np.savez(tmp_path / "projected_w.npz", w=np.asarray(ws))
    out = tmp_path / "out"
    assert cli.main(["generate", "--network", str(path), "--projected-w",
                     str(tmp_path / "projected_w.npz"), "--seeds", "1", "--outdir",
                     str(out)]) == 0
    assert "--seeds is ignored" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "proj00.png", "proj01.png"]
    expected = generate.generate_images(net, SEEDS, truncation_psi=0.7)
    for i in range(2):
        got = png(out / f"proj{i:02d}.png").astype(int)
        # Two compiled programs (mapping | synthesis vs. whole generator): rounding may
        # flip a level.
        assert np.abs(got - expected[i]).max() <= 1


def test_projected_w_bad_files_name_the_file_and_shape(saved, tmp_path, capsys):
    _, path = saved
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, w=np.zeros((1, 5, 64), np.float32))
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, ws=np.zeros((1, 6, 64), np.float32))
    for f, msg in ((wrong, "expected [N, 6, 64]"), (nokey, "no array 'w'")):
        assert cli.main(["generate", "--network", str(path), "--projected-w", str(f),
                         "--outdir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert str(f) in err and msg in err, err


def test_ws_of_seeds_render_as_the_whole_generator_stylegan_v1():
    """StyleGAN v1: mapping -> truncation -> synthesis (the tools' path) equals the
    generator's __call__, with a cutoff and a fade-in lod."""
    G = stylegan.Generator(num_channels=3, resolution=16, latent_size=16, dlatent_size=16,
                           mapping_layers=2, mapping_fmaps=16, fmap_base=128, fmap_max=16)
    key = jax.random.PRNGKey(0)
    v = jax.jit(G.init)({"params": key, "noise": key}, jnp.zeros((1, 16)), jnp.zeros((1, 0)))
    v = jax.tree_util.tree_map(lambda a: a + 0.1, v)  # a non-zero dlatent_avg
    net = Network(G, v, lod=0.5)
    ws = generate.ws_for_seeds(net, SEEDS, truncation_psi=0.5, truncation_cutoff=4)
    assert ws.shape == (2, G.num_layers, 16)
    got = generate.images_from_ws(net, ws).astype(int)
    expected = generate.generate_images(net, SEEDS, 0.5, 4)
    assert np.abs(got - expected).max() <= 1
    plain = generate.ws_for_seeds(net, SEEDS)  # the cutoff and psi mattered:
    np.testing.assert_allclose(ws[:, 4:], plain[:, 4:], rtol=1e-6)
    assert np.linalg.norm(ws[:, :4] - plain[:, :4], axis=-1).min() > 1e-2


def test_progan_has_no_w_space():
    G = progan.Generator(num_channels=3, resolution=16, latent_size=8, fmap_base=64,
                         fmap_max=8)
    with pytest.raises(ValueError, match="no w space"):
        sampling.w_shape(G)


@pytest.fixture(scope="module")
def official_pkl(tmp_path_factory):
    """The official reference network (conditional, 16 px) as an official network pickle."""
    meta, arrays = load(DATA / "official" / "stylegan2_ada_16_orig_orig_cond.npz")
    g_init, _ = official_init_kwargs(meta)
    path = tmp_path_factory.mktemp("pkl") / "network-snapshot.pkl"
    G = op.records_from_state_dict("Generator", g_init, subdict(arrays, "G/"))
    op.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None), path)
    return path


def test_network_takes_an_official_pickle(official_pkl, tmp_path, capsys):
    """--network x.pkl renders what the converted directory renders; --no-grid; a bar."""
    assert cli.main(["convert", str(official_pkl), str(tmp_path / "conv")]) == 0
    common = ["--seeds", "0-3", "--class", "1", "--trunc", "0.7", "--batch-size", "2"]
    assert cli.main(["generate", "--network", str(official_pkl), *common, "--no-grid",
                     "--outdir", str(tmp_path / "a")]) == 0
    assert "generate" in capsys.readouterr().err  # the tqdm bar over 2 batches
    assert cli.main(["generate", "--network", str(tmp_path / "conv"), *common, "--grid",
                     "--outdir", str(tmp_path / "b")]) == 0
    names = [f"seed{s:04d}.png" for s in range(4)]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["grid.png", *names]
    for n in names:
        np.testing.assert_array_equal(png(tmp_path / "a" / n), png(tmp_path / "b" / n))
    assert cli.main(["generate", "--network", str(official_pkl), "--which", "D_ema",
                     "--outdir", str(tmp_path / "c")]) == 2
    assert "no network 'D_ema'" in capsys.readouterr().err
    missing = tmp_path / "missing.pkl"
    assert cli.main(["generate", "--network", str(missing), "--outdir", str(tmp_path)]) == 2
    assert f"--network: {missing} is not a file" in capsys.readouterr().err


def test_random_init_takes_w_x_h(tmp_path, capsys):
    """`--random-init --resolution 32x16` renders 32 wide, 16 high; a bad size is one line."""
    assert cli.main(["generate", "--random-init", "--resolution", "32x16", "--seeds", "0",
                     "--outdir", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "seed0000.png").size == (32, 16)
    assert cli.main(["generate", "--random-init", "--resolution", "32x12", "--seeds", "0",
                     "--outdir", str(tmp_path / "bad")]) == 2
    assert "--resolution: got '32x12'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
