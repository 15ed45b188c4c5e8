"""The run's data: its source checked against the config, a pipeline per stage, the first
images for the reals grid, and batches (one-hot labels) and label table on the devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_jax.data.pipeline import Pipeline, make_pipeline
from stylegan_jax.data.sources import SourceConfig, source_from_config
from stylegan_jax.shapes import ImageShape, data_shape
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import labels as labels_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stage import Stage


def open_source(config: ml_collections.ConfigDict) -> tuple[dict, int, tuple[str, ...]]:
    """(the data source, c_dim, class names): the networks need the label count; fails
    before anything compiles where the data cannot serve the config's resolution, channels
    or labels. Labelled data trained unconditionally is an error unless the config says
    so (`data.ignore_labels`): the official tools drop labels silently without --cond."""
    source = source_from_config(config.data)
    with make_pipeline(source, config.train.batch_size, seed=config.seed,
                       resolution=config.data.resolution, prefetch=1, threads=1) as probe:
        num_classes, names = probe.num_classes, probe.class_names
        served = (ImageShape.of(probe.resolution, probe.aspect), probe.channels)
    names = names or tuple(str(k) for k in range(num_classes))
    wanted = (data_shape(config.data), config.data.channels)
    if served != wanted:
        raise config_lib.ConfigError(
            f"config.data.resolution(xaspect)/channels={wanted[0]}/{wanted[1]} but the data "
            f"provides {served[0]}/{served[1]} (W x H / channels)")
    if config.data.use_labels and num_classes == 0:
        raise config_lib.ConfigError("config.data.use_labels=True but the data has no labels")
    if num_classes and not config.data.use_labels and not config.data.get("ignore_labels"):
        raise config_lib.ConfigError(
            f"the data is labelled ({num_classes} classes: {', '.join(names)}) but "
            "config.data.use_labels=False: set --config.data.use_labels=True to train a "
            "conditional network, or --config.data.ignore_labels=True to ignore the labels")
    if not config.data.use_labels:
        return source, 0, ()
    return source, num_classes, tuple(names)


def class_counts(source: dict, c_dim: int) -> np.ndarray | None:
    """Images per class (None: unconditional), read once per run: the start line and the
    fakes' label table both use them (a TFDS source reads every label for them)."""
    return labels_lib.class_counts(SourceConfig.from_dict(source), c_dim) if c_dim else None


def label_summary(config: ml_collections.ConfigDict, class_names: tuple[str, ...],
                  counts: np.ndarray | None) -> str | None:
    """The line a run prints about its labels at start (None: unlabelled data)."""
    if not class_names:
        if config.data.get("ignore_labels"):
            return ("Labels: IGNORED (config.data.ignore_labels=True): the network is "
                    "unconditional although the data is labelled")
        return None
    return (f"Labels: {len(class_names)} classes: "
            + ", ".join(f"{k} {name} ({n} images)"
                        for k, (name, n) in enumerate(zip(class_names, counts, strict=True))))


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


def images_by_class(config: ml_collections.ConfigDict, source: dict, row_classes: np.ndarray,
                    cols: int, batches: int = 4) -> np.ndarray:
    """A conditional run's reals grid: row r holds images of class row_classes[r], taken
    in the data's order from its first `batches` x 64 images (repeated where a class has
    fewer than `cols`; a class with none there leaves its row black)."""
    seen_images, seen_labels = [], []
    with make_pipeline(source, 64, seed=config.seed, resolution=config.data.resolution,
                       process_index=0, process_count=1, prefetch=1, threads=1) as pipe:
        for _ in range(batches):
            batch = next(pipe)
            seen_images.append(np.asarray(batch.images))
            seen_labels.append(np.asarray(batch.labels))
    imgs, labels = np.concatenate(seen_images), np.concatenate(seen_labels)
    out = np.zeros((len(row_classes) * cols, *imgs.shape[1:]), np.uint8)
    for r, k in enumerate(row_classes):
        found = imgs[labels == k]
        if len(found):
            out[r * cols:(r + 1) * cols] = found[np.arange(cols) % len(found)]
    return out


def one_hot(labels: np.ndarray, c_dim: int) -> np.ndarray:
    if c_dim == 0:
        return np.zeros((len(labels), 0), np.float32)
    return np.eye(c_dim, dtype=np.float32)[np.asarray(labels)]


def device_batch(backend: Backend, data, c_dim: int) -> tuple[jax.Array, jax.Array]:
    """A host batch -> (images, one-hot labels) sharded over the devices."""
    return backend.put_batch((np.asarray(data.images), one_hot(data.labels, c_dim)))


def fake_label_table(backend: Backend, counts: np.ndarray | None) -> jax.Array:
    """Generated images' labels follow the dataset's (train/labels.py), on every device;
    `counts`: `class_counts` (None: unconditional)."""
    if counts is None:
        return backend.put_replicated(jnp.zeros((1, 0)))
    return backend.put_replicated(jnp.asarray(labels_lib.label_table(counts)))
