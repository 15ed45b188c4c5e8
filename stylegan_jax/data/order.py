"""The order of examples: which images each process gets at each step, and where mirrored.

``indexed_batches`` serves sources with random access (bundled, tfrecord) from one global
stream; ``tfds_batches`` streams a TFDS split through tf.data. Both are generator factories
yielding (Batch, global examples consumed after it); ``pipeline`` runs them in a thread.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np

from stylegan_jax.data import sources as src
from stylegan_jax.data import tf_runtime
from stylegan_jax.data.images import box_downsample
from stylegan_jax.data.shards import DatasetError


class Batch(NamedTuple):
    """One process's batch: images uint8 [B, H, W, C]; labels int32 [B] (class indices) or,
    for a source with label vectors, float32 [B, dim]."""

    images: Any
    labels: Any


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective, well-mixed hash of uint64 values."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def flip_bits(seed: int, positions: np.ndarray, salt: int = 0) -> np.ndarray:
    """Whether to mirror the examples at these stream positions: a fair coin per position."""
    key = _mix64(np.asarray([seed, salt], np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    with np.errstate(over="ignore"):
        x = np.asarray(positions, np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h = _mix64(x ^ key[0]) ^ key[1]
        return (_mix64(h) >> np.uint64(63)).astype(bool)


class BufferPool:
    """Reuses batch arrays nobody references any more (CPython reference counts).

    A fresh 200 MB batch costs the kernel as much time zeroing pages as the copy itself; an
    array is handed out again only when the pool holds the last reference to it (views, a
    queued Batch, jax's zero-copy host buffers all count), so reuse is never visible.
    """

    def __init__(self, shape: tuple[int, ...], size: int):
        self.shape, self.size = shape, size
        self._arrays: list[np.ndarray] = []

    def get(self) -> np.ndarray:
        for i in range(len(self._arrays)):
            if sys.getrefcount(self._arrays[i]) == 2:  # the list's and the argument's
                return self._arrays[i]
        array = np.empty(self.shape, np.uint8)
        if len(self._arrays) < self.size:
            self._arrays.append(array)
        return array


def indexed_batches(
    source: src.IndexedSource,
    resolution: int,
    seed: int,
    global_batch: int,
    process_index: int,
    local_batch: int,
    xflip: bool,
    start: int,
):
    """Batches of the global stream (see ``pipeline``) from `start` global examples on.

    Reads the smallest stored level >= resolution and box-averages it down if needed.
    """
    level = min(r for r in source.levels + (source.resolution,) if r >= resolution)
    images, factor = source.images_at(level), level // resolution
    n = source.count
    perms: dict[int, np.ndarray] = {}
    ah, aw = source.aspect
    shape = (local_batch, resolution * ah, resolution * aw, source.channels)
    buffers = BufferPool(shape, size=8)

    def permutation(epoch: int) -> np.ndarray:
        if epoch not in perms:
            if len(perms) >= 4:
                perms.pop(min(perms))
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        return perms[epoch]

    def generate():
        first = start
        while True:
            pos = first + process_index * local_batch + np.arange(local_batch, dtype=np.int64)
            epochs, offsets = np.divmod(pos, n)
            records = np.empty(local_batch, np.int64)
            for e in np.unique(epochs):
                here = epochs == e
                records[here] = permutation(int(e))[offsets[here]]
            flips = flip_bits(seed, pos) if xflip else None
            out = buffers.get() if factor == 1 else None
            batch = box_downsample(images.read(records, flips, out), factor)
            if source.labels is None:
                labels = np.zeros(local_batch, np.int32)
            else:
                labels = source.labels[records]
            first += global_batch
            yield Batch(batch, labels), first

    return generate


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.default_rng([seed, epoch, 1]).integers(2**31))


def tfds_batches(
    source: src.SourceConfig,
    resolution: int,
    channels: int,
    seed: int,
    process_index: int,
    process_count: int,
    local_batch: int,
    xflip: bool,
    start: int,
    threads: int | None = None,
):
    """This process's share of a TFDS split, epoch after epoch; also returns num_classes.

    threads: decoding threads (tf.data's parallel map in a private pool of that size); None:
    tf.data's AUTOTUNE over its shared pool. The map is deterministic: order never changes.

    Epoch e reads files and a shuffle buffer seeded from (seed, e); `start` (global examples)
    becomes start / process_count local ones, skipped as encoded records before decoding.
    """
    tf = tf_runtime.import_tensorflow()
    builder = src.tfds_builder(source.name, source.data_dir, source.manual_dir)
    num_classes = src.tfds_features(builder, source.image_key, source.label_key)

    def share(epoch: int):
        return src.tfds_encoded(
            builder,
            source.split,
            source.image_key,
            source.label_key,
            _epoch_seed(seed, epoch),
            process_index,
            process_count,
        )

    size = int(share(0).cardinality())
    if size < 0:  # TFDS does not know the size of a file-sharded share: count it once
        size = int(share(0).reduce(np.int64(0), lambda c, _: c + 1))
    if size == 0:
        raise DatasetError(
            f"TFDS {source.name!r} split {source.split!r}: process {process_index} of "
            f"{process_count} has no examples"
        )
    decode = src.tfds_decode_fn(resolution, channels, source.aspect, source.transform)
    local_start = start // process_count

    def generate():
        consumed = local_start
        epoch, offset = divmod(local_start, size)
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        held = 0
        while True:
            ds = share(epoch).shuffle(
                min(source.shuffle_buffer, size),
                seed=_epoch_seed(seed, epoch),
                reshuffle_each_iteration=False,
            )
            ds = ds.skip(offset).map(
                decode, num_parallel_calls=threads or tf.data.AUTOTUNE, deterministic=True
            )
            if threads:
                options = tf.data.Options()
                options.threading.private_threadpool_size = threads
                ds = ds.with_options(options)
            for images, labels in ds.batch(local_batch).prefetch(2).as_numpy_iterator():
                pieces.append((images, labels))
                held += len(images)
                while held >= local_batch:
                    images_b = np.concatenate([p[0] for p in pieces])
                    labels_b = np.concatenate([p[1] for p in pieces])
                    rest = (images_b[local_batch:], labels_b[local_batch:])
                    pieces, held = ([rest] if len(rest[0]) else []), held - local_batch
                    images_b, labels_b = images_b[:local_batch], labels_b[:local_batch]
                    if xflip:
                        pos = consumed + np.arange(local_batch, dtype=np.int64)
                        flips = flip_bits(seed, pos, salt=process_index + 1)
                        images_b = images_b.copy()
                        images_b[flips] = images_b[flips, :, ::-1]
                    consumed += local_batch
                    yield Batch(images_b, labels_b.astype(np.int32)), consumed * process_count
            epoch, offset = epoch + 1, 0

    return generate, num_classes
