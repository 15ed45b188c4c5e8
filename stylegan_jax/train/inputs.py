"""The run's data: its source checked against the config, a pipeline per stage, the first
images for the reals grid, and batches (one-hot labels) and label table on the devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_jax.data.pipeline import Pipeline, make_pipeline
from stylegan_jax.data.sources import SourceConfig, source_from_config
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import labels as labels_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.stage import Stage


def open_source(config: ml_collections.ConfigDict) -> tuple[dict, int]:
    """(the data source, c_dim): the networks need the label count; fails before anything
    compiles where the data cannot serve the config's resolution, channels or labels."""
    source = source_from_config(config.data)
    with make_pipeline(source, config.train.batch_size, seed=config.seed,
                       resolution=config.data.resolution, prefetch=1, threads=1) as probe:
        num_classes, served = probe.num_classes, (probe.resolution, probe.channels)
    if served != (config.data.resolution, config.data.channels):
        raise config_lib.ConfigError(
            f"config.data.resolution/channels={config.data.resolution}/{config.data.channels}"
            f" but the data provides {served[0]}/{served[1]}")
    if config.data.use_labels and num_classes == 0:
        raise config_lib.ConfigError("config.data.use_labels=True but the data has no labels")
    return source, num_classes if config.data.use_labels else 0


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


def one_hot(labels: np.ndarray, c_dim: int) -> np.ndarray:
    if c_dim == 0:
        return np.zeros((len(labels), 0), np.float32)
    return np.eye(c_dim, dtype=np.float32)[np.asarray(labels)]


def device_batch(backend: Backend, data, c_dim: int) -> tuple[jax.Array, jax.Array]:
    """A host batch -> (images, one-hot labels) sharded over the devices."""
    return backend.put_batch((np.asarray(data.images), one_hot(data.labels, c_dim)))


def fake_label_table(backend: Backend, source: dict, c_dim: int) -> jax.Array:
    """Generated images' labels follow the dataset's (train/labels.py), on every device."""
    if c_dim == 0:
        return backend.put_replicated(jnp.zeros((1, 0)))
    counts = labels_lib.class_counts(SourceConfig.from_dict(source), c_dim)
    return backend.put_replicated(jnp.asarray(labels_lib.label_table(counts)))
