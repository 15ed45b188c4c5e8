"""The real images of a training source in one deterministic pass, for the metrics.

NVIDIA's stylegan2-ada metrics read the dataset once, in index order, without mirroring or
shuffling, process p taking items p, p + P, ... (so the first n items of every share make up
the first N items of the dataset, and each share is ``metrics.parallel.process_share`` long).
``open_real_images`` serves any training source that way, at the resolution D sees, with the
interface of ``metrics.image_source.ImageSource`` (``key``, ``count``, ``batches``, ``label_fn``)::

    real = open_real_images(config.data.source, resolution=256)
    runner = MetricRunner(G, lambda: real.batches(64), cache_dir, dataset_key=real.key,
                          num_real=real.count, label_fn=real.label_fn(c_dim))

Bundled and tfrecord sources are read by index (no tensorflow, which the GPU machines lack)
and box-averaged from the nearest stored level, as ``order.indexed_batches`` does; TFDS
sources stream through tf.data, decoded as ``order.tfds_batches`` decodes them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from stylegan_jax.data import sources as src
from stylegan_jax.data import tf_runtime
from stylegan_jax.data.images import box_downsample
from stylegan_jax.data.pipeline import _serving_resolution
from stylegan_jax.data.shards import MANIFEST, DatasetError

# (batch_size, process_index, process_count) -> this process's uint8 [b, R, R, C] batches
Reader = Callable[[int, int, int], Iterator[np.ndarray]]


@dataclasses.dataclass(frozen=True, eq=False)
class RealImages:
    """One source's images at one resolution; see the module docstring for the order.

    name: the source in error messages. key: filesystem-safe, equal for the same data on any
    run and process, different when the images differ (the real-statistics cache's name).
    count: images in the source (None only when TFDS cannot tell). num_classes: 0 = no class
    labels. label_dim: the length of the data's label vectors (0: none).
    """

    name: str
    key: str
    count: int | None
    resolution: int
    channels: int
    num_classes: int
    _read: Reader = dataclasses.field(repr=False)
    _labels: Callable[[], np.ndarray | None] = dataclasses.field(repr=False)
    # How the images were made, for the scores computed on them (metrics.provenance):
    # manifest_sha256 (tfrecord), resize_filter (the dataset tool's, or how the source
    # resizes), source details.
    details: dict = dataclasses.field(default_factory=dict)
    label_dim: int = 0

    @property
    def identity(self) -> dict:
        """The data as a score records it: source, resolution, count, content key, and how
        the images were resized."""
        return dict(source=self.name, key=self.key, resolution=self.resolution,
                    channels=self.channels, count=self.count, num_classes=self.num_classes,
                    **({"label_dim": self.label_dim} if self.label_dim else {}), **self.details)

    def batches(
        self, batch_size: int, process_index: int | None = None, process_count: int | None = None
    ) -> Iterator[np.ndarray]:
        """uint8 [b, R, R, C] batches, one pass over this process's items (item i goes to
        process i % P), never mirrored; the last batch may be smaller. Arguments are checked
        here, not at the first batch. process_index / process_count default to jax's."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TypeError(f"{self.name}: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        if process_index is None or process_count is None:
            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(
                f"{self.name}: process_index {process_index} outside [0, {process_count})"
            )
        return self._read(int(batch_size), int(process_index), int(process_count))

    def label_fn(self, c_dim: int) -> Callable[[np.random.Generator, int], np.ndarray] | None:
        """None if c_dim == 0; else fn(rng, n) -> float32 [n, c_dim], the labels of n
        uniformly random items (the official ``dataset.get_label(rng.randint(len(dataset)))``):
        one-hot classes, or the data's label vectors as they are.

        TFDS labels are read on the first call of fn (images left encoded), then kept.
        """
        if c_dim == 0:
            return None
        if self.label_dim:
            return self._vector_label_fn(c_dim)
        if self.num_classes == 0:
            raise ValueError(
                f"{self.name}: the generator is conditional (c_dim={c_dim}) but the data has "
                "no labels (tfrecord: written without labels; tfds: set label_key)"
            )
        if self.num_classes != c_dim:
            raise ValueError(
                f"{self.name}: the data has {self.num_classes} classes, the generator expects "
                f"c_dim={c_dim}"
            )
        labels_of, one_hot = self._labels, np.eye(c_dim, dtype=np.float32)

        def draw(rng: np.random.Generator, n: int) -> np.ndarray:
            labels = labels_of()
            if labels is None or len(labels) == 0:
                raise ValueError(f"{self.name}: no labels to draw from")
            return one_hot[labels[rng.integers(0, len(labels), n)]]

        return draw

    def _vector_label_fn(self, c_dim: int) -> Callable[[np.random.Generator, int], np.ndarray]:
        if self.label_dim != c_dim:
            raise ValueError(f"{self.name}: the data's label vectors have {self.label_dim} "
                             f"numbers, the generator expects c_dim={c_dim}")
        labels_of = self._labels

        def draw(rng: np.random.Generator, n: int) -> np.ndarray:
            labels = labels_of()
            return np.asarray(labels[rng.integers(0, len(labels), n)], np.float32)

        return draw


def open_real_images(
    source: src.SourceConfig | Mapping[str, Any], resolution: int | None = None
) -> RealImages:
    """RealImages of `source` (a SourceConfig or its dict, as make_pipeline takes) served at
    `resolution`, a power of two <= the source's (default: the source's)."""
    if not isinstance(source, src.SourceConfig):
        source = src.SourceConfig.from_dict(source)
    if source.kind == "tfds":
        return _open_tfds(source, resolution)
    return _open_indexed(source, resolution)


def training_images(config) -> RealImages:
    """A training run's real images as the metrics read them (`config`: the run's config,
    its `data` section naming the source)."""
    return open_real_images(src.source_from_config(config.data), config.data.resolution)


def describe(source: src.SourceConfig) -> str:
    """The source as error messages name it."""
    if source.kind == "tfrecord":
        return f"tfrecord dataset {source.path}"
    if source.kind == "tfds":
        return f"TFDS {source.name!r} split {source.split!r}"
    return "bundled faces"


def _resolution(source: src.SourceConfig, resolution: int | None, top: int) -> int:
    try:
        return _serving_resolution(resolution, top)
    except ValueError as e:
        raise ValueError(f"{describe(source)}: {e}") from None


def make_key(kind: str, label: str, resolution: int, channels: int, count, *content) -> str:
    """`<kind>-<label>-<R>x<C>-<count>-<12 hex of everything>`, safe in a file name.

    The readable part may lose characters to sanitising; the hash keeps the key unique.
    """
    h = hashlib.sha256()
    for part in (kind, label, resolution, channels, count, *content):
        data = part if isinstance(part, bytes) else repr(part).encode()
        h.update(len(data).to_bytes(8, "little") + data)
    text = f"{kind}-{label}-{resolution}x{channels}-{'unknown' if count is None else count}"
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', text)}-{h.hexdigest()[:12]}"


def _open_indexed(source: src.SourceConfig, resolution: int | None) -> RealImages:
    name = describe(source)
    indexed = src.open_indexed(source)
    res = _resolution(source, resolution, indexed.resolution)
    if indexed.count == 0:
        raise DatasetError(f"{name}: holds no images")
    # The smallest stored level >= res, box-averaged down: what order.indexed_batches serves.
    level = min(r for r in indexed.levels + (indexed.resolution,) if r >= res)
    images, factor = indexed.images_at(level), level // res

    def read(batch_size: int, process_index: int, process_count: int):
        items = np.arange(process_index, indexed.count, process_count, dtype=np.int64)
        for start in range(0, len(items), batch_size):
            yield box_downsample(images.read(items[start : start + batch_size]), factor)

    box = f"box average from {level}x{level}" if factor > 1 else None
    if source.kind == "tfrecord":
        # The manifest names the source, the shards and the labels; the first and last images
        # tell apart datasets whose manifests agree (e.g. written from arrays in memory).
        top = indexed.images_at(indexed.resolution)
        manifest = (Path(source.path) / MANIFEST).read_bytes()
        content = [manifest, top.read(np.asarray([0, indexed.count - 1])).tobytes()]
        label = Path(source.path).resolve().name
        details = dict(kind="tfrecord", path=str(Path(source.path).resolve()),
                       manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                       resize_filter=indexed.resize_filter, level_resize=box)
    else:
        content, label = ["bundled", indexed.resolution, source.labels], "lfw"
        details = dict(kind="bundled", labels=source.labels,
                       resize_filter=src.BUNDLED_RESIZE, level_resize=box)
    key = make_key(source.kind, label, res, indexed.channels, indexed.count, *content)
    num_classes = indexed.num_classes if indexed.labels is not None else 0
    count, channels = indexed.count, indexed.channels
    label_dim = indexed.label_dim if indexed.vector_labels else 0
    return RealImages(name, key, count, res, channels, num_classes, read, lambda: indexed.labels,
                      details, label_dim)


def tfds_count(builder, split: str) -> int | None:
    """Examples in a (sub)split: the builder's metadata, else tf.data's cardinality, else None."""
    try:
        return int(builder.info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - no metadata (e.g. under mock_data): ask tf.data
        # Function-level: tensorflow_datasets imports tensorflow (heavy; absent on GPU hosts).
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(try_autocache=False)
        ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
        n = int(ds.cardinality())
        return n if n >= 0 else None


def _open_tfds(source: src.SourceConfig, resolution: int | None) -> RealImages:
    name = describe(source)
    res = _resolution(source, resolution, source.resolution)
    channels = source.channels or 3
    builder = src.tfds_builder(source.name, source.data_dir, source.manual_dir)
    num_classes = src.tfds_features(builder, source.image_key, source.label_key)
    count = tfds_count(builder, source.split)
    if count == 0:
        raise DatasetError(f"{name}: holds no images")

    def read(batch_size: int, process_index: int, process_count: int):
        tf = tf_runtime.import_tensorflow()
        # Shared by records, never by files: TFDS's files differ in size and the metrics count
        # on process p holding exactly items p, p + P, ... (every process reads each record,
        # but decodes only its own).
        ds = src.tfds_encoded(builder, source.split, source.image_key, None, 0, shuffle_files=False)
        ds = ds.shard(process_count, process_index)
        ds = ds.map(
            src.tfds_decode_fn(res, channels, source.aspect, source.transform),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        for images, _ in ds.batch(batch_size).prefetch(2).as_numpy_iterator():
            yield images

    @functools.cache
    def labels() -> np.ndarray:
        # The records the image pass reads; the images stay encoded (never decoded).
        ds = src.tfds_encoded(
            builder, source.split, source.image_key, source.label_key, 0, shuffle_files=False
        )
        parts = [b for _, b in ds.batch(4096).as_numpy_iterator()]
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)

    version = str(builder.info.version)
    details = dict(kind="tfds", dataset=builder.info.full_name, split=source.split,
                   resize_filter=src.TFDS_RESIZE)
    # W x H images differ from the square ones: so do their key and record (squares: as before)
    shape = () if source.aspect == (1, 1) and source.transform == "center-crop" else (
        list(source.aspect), source.transform)
    if shape:
        details.update(aspect=list(source.aspect), transform=source.transform)
    key = make_key(
        "tfds",
        f"{source.name}-{source.split}-{version}",
        res,
        channels,
        count,
        builder.info.full_name,
        source.split,
        source.image_key,
        *shape,
    )
    return RealImages(name, key, count, res, channels, num_classes, read, labels, details)
