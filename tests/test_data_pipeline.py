"""The training input pipeline: order, process shares, exact resume, mirroring, labels, lower
resolutions, device placement, the bundled faces, and TFDS streams under mock_data.

Images are identified by their bytes against the arrays the test wrote, so every check is
against what went in, not against the pipeline's own output.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import types

import jax
import numpy as np
import PIL.Image
import pytest
import skimage.data
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from skimage.transform import downscale_local_mean, resize

from stylegan_jax.data import SourceConfig, bundled_faces, make_pipeline
from stylegan_jax.data.dataset_tool import write_dataset
from stylegan_jax.data.inputs import Input, Listing
from stylegan_jax.data.pipeline import to_global_array, to_pmap_layout
from stylegan_jax.data.real_images import open_real_images
from stylegan_jax.data.sources import open_indexed, source_from_config

N = 37  # prime: epochs never line up with batches


@pytest.fixture(scope="module")
def originals():
    return np.random.default_rng(1).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, originals):
    """Shards of the originals at 8x8 with a 4x4 level; label of image i is i % 5."""
    dest = tmp_path_factory.mktemp("pipeline") / "data"
    inputs = (
        Input(f"{i}.png", f"mem[{i}]", lambda i=i: originals[i], label=i % 5) for i in range(N)
    )
    write_dataset(
        dest,
        Listing(inputs, N, [], None, "", num_classes=5),
        resolution=8,
        min_resolution=4,
        shard_mb=0,
    )  # one record per shard: many files
    return str(dest)


def identify(images, originals):
    """(index, mirrored) of each image among the originals."""
    plain = {o.tobytes(): i for i, o in enumerate(originals)}
    mirrored = {o[:, ::-1].tobytes(): i for i, o in enumerate(originals)}
    out = []
    for image in images:
        key = image.tobytes()
        assert key in plain or key in mirrored, "an image that is not in the dataset"
        out.append((plain[key], False) if key in plain else (mirrored[key], True))
    return out


def take(source, n, **kw):
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    with make_pipeline(source, **kw) as pipe:
        return [next(pipe) for _ in range(n)], pipe.position()


def tfrecord(path):
    return SourceConfig(kind="tfrecord", path=path)


def test_epochs_are_permutations_and_labels_follow_images(dataset, originals):
    batches, position = take(tfrecord(dataset), 14, global_batch=8, seed=3)  # 112 = 3 epochs+
    assert position == {"examples": 112}
    images = np.concatenate([b.images for b in batches])
    labels = np.concatenate([b.labels for b in batches])
    ids = [i for i, flipped in identify(images, originals) if not flipped]
    assert len(ids) == 112
    for e in range(3):
        assert sorted(ids[e * N : (e + 1) * N]) == list(range(N))
    assert ids[:N] != ids[N : 2 * N]  # reshuffled every epoch
    np.testing.assert_array_equal(labels, np.asarray(ids) % 5)
    assert labels.dtype == np.int32 and images.dtype == np.uint8


def test_deterministic_per_seed(dataset):
    a, _ = take(tfrecord(dataset), 6, global_batch=8, seed=3, xflip=True)
    b, _ = take(tfrecord(dataset), 6, global_batch=8, seed=3, xflip=True)
    c, _ = take(tfrecord(dataset), 6, global_batch=8, seed=4, xflip=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.images, y.images)
    assert any(not np.array_equal(x.images, y.images) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("count", [2, 3, 4])
def test_process_shares_are_disjoint_and_make_up_the_global_batch(dataset, originals, count):
    kw = dict(global_batch=12, seed=5, xflip=True)
    whole, _ = take(tfrecord(dataset), 6, **kw)
    shares = [
        take(tfrecord(dataset), 6, process_index=p, process_count=count, **kw)[0]
        for p in range(count)
    ]
    for step, batch in enumerate(whole):
        parts = [s[step] for s in shares]
        assert all(len(p.images) == 12 // count for p in parts)
        np.testing.assert_array_equal(np.concatenate([p.images for p in parts]), batch.images)
        np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), batch.labels)
    first_epoch = np.concatenate([s[k].images for k in range(3) for s in shares])[:36]
    ids = [i for i, _ in identify(first_epoch, originals)]
    assert len(set(ids)) == 36  # no example twice within an epoch, across processes


def test_resume_gives_identical_batches(dataset):
    kw = dict(global_batch=8, seed=7, xflip=True)
    straight, _ = take(tfrecord(dataset), 10, **kw)
    first, position = take(tfrecord(dataset), 4, **kw)
    position = json.loads(json.dumps(position))  # what a checkpoint stores
    rest, _ = take(tfrecord(dataset), 6, position=position, **kw)
    for x, y in zip(straight, first + rest, strict=True):
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.labels, y.labels)
    # Restored on two processes, the shares still make up the same global batches.
    halves = [
        take(tfrecord(dataset), 6, position=position, process_index=p, process_count=2, **kw)[0]
        for p in range(2)
    ]
    for k in range(6):
        np.testing.assert_array_equal(
            np.concatenate([halves[0][k].images, halves[1][k].images]), straight[4 + k].images
        )


def test_reader_threads_serve_the_documented_order(dataset, originals):
    """Any thread count serves stream[b*G : (b+1)*G], epoch e being
    default_rng([seed, e]).permutation(N): the order written in the module docstring."""
    seed, g = 3, 8
    stream = np.concatenate([np.random.default_rng([seed, e]).permutation(N) for e in range(3)])
    for threads in (1, 3):
        with make_pipeline(
            tfrecord(dataset), g, seed=seed, process_index=0, process_count=1, threads=threads
        ) as pipe:
            assert pipe.threads == threads
            for b in range(11):  # 88 examples: the third epoch starts mid-batch
                batch = next(pipe)
                assert pipe.position() == {"examples": (b + 1) * g}
                ids = [i for i, _ in identify(batch.images, originals)]
                np.testing.assert_array_equal(ids, stream[b * g : (b + 1) * g])
                np.testing.assert_array_equal(batch.labels, np.asarray(ids) % 5)


def test_reader_threads_resume_and_share_like_one_thread(dataset):
    kw = dict(global_batch=12, seed=7, xflip=True)
    straight, _ = take(tfrecord(dataset), 7, threads=1, **kw)
    _, position = take(tfrecord(dataset), 2, threads=4, **kw)
    assert position == {"examples": 24}
    halves = [
        take(
            tfrecord(dataset),
            5,
            position=position,
            process_index=p,
            process_count=2,
            threads=3,
            **kw,
        )[0]
        for p in range(2)
    ]
    for k in range(5):
        np.testing.assert_array_equal(
            np.concatenate([halves[0][k].images, halves[1][k].images]), straight[2 + k].images
        )
    faces1, _ = take(SourceConfig(), 5, global_batch=48, seed=1, xflip=True, threads=1)
    faces4, _ = take(SourceConfig(), 5, global_batch=48, seed=1, xflip=True, threads=4)
    for x, y in zip(faces1, faces4, strict=True):
        np.testing.assert_array_equal(x.images, y.images)


def test_reader_threads_read_concurrently(monkeypatch):
    """Readers overlap their reads (pread releases the GIL; here a sleep stands in for it)."""
    from stylegan_jax.data import sources

    faces = bundled_faces()
    lock, active, most = threading.Lock(), [0], [0]

    class SlowImages(sources.ArrayImages):
        def read(self, indices, flips=None, out=None):
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1
            return super().read(indices, flips, out)

    def open_slow(source):
        return sources.IndexedSource(len(faces), 32, 1, None, 0, (32,), lambda r: SlowImages(faces))

    monkeypatch.setattr(sources, "open_indexed", open_slow)
    for threads, allowed in ((1, {1}), (4, {2, 3, 4})):
        most[0] = 0
        batches, _ = take(SourceConfig(), 12, global_batch=4, seed=0, threads=threads, prefetch=4)
        assert most[0] in allowed and len(batches) == 12


def test_default_threads_follow_the_cores(monkeypatch):
    import stylegan_jax.data.pipeline as pipeline

    for cores, expected in ((1, 1), (2, 2), (6, 6), (64, 8)):
        monkeypatch.setattr(
            os, "sched_getaffinity", lambda _, n=cores: set(range(n)), raising=False
        )
        assert pipeline.default_threads() == expected
        with make_pipeline(SourceConfig(), 4, process_index=0, process_count=1) as pipe:
            assert pipe.threads == expected
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an int >= 1"):
            make_pipeline(SourceConfig(), 4, process_index=0, process_count=1, threads=bad)


def test_xflip_mirrors_about_half_of_the_examples(dataset, originals):
    batches, _ = take(tfrecord(dataset), 25, global_batch=8, seed=9, xflip=True)
    found = identify(np.concatenate([b.images for b in batches]), originals)
    flipped = [f for _, f in found]
    assert 0.35 < np.mean(flipped) < 0.65
    both_ways = {i for i, f in found if f} & {i for i, f in found if not f}
    assert len(both_ways) > N // 2  # mirroring is per stream position, not per image


def test_lower_resolutions_are_box_averages(dataset):
    kw = dict(global_batch=8, seed=2, xflip=True)
    top, _ = take(tfrecord(dataset), 3, **kw)
    low, _ = take(tfrecord(dataset), 3, resolution=4, **kw)  # the tool's stored level
    for t, lo in zip(top, low, strict=True):
        expected = np.rint(downscale_local_mean(t.images, (1, 2, 2, 1))).astype(np.uint8)
        np.testing.assert_array_equal(lo.images, expected)
    faces32, _ = take(SourceConfig(), 2, **kw)  # bundled: no stored levels, averaged on the fly
    faces8, _ = take(SourceConfig(), 2, resolution=8, **kw)
    for t, lo in zip(faces32, faces8, strict=True):
        expected = np.rint(downscale_local_mean(t.images, (1, 4, 4, 1))).astype(np.uint8)
        np.testing.assert_array_equal(lo.images, expected)


def test_bundled_faces_are_the_100_lfw_faces():
    faces = bundled_faces()
    assert faces.shape == (100, 32, 32, 1) and faces.dtype == np.uint8
    lfw = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces, 25x25 in [0, 1]
    reference = np.stack([resize(x, (32, 32), order=3) for x in lfw]) * 255
    distance = np.abs(faces[:, None, :, :, 0] - reference[None]).mean(axis=(2, 3))
    np.testing.assert_array_equal(distance.argmin(axis=1), np.arange(100))  # face i is face i
    assert distance[np.arange(100), np.arange(100)].max() < 4  # levels of 255
    assert faces.std() > 30  # real pictures, not a constant
    np.testing.assert_array_equal(bundled_faces(32, 3), np.repeat(faces, 3, axis=-1))
    # One epoch of the default source is exactly these 100 faces.
    batches, _ = take(SourceConfig(), 1, global_batch=100, seed=0)
    assert sorted(x.tobytes() for x in batches[0].images) == sorted(x.tobytes() for x in faces)


def test_labelled_bundled_source_serves_all_200_crops_with_their_labels():
    # The reference: lfw_subset() (100 faces, then 100 non-faces) to uint8, then Pillow's
    # bicubic 25 -> 32, as the bundled source documents; Pillow is called here directly.
    crops = np.rint(np.clip(skimage.data.lfw_subset(), 0, 1) * 255).astype(np.uint8)
    bicubic = PIL.Image.Resampling.BICUBIC
    reference = np.stack(
        [np.asarray(PIL.Image.fromarray(c).resize((32, 32), bicubic)) for c in crops]
    )
    np.testing.assert_array_equal(bundled_faces()[..., 0], reference[:100])  # unchanged
    index = {r.tobytes(): i for i, r in enumerate(reference)}
    assert len(index) == 200  # every crop tells itself apart

    def data(use_labels):
        return types.SimpleNamespace(
            source="bundled", resolution=32, channels=1, use_labels=use_labels
        )

    labelled, plain = source_from_config(data(True)), source_from_config(data(False))
    assert labelled == dict(plain, labels=True) and "labels" not in plain  # old runs' dict
    with make_pipeline(labelled, 200, seed=0, process_index=0, process_count=1) as pipe:
        assert pipe.num_classes == 2
        batches = [next(pipe) for _ in range(2)]  # two epochs
    for batch in batches:
        ids = np.asarray([index[x[..., 0].tobytes()] for x in batch.images])
        np.testing.assert_array_equal(np.sort(ids), np.arange(200))  # each crop once
        np.testing.assert_array_equal(batch.labels, (ids >= 100).astype(np.int32))
        assert batch.labels.dtype == np.int32
    indexed = open_indexed(SourceConfig.from_dict(labelled))
    assert indexed.class_names == ("face", "non-face") and indexed.num_classes == 2
    assert open_indexed(SourceConfig.from_dict(plain)).class_names is None
    # The metrics see two classes, under a key of their own.
    real, real_plain = open_real_images(labelled), open_real_images(plain)
    assert real.num_classes == 2 and real.count == 200 and real_plain.num_classes == 0
    assert real.key != real_plain.key
    drawn = real.label_fn(2)(np.random.default_rng(0), 400)
    assert drawn.shape == (400, 2) and 150 < drawn[:, 1].sum() < 250  # both classes, evenly
    with pytest.raises(ValueError, match="labels=True is for kind 'bundled', not 'tfrecord'"):
        SourceConfig(kind="tfrecord", path="x", labels=True)


def test_to_global_array_shards_over_data_axis():
    batch, _ = take(SourceConfig(), 1, global_batch=16, seed=0)
    devices = np.array(jax.devices()[:8])
    for mesh in (Mesh(devices, ("data",)), Mesh(devices.reshape(4, 2), ("data", "model"))):
        arrays = to_global_array(batch[0], mesh)
        assert arrays.images.dtype == np.uint8 and arrays.images.shape == (16, 32, 32, 1)
        assert arrays.images.sharding == NamedSharding(mesh, PartitionSpec("data"))
        np.testing.assert_array_equal(np.asarray(arrays.images), batch[0].images)
        for shard in arrays.images.addressable_shards:
            np.testing.assert_array_equal(np.asarray(shard.data), batch[0].images[shard.index])
            assert shard.data.shape[0] == 16 // mesh.shape["data"]


def test_to_pmap_layout():
    batch, _ = take(SourceConfig(), 1, global_batch=16, seed=0)
    stacked = to_pmap_layout(batch[0], 8)
    assert stacked.images.shape == (8, 2, 32, 32, 1) and stacked.labels.shape == (8, 2)
    sums = jax.pmap(lambda x: x.astype(np.int32).sum())(stacked.images)
    np.testing.assert_array_equal(
        np.asarray(sums), batch[0].images.reshape(8, -1).astype(np.int32).sum(axis=1)
    )
    with pytest.raises(ValueError, match="not divisible by 3 devices"):
        to_pmap_layout(batch[0], 3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="multiple of the process count 3"):
        make_pipeline(SourceConfig(), 8, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="position must be"):
        make_pipeline(SourceConfig(), 8, position={"step": 3}, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="exceeds the source's 32"):
        make_pipeline(SourceConfig(), 8, resolution=64, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="unknown source fields"):
        make_pipeline({"kind": "tfrecord", "paht": "x"}, 8, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="needs path"):
        SourceConfig(kind="tfrecord")


def test_indexed_sources_run_without_tensorflow(dataset):
    """The GPU machines have no tensorflow: bundled and tfrecord sources must not need it."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None  # any import of it now fails
        from stylegan_jax.data import SourceConfig, make_pipeline
        for source in (SourceConfig(), SourceConfig(kind="tfrecord", path={dataset!r})):
            with make_pipeline(source, 8, xflip=True) as pipe:
                assert next(pipe).images.shape[0] == 8
        print("ok")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tfds_stream_is_deterministic_resumable_and_shared(monkeypatch):
    import tensorflow_datasets as tfds

    source = SourceConfig(
        kind="tfds", name="mnist", resolution=16, channels=1, label_key="label", shuffle_buffer=8
    )
    kw = dict(global_batch=4, seed=1, xflip=True)
    with tfds.testing.mock_data(num_examples=20):
        straight, _ = take(source, 8, **kw)
        again, _ = take(source, 8, **kw)
        first, position = take(source, 3, **kw)
        rest, _ = take(source, 5, position=position, **kw)
        epoch, _ = take(source, 5, global_batch=4, seed=1)
        shares = [
            take(source, 5, global_batch=4, seed=1, process_index=p, process_count=2)[0]
            for p in range(2)
        ]
    for x, y, z in zip(straight, again, first + rest, strict=True):
        assert x.images.shape == (4, 16, 16, 1) and x.images.dtype == np.uint8
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.images, z.images)
        np.testing.assert_array_equal(x.labels, z.labels)
    everything = sorted(x.tobytes() for b in epoch for x in b.images)
    assert len(set(everything)) == 20  # one epoch: all 20 mock examples once
    parts = [sorted(x.tobytes() for b in s for x in b.images) for s in shares]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == everything


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A real TFDS dataset in 4 TFRecord files, built locally (no download): 30 images."""
    import tensorflow_datasets as tfds

    class StyleganJaxTinyFaces(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(20, 24, 3)),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            rng = np.random.default_rng(0)
            for i in range(30):
                yield (
                    i,
                    {"image": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "label": i % 3},
                )

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = tfds.builder("stylegan_jax_tiny_faces", data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
    assert len(builder.info.splits["train"].file_instructions) == 4
    return SourceConfig(
        kind="tfds",
        name="stylegan_jax_tiny_faces",
        data_dir=data_dir,
        resolution=16,
        label_key="label",
    )


def test_real_tfds_shares_by_files_and_resumes(tiny_tfds):
    everything, _ = take(tiny_tfds, 1, global_batch=30, seed=0)
    everything = sorted(x.tobytes() for x in everything[0].images)
    assert len(set(everything)) == 30
    kw = dict(global_batch=4, seed=2, process_count=2, xflip=False)
    shares = [take(tiny_tfds, 8, process_index=p, **kw)[0] for p in range(2)]
    # Two files each: 15 examples per process and epoch, straddling batches of 2.
    firsts = [np.concatenate([b.images for b in s])[:15] for s in shares]
    parts = [{x.tobytes() for x in f} for f in firsts]
    assert len(parts[0]) == len(parts[1]) == 15 and not parts[0] & parts[1]
    assert sorted(parts[0] | parts[1]) == everything
    first, position = take(tiny_tfds, 3, process_index=1, **kw)
    rest, _ = take(tiny_tfds, 5, position=position, process_index=1, **kw)
    for x, y in zip(shares[1], first + rest, strict=True):
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.labels, y.labels)


def test_tfds_threads_keep_the_order():
    import tensorflow_datasets as tfds

    source = SourceConfig(kind="tfds", name="mnist", resolution=16, channels=1, label_key="label",
                          shuffle_buffer=8)
    kw = dict(global_batch=4, seed=1, xflip=True)
    with tfds.testing.mock_data(num_examples=20):
        auto, _ = take(source, 8, **kw)
        two, _ = take(source, 8, threads=2, **kw)
        one, _ = take(source, 8, threads=1, **kw)
    for x, y, z in zip(auto, two, one, strict=True):
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.images, z.images)
