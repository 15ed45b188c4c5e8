"""Non-square and RGBA data: W x H sizes, the dataset tool's crops and padding to a ratio,
alpha kept from the file to the shards and PNGs, and the config's W x H override.

References: PIL called here directly (crop, paste, resize), numpy slicing, and
TensorFlow's own TFRecord reader for the shards.
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from test_data_tool import read_with_tensorflow, write_folder

from stylegan_jax import cli, images
from stylegan_jax.data import images as data_images
from stylegan_jax.data.shards import read_manifest
from stylegan_jax.shapes import ImageShape, parse_size
from stylegan_jax.train import config as config_lib

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("text, hw", [(32, (32, 32)), ("512x256", (256, 512)),
                                      ("16x32", (32, 16)), (" 64 X 64 ", (64, 64))])
def test_sizes_read_as_width_by_height(text, hw):
    size = parse_size(text)
    assert (size.height, size.width) == hw
    assert size.resolution == min(hw) and size.at(4) == (4 * hw[0] // min(hw),
                                                         4 * hw[1] // min(hw))


@pytest.mark.parametrize("text, match", [
    ("48x16", "both sides must be powers of two"), ("8x2", "shorter side must be >= 4"),
    ("wide", "expected a power of two .* or WxH"), (True, "expected a power of two")])
def test_bad_sizes_name_the_value(text, match):
    with pytest.raises(ValueError, match=match):
        parse_size(text, "--resolution")


def _pil(image: np.ndarray) -> PIL.Image.Image:
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[image.shape[-1]]
    return PIL.Image.fromarray(image[..., 0] if mode == "L" else image, mode)


def test_center_crop_to_a_ratio_is_pils_crop_and_resize():
    image = RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8)  # W 70 x H 50 -> 2:1 target
    out = data_images.transform_image(image, 16, "center-crop", "lanczos", aspect=(1, 2))
    # the largest centred 2:1 crop of 70x50 is 70x35 at top (50 - 35) // 2 = 7
    want = np.asarray(_pil(image).crop((0, 7, 70, 42)).resize((32, 16), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(out, want)


def test_pad_to_ratio_centres_on_transparent_bands():
    image = RNG.integers(0, 256, (40, 40, 4), dtype=np.uint8)  # square RGBA -> 2:1 (W 80)
    out = data_images.transform_image(image, 16, "pad-to-ratio", "bicubic", aspect=(1, 2))
    canvas = PIL.Image.new("RGBA", (80, 40), (0, 0, 0, 0))
    canvas.paste(_pil(image), (20, 0))
    want = np.asarray(canvas.resize((32, 16), PIL.Image.BICUBIC))
    np.testing.assert_array_equal(out, want)
    assert out.shape == (16, 32, 4) and out[:, :2, 3].max() == 0  # the bands are transparent


def test_a_wrong_ratio_or_a_square_only_transform_is_named():
    tall = np.zeros((64, 32, 3), np.uint8)
    with pytest.raises(data_images.BadImage, match="image is 32x64, not 64:32; use"):
        data_images.transform_image(tall, 32, "none", aspect=(1, 2))
    with pytest.raises(ValueError, match="center-crop-wide letterboxes onto a square"):
        data_images.transform_image(tall, 16, "center-crop-wide", aspect=(2, 1))


def test_alpha_is_decoded_kept_and_refused_where_it_would_be_lost():
    la = PIL.Image.fromarray(RNG.integers(0, 256, (8, 8, 2), dtype=np.uint8), "LA")
    buf = __import__("io").BytesIO()
    la.save(buf, "PNG")
    decoded = data_images.decode_image(buf.getvalue())
    np.testing.assert_array_equal(decoded, np.asarray(la.convert("RGBA")))
    with pytest.raises(data_images.BadImage, match="alpha channel .* --channels 4"):
        data_images.to_channels(decoded, 3)
    opaque = data_images.to_channels(np.full((2, 2, 1), 7, np.uint8), 4)
    np.testing.assert_array_equal(opaque[0, 0], [7, 7, 7, 255])


def test_rgba_pngs_keep_their_alpha(tmp_path):
    image = RNG.integers(0, 256, (16, 32, 4), dtype=np.uint8)
    path = images.save_image(image, tmp_path / "a.png")
    back = PIL.Image.open(path)
    assert back.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(back), image)


def test_mixed_aspect_rgba_folder_to_a_labelled_rectangle(tmp_path, capsys):
    """The acceptance case's dataset: mixed aspects with alpha in class sub-folders."""
    files = {}
    for k, name in enumerate(("cats", "dogs")):
        for i, (h, w) in enumerate([(40, 40), (30, 90), (90, 30)]):
            files[f"{name}/{i}.png"] = RNG.integers(0, 256, (h, w, 4), dtype=np.uint8)
            files[f"{name}/{i}.png"][..., 3] = 100 + 50 * k
    src = write_folder(tmp_path / "src", files)
    assert cli.main(["dataset", "--source", str(src), "--dest", str(tmp_path / "ds"),
                     "--resolution", "32x16", "--channels", "4", "--transform", "pad-to-ratio",
                     "--labels", "folders", "--min-resolution", "8", "--no-progress"]) == 0
    assert "wrote 6 images (32x16, 4 channel(s), 2 classes" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "ds")
    assert (manifest["aspect"], manifest["width"], manifest["height"]) == ([1, 2], 32, 16)
    assert manifest["class_names"] == ["cats", "dogs"]
    stored = read_with_tensorflow(tmp_path / "ds", 16, 4)
    for j, name in enumerate(sorted(files)):
        img = files[name]
        h, w = img.shape[:2]
        ph, pw = (w // 2, w) if w >= 2 * h else (h, 2 * h)
        canvas = PIL.Image.new("RGBA", (max(pw, w), max(ph, h)), (0, 0, 0, 0))
        canvas.paste(_pil(img), ((canvas.width - w) // 2, (canvas.height - h) // 2))
        want = np.asarray(canvas.resize((32, 16), PIL.Image.LANCZOS))
        np.testing.assert_array_equal(stored[j], want)
    low = read_with_tensorflow(tmp_path / "ds", 8, 4)
    blocks = stored.reshape(6, 8, 2, 16, 2, 4).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(low, np.rint(blocks).astype(np.uint8))


def test_the_config_takes_width_by_height():
    config = config_lib.load_config("quickstart")
    config_lib.apply_override(config, "--config.data.resolution=64x32")
    assert (config.data.resolution, tuple(config.data.aspect)) == (32, (1, 2))
    assert str(ImageShape.of(config.data.resolution, config.data.aspect)) == "64x32"
    with pytest.raises(config_lib.ConfigError, match="config.data.resolution: got '48x32'"):
        config_lib.apply_override(config, "--config.data.resolution=48x32")
    progan = config_lib.load_config("progan_quick")
    config_lib.apply_override(progan, "--config.data.resolution=64x32")
    config_lib.validate(progan, 1)  # every family builds W x H


def test_manifests_before_rectangles_read_as_squares(tmp_path):
    src = write_folder(tmp_path / "src", {"a.png": np.zeros((8, 8, 3), np.uint8)})
    assert cli.main(["dataset", "--source", str(src), "--dest", str(tmp_path / "ds"),
                     "--resolution", "8", "--no-progress"]) == 0
    path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("aspect", "width", "height"):
        del manifest[key]
    path.write_text(json.dumps(manifest))
    assert read_manifest(tmp_path / "ds")["aspect"] == [1, 1]
    manifest["aspect"] = [2, 2]
    path.write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="field 'aspect' must be"):
        read_manifest(tmp_path / "ds")


def test_metrics_see_rgba_composited_over_black():
    from stylegan_jax.metrics import image_ops

    rgba = RNG.uniform(0, 1, (2, 4, 8, 4)).astype(np.float32)
    want = rgba[..., :3] * rgba[..., 3:]  # over black, alpha in [0, 1]
    np.testing.assert_allclose(np.asarray(image_ops.to_rgb(rgba)), want, rtol=1e-6)
    signed = rgba * 2 - 1  # the same images in [-1, 1]: black is -1
    np.testing.assert_allclose(np.asarray(image_ops.to_rgb(signed, (-1.0, 1.0))),
                               want * 2 - 1, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        image_ops.to_rgb(rgba[..., :2])


def test_bundled_faces_come_at_w_x_h():
    """The bundled crops at a config's W x H: centre-cropped from the square upscaled to the
    longer side, or padded with black bands around the square at the shorter side (PIL
    references); the config's transform reaches the source."""
    import skimage.data

    from stylegan_jax.data import sources

    crops = np.rint(np.clip(skimage.data.lfw_subset(), 0, 1) * 255).astype(np.uint8)[:3]
    wide = sources.bundled_faces(16, 1, aspect=(1, 2))  # 32 wide, 16 high, centre crop
    assert wide.shape == (100, 16, 32, 1)
    for got, crop in zip(wide, crops, strict=False):
        big = np.asarray(PIL.Image.fromarray(crop).resize((32, 32), PIL.Image.BICUBIC))
        np.testing.assert_array_equal(got[..., 0], big[8:24])
    tall = sources.bundled_faces(16, 1, aspect=(2, 1), transform="pad-to-ratio")
    assert tall.shape == (100, 32, 16, 1)
    for got, crop in zip(tall, crops, strict=False):
        small = np.asarray(PIL.Image.fromarray(crop).resize((16, 16), PIL.Image.BOX))
        np.testing.assert_array_equal(got[8:24, :, 0], small)
        assert not got[:8].any() and not got[24:].any()
    config = config_lib.load_config("quickstart", ["--config.data.resolution=16x32",
                                                   "--config.data.transform=pad-to-ratio"])
    src = sources.SourceConfig.from_dict(sources.source_from_config(config.data))
    indexed = sources.open_indexed(src)
    assert (indexed.resolution, indexed.aspect) == (16, (2, 1))
    np.testing.assert_array_equal(indexed.images_at(16).read(np.arange(100)), tall)
    with pytest.raises(ValueError, match="source aspect and transform are for kinds"):
        sources.SourceConfig(kind="tfrecord", path="x", aspect=(1, 2))
