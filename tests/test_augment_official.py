"""The ADA pipe against NVIDIA's official AugmentPipe, replaying its recorded draws.

One test case per fixture file: tests/data/augment/*.npz (see the README there) and,
when $SGJ_REFERENCE_DIR is set, every file in it whose meta.family is
stylegan2_ada_augment. Output and input gradient must be within 1e-4 * max|ref| of the
official float64 results (the official float32 run itself is within 1.6e-5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from official_fixtures import DATA, assert_close, fixture_files, load, nchw_to_nhwc

from stylegan_jax.augment import RecordedDraws, augment, make_config

FILES = fixture_files("stylegan2_ada_augment", DATA / "augment")


def test_fixtures_present():
    assert len([f for f in FILES if f.parent == DATA / "augment"]) == 7


def replay_official(meta: dict, arrays: dict) -> tuple[jax.Array, jax.Array]:
    """(output, input gradient) of the pipe on a recorded official batch, replaying the
    official draws (every one must be consumed, in the official order)."""
    kinds = meta["draw_kinds"]
    draws = [arrays[f"draws/{i:03d}"] for i in range(len(kinds))]
    cfg = make_config(meta["kwargs"])
    images = jnp.asarray(nchw_to_nhwc(arrays["io/images"]))
    cotangent = jnp.asarray(nchw_to_nhwc(arrays["io/cotangent"]))

    @jax.jit
    def run(images, draws, p, cotangent):
        source = RecordedDraws(draws, kinds)
        out, vjp = jax.vjp(lambda x: augment(x, p, cfg, source), images)
        source.finish()
        return out, vjp(cotangent)[0]

    return run(images, draws, np.float32(meta["p"]), cotangent)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    meta, arrays = load(path)
    out, grad = replay_official(meta, arrays)
    assert_close("out", out, nchw_to_nhwc(arrays["io/out"]), 1e-4)
    assert_close("grad", grad, nchw_to_nhwc(arrays["io/grad"]), 1e-4)
