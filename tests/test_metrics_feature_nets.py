"""Feature networks of the metrics against pytorch-fid / torchvision / lpips reference outputs.

One test case per file: tests/data/feature_nets/*.npz (see the README there) and every
file of the same family under $SGJ_REFERENCE_DIR. The weights are rebuilt from the
fixture's rule (tests/feature_net_fixtures.py) and go through the state-dict converters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from feature_net_fixtures import files_of, rule_state_dict
from official_fixtures import assert_close, load, nchw_to_nhwc, subdict

from stylegan_jax.metrics import fid, image_ops, inception, lpips, vgg

INCEPTION_FILES = files_of("pytorch_fid_inception")
VGG_FILES = files_of("vgg16_lpips")
_inception = jax.jit(inception.FIDInceptionV3().apply)
_vgg = jax.jit(vgg.VGG16().apply)
_lpips = jax.jit(lpips.LPIPS().apply)


@pytest.mark.parametrize("path", INCEPTION_FILES, ids=[p.stem for p in INCEPTION_FILES])
def test_fid_inception_matches_pytorch_fid(path):
    meta, arrays = load(path)
    variables = inception.params_from_state_dict(rule_state_dict(meta["state_dict_keys"]))
    io = subdict(arrays, "io/")
    names = sorted(k[: -len("_images_uint8_nchw")] for k in io if k.endswith("_images_uint8_nchw"))
    assert names, f"{path} holds no io/<name>_images_uint8_nchw"
    for name in names:
        images = jnp.asarray(nchw_to_nhwc(io[f"{name}_images_uint8_nchw"]))
        pool3, logits = _inception(variables, images)
        assert_close(f"{name}_pool3", pool3, io[f"{name}_pool3"], 1e-4)
        assert_close(f"{name}_logits", logits, io[f"{name}_logits"], 1e-4)


@pytest.mark.parametrize("path", INCEPTION_FILES, ids=[p.stem for p in INCEPTION_FILES])
def test_frechet_distance_matches_pytorch_fid(path):
    _, arrays = load(path)
    fd = subdict(arrays, "fd/")
    ours = fid.frechet_distance(fd["mu1"], fd["sigma1"], fd["mu2"], fd["sigma2"])
    assert abs(ours - float(fd["fid"])) <= 1e-6 * abs(float(fd["fid"]))


@pytest.mark.parametrize("path", VGG_FILES, ids=[p.stem for p in VGG_FILES])
def test_vgg16_and_lpips_match_torchvision_and_lpips(path):
    meta, arrays = load(path)
    sd = rule_state_dict(meta["vgg16_state_dict_keys"])
    fc2, fc2_relu = _vgg(vgg.params_from_state_dict(sd), jnp.asarray(
        nchw_to_nhwc(arrays["vgg/input_nchw"])))
    assert_close("fc2", fc2, arrays["vgg/fc2"], 1e-4)
    assert_close("fc2_relu", fc2_relu, arrays["vgg/fc2_relu"], 1e-4)

    variables = lpips.params_from_state_dicts(sd, subdict(arrays, "lpips_lin/"))
    a, b = (jnp.asarray(nchw_to_nhwc(arrays[f"lpips/{k}_nchw"])) for k in "ab")
    assert_close("lpips", _lpips(variables, a, b), arrays["lpips/distance"], 1e-4)


def test_lpips_reads_either_linear_layer_naming():
    """The shipped file names them lin<k>.model.1.weight; newer lpips also has lins.<k>."""
    w = {f"lins.{k}.model.1.weight": np.full((1, c, 1, 1), k, np.float32)
         for k, c in enumerate(lpips.CHANNELS)}
    got = lpips.lin_weights(w, "x.pth")
    assert [float(got[f"lin{k}"][0]) for k in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"x\.pth: no lin0"):
        lpips.lin_weights({}, "x.pth")


def test_wrong_state_dict_is_refused_with_its_key(tmp_path):
    sd = {"Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 5, 5), np.float32)}
    with pytest.raises(ValueError, match=r"w\.pth: not a .*pt_inception.*missing: "
                                         r"\['Conv2d_1a_3x3\.bn\.bias'.*wrong shape: "
                                         r"\['Conv2d_1a_3x3\.conv\.weight \(32, 3, 5, 5\) "
                                         r"!= \(32, 3, 3, 3\)"):
        inception.params_from_state_dict(sd, "w.pth")
    with pytest.raises(ValueError, match="unexpected entry 'features.0.weight'"):
        inception.params_from_state_dict({"features.0.weight": np.zeros(3)}, "w.pth")
    with pytest.raises(ValueError, match=r"v\.pth: not a torchvision vgg16"):
        vgg.params_from_state_dict({}, "v.pth")


def test_area_resize_is_box_average_and_adaptive_pool():
    x = np.random.default_rng(0).standard_normal((2, 8, 12, 3)).astype(np.float32)
    box = x.reshape(2, 4, 2, 4, 3, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(image_ops.resize_area(jnp.asarray(x), (4, 4)), box, atol=1e-6)
    # torch's adaptive pooling bins for 5 -> 3: [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(image_ops.area_matrix(5, 3),
                               [[.5, .5, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, .5, .5]],
                               atol=1e-7)


def test_bilinear_resize_follows_half_pixel_centres():
    # 2 -> 4 with align_corners=False: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    np.testing.assert_allclose(image_ops.bilinear_matrix(2, 4),
                               [[1, 0], [.75, .25], [.25, .75], [0, 1]], atol=1e-7)
    # downscaling is not antialiased: 4 -> 2 samples at 0.5 and 2.5
    np.testing.assert_allclose(image_ops.bilinear_matrix(4, 2),
                               [[.5, .5, 0, 0], [0, 0, .5, .5]], atol=1e-7)
