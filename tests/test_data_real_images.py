"""The metrics' pass over a training source's real images: index order, process shares
(item i on process i % P), no mirroring, box-averaged lower resolutions, label draws, the
statistics-cache key, bad arguments, no tensorflow for indexed sources, and TFDS streams.

Every expectation comes from what the test wrote (or from bundled_faces / numpy means),
never from the code under test.
"""

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from stylegan_jax.data import SourceConfig, bundled_faces, sources
from stylegan_jax.data.dataset_tool import write_dataset
from stylegan_jax.data.inputs import Input, Listing
from stylegan_jax.data.real_images import RealImages, open_real_images
from stylegan_jax.metrics.feature_stats import cache_path

N = 11  # prime: no batch size or process count divides it
LABELS = [0] * 6 + [1] * 3 + [2] * 2  # frequencies 6/11, 3/11, 2/11
SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def write(dest, originals, labels=None, min_resolution=4):
    """A tool-written dataset of the originals (8x8), with a stored 4x4 level by default."""
    inputs = (
        Input(
            f"{i}.png",
            f"mem[{i}]",
            lambda i=i: originals[i],
            label=None if labels is None else labels[i],
        )
        for i in range(len(originals))
    )
    listing = Listing(inputs, len(originals), [], None, "", num_classes=3 if labels else None)
    write_dataset(dest, listing, resolution=8, min_resolution=min_resolution, shard_mb=0)
    return str(dest)


@pytest.fixture(scope="module")
def originals():
    return np.random.default_rng(0).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, originals):
    """'levels': labelled, stored 4x4 level; 'top': 8x8 only, no labels; 'other': other pixels."""
    root = tmp_path_factory.mktemp("real")
    other = np.random.default_rng(1).integers(0, 256, originals.shape, dtype=np.uint8)
    return {
        "levels": write(root / "levels", originals, LABELS),
        "top": write(root / "top", originals, min_resolution=8),
        "other": write(root / "other", other, min_resolution=8),
    }


def box_mean(images, factor):
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.float64)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def one_pass(real, batch_size, process_count):
    """Every process's batches; the images reassembled in dataset order (item i = share i % P,
    position i // P)."""
    shares = [
        list(real.batches(batch_size, process_index=p, process_count=process_count))
        for p in range(process_count)
    ]
    for share in shares:
        assert all(1 <= len(b) <= batch_size and b.dtype == np.uint8 for b in share)
        assert all(len(b) == batch_size for b in share[:-1])
    flat = [np.concatenate(s) if s else np.zeros((0,)) for s in shares]
    total = sum(len(f) for f in flat)
    out = [flat[i % process_count][i // process_count] for i in range(total)]
    return np.stack(out), [len(f) for f in flat]


@pytest.mark.parametrize("process_count", [1, 3])
def test_bundled_is_the_faces_in_order(process_count):
    real = open_real_images(SourceConfig())
    faces = bundled_faces()
    assert real.count == 100 and real.num_classes == 0 and real.resolution == 32
    images, sizes = one_pass(real, 16, process_count)
    np.testing.assert_array_equal(images, faces)  # in order, none mirrored
    assert sizes == [len(range(p, 100, process_count)) for p in range(process_count)]
    low, _ = one_pass(open_real_images({"kind": "bundled"}, resolution=8), 7, process_count)
    np.testing.assert_array_equal(low, box_mean(faces, 4))
    rgb, _ = one_pass(open_real_images(SourceConfig(channels=3)), 50, process_count)
    np.testing.assert_array_equal(rgb, bundled_faces(32, 3))


@pytest.mark.parametrize("process_count", [1, 2, 4, 12])
def test_tfrecord_is_the_source_images_in_order(datasets, originals, process_count):
    for name in ("levels", "top"):
        real = open_real_images(SourceConfig(kind="tfrecord", path=datasets[name]))
        assert (real.count, real.resolution, real.channels) == (N, 8, 3)
        images, sizes = one_pass(real, 3, process_count)
        np.testing.assert_array_equal(images, originals)
        assert sum(sizes) == N and max(sizes) - min(sizes) <= 1
        # The stored 4x4 level and the on-the-fly average both equal the numpy box mean.
        low = open_real_images({"kind": "tfrecord", "path": datasets[name]}, resolution=4)
        images, _ = one_pass(low, 4, process_count)
        np.testing.assert_array_equal(images, box_mean(originals, 2))


def test_label_fn_draws_with_the_label_frequencies(datasets):
    real = open_real_images(SourceConfig(kind="tfrecord", path=datasets["levels"]))
    assert real.num_classes == 3 and real.label_fn(0) is None
    draw = real.label_fn(3)
    c = draw(np.random.default_rng(5), 20000)
    assert c.shape == (20000, 3) and c.dtype == np.float32
    np.testing.assert_array_equal(c.sum(axis=1), 1)  # one-hot
    assert set(np.unique(c)) == {0.0, 1.0}
    expected = np.bincount(LABELS, minlength=3) / N
    np.testing.assert_allclose(c.mean(axis=0), expected, atol=0.015)
    again = real.label_fn(3)(np.random.default_rng(5), 20000)
    np.testing.assert_array_equal(c, again)  # the rng decides
    with pytest.raises(ValueError, match=r"levels.*3 classes.*c_dim=5"):
        real.label_fn(5)
    unlabelled = open_real_images(SourceConfig(kind="tfrecord", path=datasets["top"]))
    assert unlabelled.num_classes == 0
    with pytest.raises(ValueError, match=r"top.*no labels"):
        unlabelled.label_fn(3)
    with pytest.raises(ValueError, match="bundled faces.*no labels"):
        open_real_images(SourceConfig()).label_fn(2)


def test_key_names_the_data(datasets):
    def key(path, resolution=None):
        return open_real_images(SourceConfig(kind="tfrecord", path=path), resolution).key

    keys = {
        "levels": key(datasets["levels"]),
        "top": key(datasets["top"]),
        "other": key(datasets["other"]),
        "levels4": key(datasets["levels"], 4),
    }
    assert key(datasets["levels"]) == keys["levels"]  # stable across opens
    assert len(set(keys.values())) == 4
    assert keys["levels"].startswith("tfrecord-levels-8x3-11-")
    assert keys["levels4"].startswith("tfrecord-levels-4x3-11-")
    # Same manifest except the pixels: only the content fingerprint tells them apart.
    assert keys["top"].split("-")[:-1] == ["tfrecord", "top", "8x3", "11"]
    assert key(datasets["other"]).split("-")[:-1] == ["tfrecord", "other", "8x3", "11"]
    bundled = {open_real_images(SourceConfig(), r).key for r in (32, 16)}
    bundled.add(open_real_images(SourceConfig(channels=3)).key)
    bundled.add(open_real_images(SourceConfig(resolution=64), 32).key)  # other pixels at 32
    assert len(bundled) == 4
    assert open_real_images(SourceConfig()).key == open_real_images({}).key
    for k in [*keys.values(), *bundled]:
        assert SAFE.match(k), k


def test_identity_names_the_manifest_and_resize_filter(datasets, tmp_path):
    """What scores record about their data: the manifest's sha256 and the dataset tool's
    resize filter; the metrics' statistics cache is keyed by all of it."""
    real = open_real_images(SourceConfig(kind="tfrecord", path=datasets["levels"]), 4)
    manifest = Path(datasets["levels"]) / "manifest.json"
    ident = real.identity
    assert ident["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert ident["resize_filter"] == json.loads(manifest.read_text())["resize_filter"]
    assert ident["resize_filter"] == "lanczos"  # the tool's default, as the official tool's
    assert ident["level_resize"] is None and ident["count"] == N  # a stored 4x4 level
    top = open_real_images(SourceConfig(kind="tfrecord", path=datasets["top"]), 4).identity
    assert top["level_resize"] == "box average from 8x8"
    bundled = open_real_images(SourceConfig()).identity
    assert bundled["resize_filter"] == sources.BUNDLED_RESIZE and bundled["labels"] is False
    paths = {cache_path(tmp_path, real.key, "inception-abc", 10, dict(ident, resize_filter=f))
             for f in ("lanczos", "box")}
    assert len(paths) == 2


def test_bad_arguments_are_named(datasets, tmp_path):
    path = datasets["levels"]
    with pytest.raises(ValueError, match=rf"{re.escape(path)}.*resolution 16 exceeds .* 8"):
        open_real_images(SourceConfig(kind="tfrecord", path=path), resolution=16)
    with pytest.raises(ValueError, match="bundled faces.*exceeds the source's 32"):
        open_real_images(SourceConfig(), resolution=64)
    with pytest.raises(ValueError, match="power of two"):
        open_real_images(SourceConfig(), resolution=12)
    with pytest.raises(ValueError, match="unknown source fields"):
        open_real_images({"kind": "tfrecord", "paht": path})
    with pytest.raises(ValueError, match=f"{tmp_path}: no manifest.json"):
        open_real_images(SourceConfig(kind="tfrecord", path=str(tmp_path)))
    real = open_real_images(SourceConfig(kind="tfrecord", path=path))
    with pytest.raises(ValueError, match=rf"{re.escape(path)}: batch_size must be >= 1, got 0"):
        real.batches(0, 0, 1)  # raised by the call, not at the first batch
    with pytest.raises(ValueError, match=r"process_index 3 outside \[0, 3\)"):
        real.batches(4, 3, 3)
    with pytest.raises(ValueError, match=r"process_index 0 outside \[0, 0\)"):
        real.batches(4, 0, 0)
    assert isinstance(real, RealImages)


def test_defaults_to_jax_process_and_needs_no_tensorflow(datasets, originals):
    """The GPU machines have no tensorflow: a full pass of bundled and tfrecord sources must
    not import it (jax's process index and count are the defaults)."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from stylegan_jax.data import SourceConfig
        from stylegan_jax.data.real_images import open_real_images
        total = 0
        for source in (SourceConfig(), SourceConfig(kind="tfrecord", path={datasets["levels"]!r})):
            for resolution in (None, 4):
                real = open_real_images(source, resolution)
                total += sum(len(b) for b in real.batches(5))
                real.label_fn(real.num_classes)
                if real.num_classes:
                    real.label_fn(real.num_classes)(np.random.default_rng(0), 3)
        assert total == 2 * (100 + {N}), total
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        print("ok")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", script]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr


def test_tfds_mock_data_one_pass_over_two_processes():
    import tensorflow_datasets as tfds

    source = SourceConfig(kind="tfds", name="mnist", resolution=16, channels=1, label_key="label")
    with tfds.testing.mock_data(num_examples=20):
        reference = [int(x["label"]) for x in tfds.load("mnist", split="train").as_numpy_iterator()]
        real = open_real_images(source, resolution=8)
        assert (real.count, real.resolution, real.channels, real.num_classes) == (20, 8, 1, 10)
        whole, sizes = one_pass(real, 6, 1)
        shared, sizes = one_pass(real, 3, 2)
        draw = real.label_fn(10)
        c = draw(np.random.default_rng(0), 4000)
        assert open_real_images(source, resolution=8).key == real.key
        assert open_real_images(source).key != real.key
    assert whole.shape == (20, 8, 8, 1) and sizes == [10, 10]
    np.testing.assert_array_equal(shared, whole)  # item i on process i % 2, order kept
    assert len({x.tobytes() for x in whole}) == 20
    assert real.key.startswith("tfds-mnist-train-3.0.1-8x1-20-") and SAFE.match(real.key)
    assert c.shape == (4000, 10) and c.dtype == np.float32
    np.testing.assert_array_equal(c.sum(axis=1), 1)
    expected = np.bincount(reference, minlength=10) / 20
    np.testing.assert_allclose(c.mean(axis=0), expected, atol=0.03)
    with pytest.raises(ValueError, match="TFDS 'mnist' split 'train'.*no labels"):
        with tfds.testing.mock_data(num_examples=4):
            open_real_images(dict(kind="tfds", name="mnist", resolution=16)).label_fn(10)
    with pytest.raises(ValueError, match="TFDS 'mnist'.*resolution 32 exceeds the source's 16"):
        open_real_images(source, resolution=32)


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A real TFDS dataset in 3 files, stored in generation order (no download): 30 32x32
    images, labels 15 x 0, 10 x 1, 5 x 2."""
    import tensorflow_datasets as tfds

    pixels = np.random.default_rng(2).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = [0] * 15 + [1] * 10 + [2] * 5
    features = {
        "image": tfds.features.Image(shape=(32, 32, 3)),
        "label": tfds.features.ClassLabel(num_classes=3),
    }

    class StyleganJaxRealImagesTiny(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            info = tfds.features.FeaturesDict(features)
            return tfds.core.DatasetInfo(builder=self, features=info, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from ((i, {"image": pixels[i], "label": labels[i]}) for i in range(30))

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = tfds.builder("stylegan_jax_real_images_tiny", data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
    assert len(builder.info.splits["train"].file_instructions) == 3
    name = StyleganJaxRealImagesTiny.name
    source = SourceConfig("tfds", name=name, data_dir=data_dir, resolution=32, label_key="label")
    return source, pixels, labels


def test_tfds_real_dataset_subsplits_and_box_average(tiny_tfds):
    source, pixels, labels = tiny_tfds
    real = open_real_images(source, resolution=16)
    assert real.count == 30
    whole, _ = one_pass(real, 8, 1)
    np.testing.assert_array_equal(whole, box_mean(pixels, 2))  # area resizing by 2: box mean
    shared, sizes = one_pass(real, 4, 2)
    np.testing.assert_array_equal(shared, whole)
    assert sizes == [15, 15]
    c = real.label_fn(3)(np.random.default_rng(1), 20000)
    np.testing.assert_allclose(c.mean(axis=0), [0.5, 1 / 3, 1 / 6], atol=0.015)
    for split, count in (("train[:12]", 12), ("train[:50%]", 15)):
        part = open_real_images(dataclasses.replace(source, split=split))
        assert part.count == count
        images, sizes = one_pass(part, 5, 3)
        assert images.shape == (count, 32, 32, 3) and sum(sizes) == count
        np.testing.assert_array_equal(images, pixels[:count])
        assert SAFE.match(part.key) and part.key != real.key
