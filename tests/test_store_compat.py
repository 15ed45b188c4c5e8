"""What users wrote before the package was restructured still loads after it.

`tests/data/premove/` holds a StyleGAN2 and a ProGAN training run, a converted run, an
official pickle and its conversion, all written by the last commit before the move, with
the images that code generated from each (its README says how they were made). The
references are the old code's output, not this code's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from stylegan_jax import cli
from stylegan_jax.generate import generate_images
from stylegan_jax.models.sampling import labels_for, latents_for_seeds, synthesize_jit
from stylegan_jax.store import runs
from stylegan_jax.store.load import load_generator, load_networks

DATA = Path(__file__).parent / "data" / "premove"
EXPECTED = np.load(DATA / "expected.npz")
SEEDS = [int(s) for s in EXPECTED["seeds"]]

# expected key -> (source, class index)
SOURCES = {
    "run_stylegan2": ("run_stylegan2", None),
    "run_progan": ("run_progan", None),
    "networks_stylegan2": ("networks_stylegan2", None),
    "converted_pickle": ("converted_pickle", 0),
    "official_pickle": ("official_G_ema.pkl", 0),
}


@pytest.mark.parametrize("key", sorted(SOURCES))
def test_old_artifacts_generate_the_old_images(key):
    source, class_idx = SOURCES[key]
    G = load_generator(DATA / source)
    images = generate_images(G, SEEDS, class_idx=class_idx, noise_mode="const")
    want = EXPECTED[key]
    assert images.shape == want.shape
    assert np.abs(images.astype(int) - want.astype(int)).max() <= 1  # rounding boundaries
    # The floats before uint8, as generate_images computes them (one batch, key of seed 0).
    z = jnp.asarray(latents_for_seeds(SEEDS, G.module.z_dim))
    c = jnp.asarray(labels_for(class_idx, G.module.c_dim, len(SEEDS)))
    floats = np.asarray(synthesize_jit(G.module, G.variables, z, c, jax.random.PRNGKey(SEEDS[0]),
                                       jnp.float32(G.lod), noise_mode="const"))
    ref = EXPECTED[f"{key}_float32"]
    np.testing.assert_allclose(floats, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("run", ["run_stylegan2", "run_progan"])
def test_old_runs_restore_their_step_and_level_of_detail(run):
    step, nets = runs.networks_at(DATA / run)
    assert step == int(EXPECTED[f"{run}_step"])
    assert nets["G_ema"].lod == pytest.approx(float(EXPECTED[f"{run}_lod"]))
    assert sorted(nets) == ["D", "G", "G_ema"]
    # A named checkpoint is the same checkpoint.
    named = load_networks(DATA / run / "checkpoints" / str(step))
    for a, b in zip(jax.tree_util.tree_leaves(named["G_ema"].variables),
                    jax.tree_util.tree_leaves(nets["G_ema"].variables), strict=True):
        np.testing.assert_array_equal(a, b)


def _flat(variables) -> dict:
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}


@pytest.mark.parametrize("source, old", [("official_G_ema.pkl", "converted_pickle"),
                                         ("run_stylegan2", "networks_stylegan2")])
def test_convert_writes_what_it_wrote_before(tmp_path, source, old):
    src = tmp_path / source
    # A run is copied first: nothing may write into the fixtures.
    (shutil.copytree if (DATA / source).is_dir() else shutil.copy)(DATA / source, src)
    assert cli.main(["convert", str(src), str(tmp_path / "new"), "--only", "G_ema"]) == 0
    manifest = json.loads((tmp_path / "new" / "networks.json").read_text())
    before = json.loads((DATA / old / "networks.json").read_text())
    assert manifest["networks"] == before["networks"]
    new, ref = load_networks(tmp_path / "new")["G_ema"], load_networks(DATA / old)["G_ema"]
    a, b = _flat(new.variables), _flat(ref.variables)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
