"""The labels of generated images in conditional training, drawn as the official loops
draw them: a uniformly random image of the dataset, and that image's label. A class's
share of the fakes is then its share of the data, not 1 / num_classes.

The compiled steps draw rows of a one-hot `label_table` uniformly, so the table holds
each class in proportion to its count: counts divided by their greatest common divisor
(exact; a balanced dataset gives the identity), or, should that exceed `max_rows`, the
proportions rounded to `max_rows` rows by largest remainders.

Label vectors (continuous or multi-hot conditions) are the generator's c as they are: the
table holds the data's vectors themselves, one row per image (a seeded uniform choice of
`max_rows` of them for a larger dataset).
"""

from __future__ import annotations

import math

import numpy as np

from stylegan_jax.data.sources import SourceConfig, open_indexed, tfds_builder
from stylegan_jax.data.tf_runtime import import_tensorflow


def class_counts(source: SourceConfig, num_classes: int) -> np.ndarray:
    """Images per class of the source: int64 [num_classes]."""
    if source.kind == "tfds":
        labels = _tfds_labels(source)
    else:
        labels = open_indexed(source).labels
        if labels is None:
            raise ValueError(f"{source.path or source.kind}: the dataset has no labels")
    labels = np.asarray(labels, np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{source.path or source.name}: labels must be in [0, {num_classes}), "
                         f"found {labels.min()}..{labels.max()}")
    return np.bincount(labels, minlength=num_classes)


def _tfds_labels(source: SourceConfig) -> np.ndarray:
    """Every label of the TFDS split, read once (images skipped, not decoded)."""
    if source.label_key is None:
        raise ValueError(f"TFDS dataset {source.name!r}: no label_key, so no labels")
    tf = import_tensorflow()
    # Function-level: tensorflow_datasets imports tensorflow (heavy; absent on GPU hosts).
    import tensorflow_datasets as tfds

    builder = tfds_builder(source.name, source.data_dir, source.manual_dir)
    ds = builder.as_dataset(split=source.split, shuffle_files=False,
                            decoders={source.image_key: tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: tf.cast(ex[source.label_key], tf.int32)).batch(65536)
    return np.concatenate([b.numpy() for b in ds] or [np.zeros((0,), np.int32)])


def label_table(counts: np.ndarray, max_rows: int = 65536) -> np.ndarray:
    """float32 one-hot rows [K, num_classes] whose uniform draw follows `counts`."""
    counts = np.asarray(counts, np.int64)
    if counts.ndim != 1 or counts.size == 0 or counts.min() < 0 or counts.sum() == 0:
        raise ValueError(f"class counts must be non-negative with a positive total, got {counts}")
    rows = counts // math.gcd(*counts.tolist())
    if rows.sum() > max_rows:
        share = counts / counts.sum() * max_rows
        rows = np.floor(share).astype(np.int64)
        rest = np.argsort(-(share - rows), kind="stable")[: max_rows - rows.sum()]
        rows[rest] += 1
    classes = np.repeat(np.arange(counts.size), rows)
    return np.eye(counts.size, dtype=np.float32)[classes]


def vector_table(vectors: np.ndarray, max_rows: int = 65536, seed: int = 0) -> np.ndarray:
    """float32 [K, dim] rows whose uniform draw is the draw of a random image's label vector:
    every image's (K = N), or `max_rows` images chosen without replacement (seeded)."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"label vectors must be [N >= 1, dim], got shape {vectors.shape}")
    if len(vectors) > max_rows:
        rows = np.random.default_rng(seed).choice(len(vectors), max_rows, replace=False)
        vectors = vectors[np.sort(rows)]
    return vectors


def is_multi_hot(vectors: np.ndarray) -> bool:
    """Every value 0 or 1 (attributes switched on or off, e.g. CelebA's 40)."""
    return bool(np.isin(vectors, (0, 1)).all())


def vector_summary(vectors: np.ndarray, shown: int = 16) -> str:
    """'N images, dim-number label vectors (multi-hot), per dimension min/mean/max: ...' for
    the first `shown` dimensions."""
    vectors = np.asarray(vectors, np.float32)
    n, dim = vectors.shape
    lo, mean, hi = vectors.min(0), vectors.mean(0), vectors.max(0)
    stats = ", ".join(f"{k} {lo[k]:.3g}/{mean[k]:.3g}/{hi[k]:.3g}" for k in range(min(dim, shown)))
    more = f", ... ({dim - shown} more)" if dim > shown else ""
    kind = " (multi-hot)" if is_multi_hot(vectors) else ""
    return (f"{dim}-number label vectors{kind} of {n} images; per dimension min/mean/max: "
            f"{stats}{more}")


def format_vector(vector: np.ndarray, limit: int = 48) -> str:
    """A label vector as a short text for a grid row: the indices set in a multi-hot one
    ('on: 1,4'), else its values; cut to `limit` characters with '...'."""
    vector = np.asarray(vector, np.float32)
    if is_multi_hot(vector):
        text = "on: " + (",".join(str(k) for k in np.flatnonzero(vector)) or "none")
    else:
        text = " ".join(f"{v:.3g}" for v in vector)
    return text if len(text) <= limit else text[:limit - 3] + "..."
