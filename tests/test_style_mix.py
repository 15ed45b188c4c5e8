"""`style-mix`: every cell against the generator run on a mixed w built here, headers against
the generator's own images of the seeds, the official file names and grid layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from stylegan_jax import cli, generate
from stylegan_jax.models import progan, stylegan2
from stylegan_jax.models.registry import Network
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools.style_mix import style_mix

ROWS, COLS, STYLES, PSI = [5, 1], [2, 7, 5], [0, 1, 2], 0.8
RES = 16


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    net = generate.random_generator(RES, seed=2)
    path = save_networks(tmp_path_factory.mktemp("net") / "G", {"G_ema": net})
    out = tmp_path_factory.mktemp("mix")
    assert cli.main(["style-mix", "--network", str(path), "--rows", "5,1", "--cols", "2,7,5",
                     "--styles", "0-2", "--trunc", str(PSI), "--outdir", str(out)]) == 0
    return net, path, out


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def test_files_have_the_official_names(mixed):
    _, _, out = mixed
    names = {f"{s}-{s}.png" for s in ROWS + COLS} | {f"{r}-{c}.png" for r in ROWS for c in COLS}
    assert {p.name for p in out.iterdir()} == names | {"grid.png"}


def test_cells_are_the_generator_on_the_mixed_w(mixed):
    net, _, out = mixed
    G = net.module
    seeds = sorted(set(ROWS + COLS))
    z = jnp.asarray(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    ws = np.asarray(G.apply(net.variables, z, jnp.zeros((len(seeds), 0)), PSI,
                            method=stylegan2.Generator.mapping_fn))
    w_of = dict(zip(seeds, ws, strict=True))
    render = jax.jit(lambda w: G.apply(net.variables, w, "const",
                                       method=stylegan2.Generator.synthesis_fn))
    for r in ROWS:
        for c in COLS:
            w = w_of[r].copy()
            for layer in range(G.num_ws):
                if layer in STYLES:
                    w[layer] = w_of[c][layer]
            img = np.clip(np.rint((np.asarray(render(w[None]))[0] + 1) * 127.5), 0, 255)
            assert np.abs(png(out / f"{r}-{c}.png") - img).max() <= 1, (r, c)
    # Mixing changed something: a mixed cell is neither of its parents.
    assert np.abs(png(out / "5-2.png") - png(out / "5-5.png")).max() > 10
    assert np.abs(png(out / "5-2.png") - png(out / "2-2.png")).max() > 10


def test_grid_layout_and_headers(mixed):
    net, _, out = mixed
    grid = png(out / "grid.png")
    assert grid.shape == ((len(ROWS) + 1) * RES, (len(COLS) + 1) * RES, 3)
    own = generate.generate_images(net, ROWS + COLS, truncation_psi=PSI).astype(int)

    def cell(i, j):
        return grid[i * RES:(i + 1) * RES, j * RES:(j + 1) * RES]

    assert not cell(0, 0).any()
    for j, seed in enumerate(COLS, start=1):
        assert np.abs(cell(0, j) - own[len(ROWS) + j - 1]).max() <= 1, seed
    for i, seed in enumerate(ROWS, start=1):
        assert np.abs(cell(i, 0) - own[i - 1]).max() <= 1, seed
        for j, col in enumerate(COLS, start=1):
            np.testing.assert_array_equal(cell(i, j), png(out / f"{seed}-{col}.png"))


def test_bad_styles_name_the_range(mixed, tmp_path, capsys):
    _, path, _ = mixed
    assert cli.main(["style-mix", "--network", str(path), "--rows", "1", "--cols", "2",
                     "--outdir", str(tmp_path)]) == 2  # the official 0-6 needs >= 7 ws
    assert "--styles: layers [6] out of range; this generator has 6 ws" in capsys.readouterr().err
    assert cli.main(["style-mix", "--network", str(path), "--rows", "1,x", "--cols", "2",
                     "--styles", "0", "--outdir", str(tmp_path)]) == 2
    assert "--rows: 'x'" in capsys.readouterr().err


def test_progan_is_refused_clearly():
    G = progan.Generator(num_channels=3, resolution=16, latent_size=8)
    with pytest.raises(ValueError, match="no w space .ProGAN maps z straight to images"):
        style_mix(Network(G, {}), [1], [2], [0])
