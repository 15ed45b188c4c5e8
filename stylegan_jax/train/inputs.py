"""The run's data: its source checked against the config, a pipeline per stage, the first
images for the reals grid, and batches (labels as the generator's c) and label table on the
devices. Labels are class indices (one-hot on their way to the devices) or label vectors
(continuous or multi-hot conditions, used as they are)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_jax.data.pipeline import Pipeline, make_pipeline
from stylegan_jax.data.sources import SourceConfig, open_indexed, source_from_config
from stylegan_jax.shapes import ImageShape, data_shape
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import labels as labels_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stage import Stage


@dataclasses.dataclass(frozen=True)
class RunLabels:
    """What conditions a run's networks, read from the data once: nothing (c_dim 0), classes
    (names, images per class) or label vectors (every image's)."""

    c_dim: int = 0
    class_names: tuple[str, ...] = ()  # classes: label k's name
    counts: np.ndarray | None = None  # classes: int64 [c_dim] images per class
    vectors: np.ndarray | None = None  # label vectors: float32 [N, c_dim]

    @property
    def kind(self) -> str | None:
        """None (unconditional), 'class' or 'vector'."""
        return None if not self.c_dim else "vector" if self.vectors is not None else "class"

    def meta(self) -> dict:
        """What every checkpoint records (with c_dim and class_names) so that generate knows
        whether the network takes a class or a vector."""
        return {"label_kind": self.kind} if self.c_dim else {}


def open_source(config: ml_collections.ConfigDict) -> tuple[dict, RunLabels]:
    """(the data source, its labels as the networks take them): fails before anything
    compiles where the data cannot serve the config's resolution, channels or labels.
    Labelled data trained unconditionally is an error unless the config says so
    (`data.ignore_labels`): the official tools drop labels silently without --cond. The
    labels are read once (a TFDS source reads every label for the class counts)."""
    source = source_from_config(config.data)
    with make_pipeline(source, config.train.batch_size, seed=config.seed,
                       resolution=config.data.resolution, prefetch=1, threads=1) as probe:
        num_classes, names = probe.num_classes, probe.class_names
        label_dim, vectors = probe.label_dim, probe.vector_labels
        served = (ImageShape.of(probe.resolution, probe.aspect), probe.channels)
    names = names or tuple(str(k) for k in range(num_classes))
    wanted = (data_shape(config.data), config.data.channels)
    if served != wanted:
        raise config_lib.ConfigError(
            f"config.data.resolution(xaspect)/channels={wanted[0]}/{wanted[1]} but the data "
            f"provides {served[0]}/{served[1]} (W x H / channels)")
    if config.data.use_labels and label_dim == 0:
        raise config_lib.ConfigError("config.data.use_labels=True but the data has no labels")
    what = (f"label vectors of {label_dim} numbers" if vectors
            else f"{num_classes} classes: {', '.join(names)}")
    if label_dim and not config.data.use_labels and not config.data.get("ignore_labels"):
        raise config_lib.ConfigError(
            f"the data is labelled ({what}) but config.data.use_labels=False: set "
            "--config.data.use_labels=True to train a conditional network, or "
            "--config.data.ignore_labels=True to ignore the labels")
    if not config.data.use_labels:
        return source, RunLabels()
    if vectors:
        return source, RunLabels(label_dim, vectors=label_vectors(source))
    counts = labels_lib.class_counts(SourceConfig.from_dict(source), num_classes)
    return source, RunLabels(num_classes, tuple(names), counts)


def label_vectors(source: dict) -> np.ndarray:
    """Every image's label vector, float32 [N, dim] (a tfrecord dataset's manifest)."""
    return open_indexed(SourceConfig.from_dict(source)).labels


def label_summary(config: ml_collections.ConfigDict, labels: RunLabels) -> str | None:
    """The line a run prints about its labels at start (None: unlabelled data)."""
    if labels.kind is None:
        if config.data.get("ignore_labels"):
            return ("Labels: IGNORED (config.data.ignore_labels=True): the network is "
                    "unconditional although the data is labelled")
        return None
    if labels.kind == "vector":
        return "Labels: " + labels_lib.vector_summary(labels.vectors)
    return (f"Labels: {len(labels.class_names)} classes: "
            + ", ".join(f"{k} {name} ({n} images)" for k, (name, n)
                        in enumerate(zip(labels.class_names, labels.counts, strict=True))))


# Seeds apart per rollback: after one, the data comes in an order no stage used before.
_RESEED = 1_000_003


def open_stage(config: ml_collections.ConfigDict, source: dict, stage: Stage,
               position: dict | None = None, rollbacks: int = 0) -> Pipeline:
    """This process's share of the data at a stage's resolution and batch (from `position`
    when resuming within the stage); each watchdog rollback draws a new order."""
    threads = config.data.get("threads", 0) or None  # None: one reader per core, at most 8
    return make_pipeline(source, stage.batch_size,
                         seed=config.seed + stage.index + _RESEED * rollbacks,
                         xflip=config.data.xflip, resolution=stage.resolution,
                         position=position, threads=threads)


def first_images(config: ml_collections.ConfigDict, source: dict, n: int) -> np.ndarray:
    """The data's first `n` (<= 64) images, uint8 NHWC, unmirrored (the reals grid)."""
    with make_pipeline(source, 64, seed=config.seed, resolution=config.data.resolution,
                       process_index=0, process_count=1, prefetch=1, threads=1) as first:
        return np.asarray(next(first).images[:n])


def _first_batches(config: ml_collections.ConfigDict, source: dict, batches: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of the data's first `batches` x 64 images (the seeded order of
    the run, unmirrored)."""
    seen_images, seen_labels = [], []
    with make_pipeline(source, 64, seed=config.seed, resolution=config.data.resolution,
                       process_index=0, process_count=1, prefetch=1, threads=1) as pipe:
        for _ in range(batches):
            batch = next(pipe)
            seen_images.append(np.asarray(batch.images))
            seen_labels.append(np.asarray(batch.labels))
    return np.concatenate(seen_images), np.concatenate(seen_labels)


def images_by_class(config: ml_collections.ConfigDict, source: dict, row_classes: np.ndarray,
                    cols: int, batches: int = 4) -> np.ndarray:
    """A conditional run's reals grid: row r holds images of class row_classes[r] (or with
    label vector row_classes[r]), taken in the data's order from its first `batches` x 64
    images (repeated where a class has fewer than `cols`; a class with none there leaves
    its row black)."""
    imgs, labels = _first_batches(config, source, batches)
    out = np.zeros((len(row_classes) * cols, *imgs.shape[1:]), np.uint8)
    for r, k in enumerate(row_classes):
        found = imgs[(labels == k).reshape(len(labels), -1).all(1)]
        if len(found):
            out[r * cols:(r + 1) * cols] = found[np.arange(cols) % len(found)]
    return out


def grid_label_vectors(config: ml_collections.ConfigDict, source: dict, labels: RunLabels,
                       batches: int = 4) -> np.ndarray | None:
    """A vector-labelled run's candidates for its grid rows: the distinct label vectors of
    the data's first `batches` x 64 images, in that (seeded) order, so the reals grid finds
    each row's images; None for other runs."""
    if labels.kind != "vector":
        return None
    _, vectors = _first_batches(config, source, batches)
    _, first = np.unique(vectors, axis=0, return_index=True)
    return vectors[np.sort(first)].astype(np.float32)


def conditioning(labels: np.ndarray, c_dim: int) -> np.ndarray:
    """A batch's labels as the generator's c, float32 [B, c_dim]: class indices one-hot,
    label vectors as they are (zeros [B, 0] when unconditional)."""
    labels = np.asarray(labels)
    if c_dim == 0:
        return np.zeros((len(labels), 0), np.float32)
    if labels.ndim == 2:
        if labels.shape[1] != c_dim:
            raise ValueError(f"label vectors of {labels.shape[1]} numbers for c_dim={c_dim}")
        return labels.astype(np.float32)
    return np.eye(c_dim, dtype=np.float32)[labels]


def device_batch(backend: Backend, data, c_dim: int) -> tuple[jax.Array, jax.Array]:
    """A host batch -> (images, labels as c) sharded over the devices."""
    return backend.put_batch((np.asarray(data.images), conditioning(data.labels, c_dim)))


def fake_label_table(backend: Backend, labels: RunLabels, seed: int = 0) -> jax.Array:
    """Generated images' labels follow the dataset's (train/labels.py), on every device:
    a class table from the counts, or the data's label vectors."""
    if labels.kind is None:
        return backend.put_replicated(jnp.zeros((1, 0)))
    if labels.kind == "vector":
        return backend.put_replicated(jnp.asarray(labels_lib.vector_table(labels.vectors,
                                                                           seed=seed)))
    return backend.put_replicated(jnp.asarray(labels_lib.label_table(labels.counts)))
