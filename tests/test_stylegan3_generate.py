"""StyleGAN3 through the generation tools: `--translate` / `--rotate` as the official
gen_images.py sets the input transform, checked against the reference files' transforms."""

from __future__ import annotations

import numpy as np
import pytest
from official_fixtures import load
from test_stylegan3_official import FILES, official_generator

from stylegan_jax import generate
from stylegan_jax.model_store import Network

MOVED = [f for f in FILES if load(f)[0].get("transform")]


@pytest.mark.parametrize("path", MOVED, ids=[f.stem for f in MOVED])
def test_translate_and_rotate_set_the_official_transform(path):
    meta, arrays, G, variables = official_generator(path)
    tx, ty, degrees = meta["transform"]
    moved = generate.with_transform(Network(G, variables), (tx, ty), degrees)
    got = np.asarray(moved.variables["buffers"]["synthesis"]["input"]["transform"])
    np.testing.assert_allclose(got, arrays["G/synthesis.input.transform"], atol=1e-6)
    assert generate.stylegan3_transform().tolist() == np.eye(3).tolist()


def test_translate_is_refused_for_other_families():
    net = generate.random_generator(16)
    assert generate.with_transform(net) is net
    with pytest.raises(ValueError, match="StyleGAN3"):
        generate.with_transform(net, (0.1, 0.0), 0.0)
