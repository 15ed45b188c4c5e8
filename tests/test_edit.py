"""`stylegan-jax edit`: every cell against the generator run here on w + s * sigma * v (on the
direction's layers or --layers), the strength-0 column against `generate`, byte-identical
reruns, --projected-w rows, the video's frames, and one-line errors."""

from __future__ import annotations

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_generators
from PIL import Image

from stylegan_jax import cli
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import latent_directions as ld

RES, W_DIM, NUM_WS = 16, 32, 6
SEEDS = [4, 0, 9]
STRENGTHS = [-2.0, -1.0, 0.0, 1.0, 2.0]
SIGMA = 1.7
LAYERS = (0, 3)
PSI = 0.8


def tiny_generator() -> stylegan2.Generator:
    return stylegan2.Generator(z_dim=32, c_dim=0, w_dim=W_DIM, img_resolution=RES,
                               img_channels=3, mapping_layers=2, channel_base=512,
                               channel_max=32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny generator (noise strengths and w_avg off zero, so that noise and psi show) and
    a directions file: one random unit vector (sigma 1.7, layers 0-3); and a file made for
    another w_dim."""
    G = tiny_generator()
    key = jax.random.PRNGKey(1)
    net = tiny_generators.visible(Network(G, jax.jit(G.init)(
        {"params": key, "noise": key}, jnp.zeros((1, 32)), jnp.zeros((1, 0)))))
    root = tmp_path_factory.mktemp("edit")
    path = save_networks(root / "G", {"G_ema": net})
    v = np.random.default_rng(0).standard_normal(W_DIM)
    d = ld.Direction((v / np.linalg.norm(v)).astype(np.float32), SIGMA, LAYERS, "labels", 0.9,
                     "thing")
    directions = ld.save_directions(root / "d.npz", [d], {"num_ws": NUM_WS, "w_dim": W_DIM})
    other = ld.save_directions(root / "other.npz",
                               [ld.Direction(np.eye(16, dtype=np.float32)[0], 1.0, (0, 5),
                                             "sefa", 0.1, "sefa0")],
                               {"num_ws": NUM_WS, "w_dim": 16})
    return net, path, d, directions, other


def run_edit(setup, outdir, *argv) -> int:
    _, path, _, directions, _ = setup
    return cli.main(["edit", "--network", str(path), "--directions", str(directions),
                     "--batch-size", "8", "--outdir", str(outdir), *argv])


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def cells(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return grid.reshape(rows, RES, cols, RES, -1).transpose(0, 2, 1, 3, 4)


@jax.jit
def _synthesis(variables, ws):
    return tiny_generator().apply(variables, ws, "const", method=stylegan2.Generator.synthesis_fn)


def reference(net: Network, ws: np.ndarray, vector, strengths, layers) -> np.ndarray:
    """int [N, S, RES, RES, 3]: the generator on ws moved by s * SIGMA * vector on rows
    layers[0]..layers[1], rendered here through the module."""
    out = []
    for w in ws:
        row = []
        for s in strengths:
            moved = w.copy()
            moved[layers[0]:layers[1] + 1] += s * SIGMA * vector
            img = np.asarray(_synthesis(net.variables, jnp.asarray(moved[None])))[0]
            row.append(np.clip(np.rint((img + 1) * 127.5), 0, 255))
        out.append(row)
    return np.array(out)


def seed_ws(net: Network, seeds, psi: float) -> np.ndarray:
    G = net.module
    z = jnp.asarray(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    return np.asarray(G.apply(net.variables, z, jnp.zeros((len(seeds), 0)), psi,
                              method=stylegan2.Generator.mapping_fn))


@pytest.fixture(scope="module")
def grid(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    assert run_edit(setup, out, "--seeds", "4,0,9", "--strengths=-2:2:5", "--psi",
                    str(PSI)) == 0
    return out / "grid.png"


def test_grid_cells_are_the_edited_ws(setup, grid):
    net, _, d, _, _ = setup
    image = png(grid)
    assert image.shape == (len(SEEDS) * RES, len(STRENGTHS) * RES, 3)
    want = reference(net, seed_ws(net, SEEDS, PSI), d.vector, STRENGTHS, LAYERS)
    assert np.abs(cells(image, len(SEEDS), len(STRENGTHS)) - want).max() <= 1


def test_strength_zero_is_generate(setup, grid, tmp_path):
    _, path, _, _, _ = setup
    assert cli.main(["generate", "--network", str(path), "--seeds", "4,0,9", "--trunc",
                     str(PSI), "--outdir", str(tmp_path), "--no-grid"]) == 0
    zero = cells(png(grid), len(SEEDS), len(STRENGTHS))[:, STRENGTHS.index(0.0)]
    for r, seed in enumerate(SEEDS):
        assert np.abs(zero[r] - png(tmp_path / f"seed{seed:04d}.png")).max() == 0


def test_larger_strengths_move_the_image_more(grid):
    c = cells(png(grid), len(SEEDS), len(STRENGTHS))
    zero = STRENGTHS.index(0.0)
    diff = {s: np.abs(c[:, i] - c[:, zero]).mean() for i, s in enumerate(STRENGTHS)}
    assert 0 == diff[0.0] < diff[1.0] < diff[2.0]
    assert 0 < diff[-1.0] < diff[-2.0]


def test_same_inputs_same_bytes(setup, grid, tmp_path):
    assert run_edit(setup, tmp_path, "--seeds", "4,0,9", "--strengths=-2:2:5", "--psi",
                    str(PSI)) == 0
    assert (tmp_path / "grid.png").read_bytes() == grid.read_bytes()


def test_layers_override(setup, tmp_path):
    net, _, d, _, _ = setup
    assert run_edit(setup, tmp_path, "--seeds", "4,0", "--strengths", "0,3", "--layers",
                    "4-5") == 0
    image = cells(png(tmp_path / "grid.png"), 2, 2)
    ws = seed_ws(net, [4, 0], 1.0)
    assert np.abs(image - reference(net, ws, d.vector, [0, 3], (4, 5))).max() <= 1
    assert np.abs(image - reference(net, ws, d.vector, [0, 3], LAYERS)).max() > 10


def test_projected_w_rows(setup, tmp_path):
    """Rows from a projected_w.npz holding the ws of seeds 9 and 4 (psi 0.8) are the seeds'
    rows of the seed grid."""
    net, _, d, _, _ = setup
    np.savez(tmp_path / "projected_w.npz", w=seed_ws(net, [9, 4], PSI))
    assert run_edit(setup, tmp_path / "out", "--projected-w",
                    str(tmp_path / "projected_w.npz"), "--strengths", "1,2") == 0
    image = cells(png(tmp_path / "out" / "grid.png"), 2, 2)
    want = reference(net, seed_ws(net, [9, 4], PSI), d.vector, [1, 2], LAYERS)
    assert np.abs(image - want).max() <= 1


@pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called")  # imageio's ffmpeg reader
def test_video_sweeps_there_and_back(setup, tmp_path, capsys):
    assert run_edit(setup, tmp_path, "--seeds", "4,0", "--strengths=-1:1:4", "--video",
                    "--fps", "10") == 0
    assert "(6 frames)" in capsys.readouterr().out
    with imageio.get_reader(tmp_path / "edit.mp4") as reader:
        frames = [np.asarray(f) for f in reader]
    assert len(frames) == 6  # strengths 0, 1, 2, 3 then 2, 1: it loops
    assert frames[0].shape[:2] == (RES, 2 * RES)  # the two rows side by side (padded by
    # the encoder to a multiple of 16: here exact)
    assert np.abs(frames[1].astype(int) - frames[5]).mean() < 3  # same strength, H.264


@pytest.mark.parametrize("argv, match", [
    (["--index", "1"], "--index 1: "),
    (["--strengths", "1:2"], "--strengths: '1:2' is not A:B:N"),
    (["--layers", "3-6"], "--layers: layers 3-6 are not a range within this generator's 6"),
    (["--layers", "a"], "--layers: 'a' is not a layer range"),
    (["--seeds", "x"], "--seeds: 'x' is not a number"),
    ("other", "were made for a generator with num_ws 6, w_dim 16; this one has num_ws 6, "
              "w_dim 32"),
])
def test_errors_are_one_line(setup, tmp_path, capsys, argv, match):
    if argv == "other":
        _, path, _, _, other = setup
        rc = cli.main(["edit", "--network", str(path), "--directions", str(other),
                       "--outdir", str(tmp_path)])
    else:
        rc = run_edit(setup, tmp_path, *argv)
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("stylegan-jax edit: error: ") and match in err
    assert err.count("\n") == 1
    assert not (tmp_path / "grid.png").exists()
