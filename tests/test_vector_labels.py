"""Label vectors (continuous or multi-hot conditions, as the official dataset.json's
`[path, [0.2, 0.8, ...]]`): the dataset tool keeps them, training feeds them to the networks as
c unchanged (no one-hot), grids show one of the data's vectors per row, checkpoints record the
kind, `generate --label` renders them; and TFDS sources served at W x H.

References: the dataset.json the tests write (float32 of its numbers), images whose pixel value
names their dataset index, numpy crops / pads / box averages of the TFDS images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_fixtures import tiny_config

from stylegan_jax import cli
from stylegan_jax.data import dataset_tool, official_folder
from stylegan_jax.data.pipeline import make_pipeline
from stylegan_jax.data.real_images import open_real_images
from stylegan_jax.data.shards import DatasetError, read_manifest
from stylegan_jax.data.sources import SourceConfig, open_indexed
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.store.load import label_kind
from stylegan_jax.train import inputs, labels, loop
from stylegan_jax.train.config import ConfigError
from stylegan_jax.train.grids import LABELS_FILE

RES, N = 16, 8


def shade(i: int) -> int:
    """Image i's pixel value: the images tell their dataset index."""
    return 20 + 25 * i


# Continuous, not float32-exact (0.1, 1/3), distinct per image.
VECTORS = [[i / 7, 1 - 0.1 * i, (-1) ** i / 3] for i in range(N)]
MULTI_HOT = [[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]] * 2


def write_source(root: Path, vectors, **extra) -> Path:
    root.mkdir(parents=True)
    for i in range(N):
        Image.fromarray(np.full((RES, RES), shade(i), np.uint8), "L").save(root / f"{i}.png")
    entries = [[f"{i}.png", v] for i, v in enumerate(vectors)]
    (root / "dataset.json").write_text(json.dumps({"labels": entries, **extra}))
    return root


def make_dataset(tmp: Path, vectors=VECTORS) -> Path:
    src = write_source(tmp / "src", vectors)
    dest = tmp / "ds"
    assert cli.main(["dataset", "--source", str(src), "--dest", str(dest), "--resolution",
                     str(RES), "--channels", "1", "--no-progress"]) == 0
    return dest


def index_of(image: np.ndarray) -> int:
    """The dataset index an image of `write_source` shows."""
    i = (int(image.reshape(-1)[0]) - 20) // 25
    assert image.min() == image.max() == shade(i)
    return i


@pytest.mark.parametrize("vectors", [VECTORS, MULTI_HOT], ids=["continuous", "multi-hot"])
def test_vectors_in_are_vectors_out(tmp_path, capsys, vectors):
    dest = make_dataset(tmp_path, vectors)
    dim = len(vectors[0])
    assert f"{dim}-number label vectors" in capsys.readouterr().out
    manifest = read_manifest(dest)
    assert (manifest["label_kind"], manifest["label_dim"], manifest["num_classes"]) == (
        "vector", dim, 0)
    want = np.asarray(vectors, np.float32)  # float32 of the numbers dataset.json holds
    source = SourceConfig(kind="tfrecord", path=str(dest))
    indexed = open_indexed(source)
    assert indexed.labels.dtype == np.float32
    np.testing.assert_array_equal(indexed.labels, want)
    # The pipeline serves each image with its own vector, as float32 [B, dim].
    with make_pipeline(source, 4, seed=3, process_index=0, process_count=1) as pipe:
        assert (pipe.label_dim, pipe.vector_labels) == (dim, True)
        batch = next(pipe)
    assert batch.labels.shape == (4, dim) and batch.labels.dtype == np.float32
    for image, label in zip(batch.images, batch.labels, strict=True):
        np.testing.assert_array_equal(label, want[index_of(image)])
    # The official image folder keeps them as vectors.
    official_folder.write_official_folder(source, tmp_path / "official")
    written = json.loads((tmp_path / "official" / "dataset.json").read_text())["labels"]
    np.testing.assert_array_equal(np.asarray([v for _, v in written], np.float32), want)
    # Metrics draw the labels of uniformly random items, as they are.
    draw = open_real_images(source).label_fn(dim)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(draw(np.random.default_rng(5), 6),
                                  want[rng.integers(0, N, 6)])
    with pytest.raises(ValueError, match=f"label vectors have {dim} numbers.*c_dim={dim + 1}"):
        open_real_images(source).label_fn(dim + 1)


@pytest.mark.parametrize("entries, extra, match", [
    ([[0.1, 0.2]] * 3 + [3] + [[0.1, 0.2]] * 4, {},
     r"labels\[3\] \('3.png'\) is 3; expected a label vector like labels\[0\] \(2 numbers\)"),
    ([1] + [[0.1, 0.2]] * 7, {}, r"labels\[1\] is \['1.png', \[0.1, 0.2\]\]; expected "
     r"\[\"path\", class index >= 0\].*class indices or label vectors, not both"),
    ([[0.1, 0.2]] * 5 + [[0.1, 0.2, 0.3]] + [[0.1, 0.2]] * 2, {},
     r"labels\[5\] \('5.png'\) has 3 numbers; every label vector must have 2"),
    ([[0.1, 0.2]] * 2 + [[0.1, float("nan")]] + [[0.1, 0.2]] * 5, {},
     r"labels\[2\] \('2.png'\) holds nan; label vectors hold finite numbers"),
    ([[0.1, 0.2]] * 7 + [[float("inf"), 0.2]], {}, r"labels\[7\] \('7.png'\) holds inf"),
    ([[0.1, 0.2]] * 7 + [[1e39, 0.2]], {}, r"labels\[7\] \('7.png'\).*overflows float32"),
    ([[0.1, "a"]] + [[0.1, 0.2]] * 7, {}, r"labels\[0\] \('0.png'\) holds 'a'"),
    ([[True, 0.2]] + [[0.1, 0.2]] * 7, {}, r"labels\[0\] \('0.png'\) holds True"),
    ([[]] * 8, {}, r"labels\[0\] \('0.png'\) is an empty label vector"),
    ([[0.1, 0.2]] * 8, {"class_names": ["a", "b"]}, "'class_names' names classes, but the "
     "labels are vectors"),
])
def test_bad_label_vectors_are_named(tmp_path, entries, extra, match):
    src = write_source(tmp_path / "src", entries, **extra)
    with pytest.raises(DatasetError, match=match) as caught:
        dataset_tool.build_dataset(str(src), str(tmp_path / "ds"), RES, channels=1)
    assert str(src / "dataset.json") in str(caught.value)
    assert not (tmp_path / "ds").exists()


def test_a_damaged_manifest_vector_is_named(tmp_path):
    dest = make_dataset(tmp_path)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["labels"][4] = manifest["labels"][4][:2]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"labels\[4\] is .*expected a vector of 3 finite "
                       r"numbers \(label_dim\)"):
        read_manifest(dest)


def test_multi_hot_is_named_and_drawn_as_it_is():
    vectors = np.asarray(MULTI_HOT, np.float32)
    line = labels.vector_summary(vectors)
    assert line.startswith("4-number label vectors (multi-hot) of 8 images; per dimension "
                           "min/mean/max: 0 0/0.5/1, 1 0/0.5/1, 2 0/0.75/1, 3 0/0.5/1")
    assert "multi-hot" not in labels.vector_summary(np.asarray(VECTORS, np.float32))
    assert labels.format_vector(vectors[1]) == "on: 1,2"
    assert labels.format_vector(np.float32([0.25, -1.5])) == "0.25 -1.5"
    # The fakes' labels: every image's vector (uniform rows = a random image's label)...
    np.testing.assert_array_equal(labels.vector_table(vectors), vectors)
    # ... or max_rows distinct images of a larger set.
    big = np.arange(300, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    table = labels.vector_table(big, max_rows=50, seed=1)
    assert table.shape == (50, 2) and len(np.unique(table[:, 0])) == 50
    assert set(table[:, 0]) <= set(big[:, 0])
    # A batch's vectors reach the networks unchanged; classes one-hot.
    np.testing.assert_array_equal(inputs.conditioning(vectors, 4), vectors)
    np.testing.assert_array_equal(inputs.conditioning(np.array([2, 0]), 3),
                                  [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="label vectors of 4 numbers for c_dim=5"):
        inputs.conditioning(vectors, 5)


def _config(dataset: Path, use_labels: bool = True):
    config = tiny_config()
    config.data.source = "tfrecord"
    config.data.path = str(dataset)
    config.data.use_labels = use_labels
    config.data.xflip = False
    return config


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    """A conditional StyleGAN2 on 3-number label vectors: 2 steps, then resumed to 4; every
    batch the loop hands to the step recorded as (images, c)."""
    tmp = tmp_path_factory.mktemp("vectors")
    dataset = make_dataset(tmp)
    seen, lines = [], []

    def recording(backend, data, c_dim):
        images, c = inputs.device_batch(backend, data, c_dim)
        seen.append((np.asarray(images), np.asarray(c)))
        return images, c

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "device_batch", recording)
        loop.train(_config(dataset), tmp / "run", stop_at_step=2, log=lines.append)
        loop.train(_config(dataset), tmp / "run", stop_at_step=4, log=lines.append)
    return dataset, tmp / "run", seen, lines


def test_the_networks_get_the_vectors_themselves(vector_run):
    *_, seen, lines = vector_run
    want = np.asarray(VECTORS, np.float32)
    assert len(seen) == 4
    for images, c in seen:  # [devices, per device, ...] under pmap
        images, c = images.reshape(-1, RES, RES, 1), c.reshape(-1, c.shape[-1])
        assert c.shape == (16, 3) and c.dtype == np.float32
        for image, row in zip(images, c, strict=True):
            np.testing.assert_array_equal(row, want[index_of(image)])  # not one-hot
    summary = [line for line in lines if line.startswith("Labels: ")]
    assert summary[0] == ("Labels: 3-number label vectors of 8 images; per dimension "
                          "min/mean/max: 0 0/0.5/1, 1 0.3/0.65/1, 2 -0.333/0/0.333")
    assert any(line.startswith("Resuming from") for line in lines)


def test_checkpoints_record_the_label_kind(vector_run):
    _, run, _, _ = vector_run
    ckpts = Checkpoints(run / "checkpoints", 10, None, writer=False)
    try:
        for step in (32, 64):  # before and after the resume
            meta = ckpts.read_meta(step)
            assert (meta["label_kind"], meta["c_dim"], meta["class_names"]) == ("vector", 3, [])
    finally:
        ckpts.close()
    assert label_kind(run) == "vector"


def _cells(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the strip, [2, 2, RES, RES]) of a 2 x 2 grid with a strip on the left."""
    strip = grid.shape[1] - 2 * RES
    return grid[:, :strip], grid[:, strip:].reshape(2, RES, 2, RES).transpose(0, 2, 1, 3)


def test_grid_rows_are_data_vectors_and_generate_label_renders_them(vector_run, tmp_path):
    _, run, _, _ = vector_run
    rows = [r["label"] for r in json.loads((run / "samples" / LABELS_FILE).read_text())]
    want = np.asarray(VECTORS, np.float32)
    assert len(rows) == 2 and rows[0] != rows[1]
    reals_strip, reals = _cells(np.asarray(Image.open(run / "samples" / "reals.png")))
    assert reals_strip.shape[1] > 8 and reals_strip.max() > 200  # the vectors written
    for r, vector in enumerate(rows):  # each row shows the image the vector belongs to
        np.testing.assert_array_equal(want[index_of(reals[r, 0])], np.float32(vector))
    # fakes000000.png: the last snapshot in kimg 0, that of the newest checkpoint (64).
    _, fakes = _cells(np.asarray(Image.open(run / "samples" / "fakes000000.png")))
    for r, vector in enumerate(rows):  # row r: seeds 2r, 2r + 1 with the row's vector
        out = tmp_path / f"row{r}"
        assert cli.main(["generate", "--network", str(run / "checkpoints" / "64"),
                         "--seeds", f"{2 * r},{2 * r + 1}", "--label",
                         ",".join(map(repr, vector)), "--outdir", str(out), "--no-grid"]) == 0
        for col in range(2):
            made = np.asarray(Image.open(out / f"seed{2 * r + col:04d}.png"))
            np.testing.assert_array_equal(fakes[r, col], made)


def test_generate_asks_a_vector_network_for_label(vector_run, tmp_path, capsys):
    _, run, _, _ = vector_run
    out = str(tmp_path / "x")
    for flags, error in [
        (["--class", "1"], "--class '1': this generator was trained on label vectors; pass "
         "--label with 3 comma-separated numbers (e.g. --label 0,0,0)"),
        ([], "this generator was trained on label vectors; pass --label with 3"),
        (["--label", "0.5,1"], "--label '0.5,1' has 2 numbers; expected 3 comma-separated "
         "numbers"),
        (["--label", "0.5,x,1"], "--label '0.5,x,1': not numbers"),
        (["--label", "1,1,nan"], "expected finite numbers"),
    ]:
        capsys.readouterr()
        assert cli.main(["generate", "--network", str(run), "--seeds", "0", *flags,
                         "--outdir", out]) == 2
        assert error in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not allowed with each other
        cli.main(["generate", "--network", str(run), "--class", "0", "--label", "1,0,1"])
    # Multi-hot (or any) vectors render; style-mix takes --label too.
    assert cli.main(["generate", "--network", str(run), "--seeds", "0", "--label", "1,0,1",
                     "--outdir", out, "--no-grid"]) == 0
    assert cli.main(["style-mix", "--network", str(run), "--rows", "1", "--cols", "2",
                     "--styles", "0", "--label", "1,0,1", "--outdir", out]) == 0
    assert cli.main(["generate", "--seeds", "0", "--label", "1", "--outdir", out]) == 2
    assert "--label given, but the generator is unconditional" in capsys.readouterr().err


def test_vector_labels_trained_unconditionally_are_refused(vector_run, tmp_path):
    dataset, *_ = vector_run
    with pytest.raises(ConfigError, match=r"the data is labelled \(label vectors of 3 "
                       r"numbers\) but config.data.use_labels=False"):
        loop.train(_config(dataset, False), tmp_path / "run", stop_at_step=1)


# --- TFDS at W x H --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_tfds():
    """A TFDS builder of 8 x 32 (H x W) RGB images, served by tfds.testing.mock_data."""
    import tensorflow_datasets as tfds

    class StyleganJaxWideStrips(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(8, 32, 3))}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from ()

    return "stylegan_jax_wide_strips"


def _tfds_images(name: str, source: SourceConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(every mocked image as stored, the pipeline's first n images at `source`)."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=n):
        stored = np.stack([ex["image"] for ex in tfds.load(name, split="train")
                           .as_numpy_iterator()])
        with make_pipeline(source, n, seed=0, process_index=0, process_count=1) as pipe:
            assert pipe.aspect == source.aspect
            served = next(pipe).images
        real = next(open_real_images(source).batches(n, 0, 1))
    np.testing.assert_array_equal(np.sort(real.reshape(n, -1), 0),
                                  np.sort(served.reshape(n, -1), 0))
    return stored, served


def _same_set(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert sorted(x.tobytes() for x in got) == sorted(x.tobytes() for x in want)


def test_tfds_serves_w_x_h_centre_crops(wide_tfds):
    # 16 wide x 8 high from 32 x 8: the centre 16 columns, at their own size.
    source = SourceConfig(kind="tfds", name=wide_tfds, resolution=8, aspect=(1, 2))
    stored, served = _tfds_images(wide_tfds, source, 6)
    _same_set(served, stored[:, :, 8:24])


def test_tfds_pads_to_a_tall_ratio(wide_tfds):
    # 8 wide x 16 high from 32 x 8: black bands to 32 x 64, then 4 x 4 box averages.
    source = SourceConfig(kind="tfds", name=wide_tfds, resolution=8, aspect=(2, 1),
                          transform="pad-to-ratio")
    stored, served = _tfds_images(wide_tfds, source, 6)
    padded = np.zeros((6, 64, 32, 3))
    padded[:, 28:36] = stored
    boxed = padded.reshape(6, 16, 4, 8, 4, 3).mean((2, 4))
    _same_set(served, np.round(boxed).astype(np.uint8))


def test_tfds_w_x_h_from_a_config(wide_tfds):
    import tensorflow_datasets as tfds

    config = tiny_config()
    config.data.source, config.data.path = "tfds", wide_tfds
    config.data.resolution, config.data.aspect, config.data.channels = 8, (1, 2), 3
    with tfds.testing.mock_data(num_examples=16):
        source, run_labels = inputs.open_source(config)  # checks the served W x H
    assert SourceConfig.from_dict(source).aspect == (1, 2) and run_labels.c_dim == 0
    with pytest.raises(ValueError, match="source aspect and transform are for kinds 'bundled' "
                                         "and 'tfds'"):
        SourceConfig(kind="tfrecord", path="x", aspect=(1, 2))
    with pytest.raises(ValueError, match="source transform must be one of"):
        SourceConfig(kind="tfds", name=wide_tfds, resolution=8, transform="none",
                     aspect=(1, 2))
