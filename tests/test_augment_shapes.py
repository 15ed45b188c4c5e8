"""The ADA pipe on non-square (H != W) and RGBA batches, against NVIDIA's pipe.

The references (tests/data/augment/shapes, see the README there) are the official
AugmentPipe run on rectangles with recorded draws; for RGBA, the official pipe on the RGB
part plus the official pipe on the alpha channel alone with colour operations and noise
off. As for the square files, output and input gradient must be within 1e-4 * max|ref| of
the official float64 results, here per channel group (colour channels, alpha) so that the
large colour values of a contrast/filter draw do not hide an error in alpha.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from official_fixtures import DATA, assert_close, load, nchw_to_nhwc
from test_augment_official import replay_official

from stylegan_jax.augment import (
    augment,
    check_images,
    draw_plan,
    make_config,
    named_pipe,
)

FILES = sorted((DATA / "augment" / "shapes").glob("*.npz"))


def test_fixtures_present():
    assert [f.stem for f in FILES] == [
        "augment_bgcfnc_48x24_rgba", "augment_blit_32x16_rgb", "augment_color_16x32_rgba",
        "augment_geom_16x32_rgb"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    meta, arrays = load(path)
    shape = nchw_to_nhwc(arrays["io/images"]).shape
    assert shape[1:] == (meta["height"], meta["width"], meta["channels"])
    out, grad = replay_official(meta, arrays)  # RGBA consumes exactly the official RGB draws
    groups = {"rgb": slice(0, 3), "alpha": slice(3, 4)}
    for group, channels in list(groups.items())[:1 + (meta["channels"] == 4)]:
        assert_close(f"out {group}", out[..., channels],
                     nchw_to_nhwc(arrays["io/out"])[..., channels], 1e-4)
        assert_close(f"grad {group}", grad[..., channels],
                     nchw_to_nhwc(arrays["io/grad"])[..., channels], 1e-4)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_plan_is_the_official_draw_sequence(path):
    # The draws a key-driven run makes are those the official code asked for (an RGBA
    # batch: those of the RGB batch, noise drawn for the colour channels only).
    meta, _ = load(path)
    shape = (meta["batch"], meta["height"], meta["width"], meta["channels"])
    plan = draw_plan(make_config(meta["kwargs"]), shape)
    assert plan == tuple(zip(meta["draw_kinds"], map(tuple, meta["draw_shapes"]), strict=True))


def test_alpha_kept_exactly_by_colour_and_noise():
    """Colour ops and noise leave alpha bit-for-bit (values and gradient); the colour
    channels are the RGB pipe's with the same key."""
    x = jax.random.uniform(jax.random.key(0), (2, 8, 16, 4), jnp.float32, -1, 1)
    ct = jax.random.normal(jax.random.key(1), x.shape)
    cfg = named_pipe("color").replace(noise=1.0)

    @jax.jit
    def run(x, key):
        out, vjp = jax.vjp(lambda x: augment(x, 1.0, cfg, key), x)
        return out, vjp(ct[..., :x.shape[-1]])[0]

    out, grad = run(x, jax.random.key(2))
    np.testing.assert_array_equal(out[..., 3], x[..., 3])
    np.testing.assert_array_equal(grad[..., 3], ct[..., 3])
    assert np.abs(np.asarray(out[..., :3] - x[..., :3])).min() > 0  # every pixel changed
    rgb_out, rgb_grad = run(x[..., :3], jax.random.key(2))
    np.testing.assert_allclose(out[..., :3], rgb_out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad[..., :3], rgb_grad, rtol=1e-6, atol=1e-6)


def test_shape_and_channel_checks():
    bgcfnc = named_pipe("bgcfnc")
    for shape in ((2, 64, 32, 4), (2, 32, 64, 1), (1, 24, 96, 3)):
        check_images(bgcfnc, shape)
    # Geometry, filtering and cutout take any channel count, as the official pipe.
    assert draw_plan(named_pipe("bg").replace(imgfilter=1, cutout=1), (2, 32, 24, 2))
    for pipe, channels, op in (("color", 2, "brightness"), ("bgcfnc", 5, "brightness"),
                               ("noise", 2, "noise")):
        message = rf"augment {op}: .*1 \(L\), 3 \(RGB\) or 4 \(RGBA\).* got {channels}"
        with pytest.raises(ValueError, match=message):
            draw_plan(named_pipe(pipe), (2, 32, 32, channels))
        with pytest.raises(ValueError, match=message):
            augment(jnp.zeros((2, 32, 32, channels)), 0.5, pipe, jax.random.key(0))
    with pytest.raises(ValueError, match="imgfilter .* 21 .* got 64x16"):
        check_images(named_pipe("filter"), (2, 64, 16, 4))
    with pytest.raises(ValueError, match="2x2 pixels, got 1x32"):
        draw_plan(named_pipe("blit"), (2, 1, 32, 3))
    with pytest.raises(ValueError, match="NHWC .* got shape \\(32, 16, 4\\)"):
        draw_plan(named_pipe("color"), (32, 16, 4))
